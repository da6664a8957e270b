#pragma once
// Shared by the integration tests: the stack's addresses, running the real sqs2pg binary, and
// reading Postgres. Each test makes its own queue and table (UniqueName), so tests never see
// each other's data and a developer's own stack is never touched.

#include <libpq-fe.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "source/sqs/sqs_client.h"

namespace sqs2pg::integration {

// Reads the env file scripts/stack wrote (PGHOST, AWS_ENDPOINT_URL_SQS, ...) into this process's
// environment, so libpq here and the sqs2pg children both reach the test stack.
void LoadStackEnvironment();
std::string StackVar(const std::string& name);

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs build/sqs2pg with args (and extra environment), capturing stdout and stderr.
CommandResult RunSqs2pg(const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& env = {});
// Runs a shell command line, capturing stdout and stderr.
CommandResult RunShell(const std::string& command_line);

// "<prefix>_<test name>_<pid>", lower case: a fresh queue or table per test and per run.
std::string UniqueName(const std::string& prefix);
// A fresh directory under the build tree for this test's files.
std::string TestDir();
// A new key file from `sqs2pg keygen`.
std::string MakeKeyFile();
std::string SampleDataPath();

std::unique_ptr<sqs::SqsClient> ClientFor(const std::string& endpoint_url,
                                          sqs::SqsProtocol protocol = sqs::SqsProtocol::kAuto);
std::unique_ptr<sqs::SqsClient> FauxqsClient();

// A libpq connection to the stack's database.
class Db {
 public:
  Db();
  ~Db();
  void Exec(const std::string& sql);
  std::vector<std::vector<std::optional<std::string>>> Rows(const std::string& sql);
  std::string Scalar(const std::string& sql);
  long Count(const std::string& table);

 private:
  PGconn* conn_;
};

}  // namespace sqs2pg::integration
