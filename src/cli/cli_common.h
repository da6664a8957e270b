#pragma once
// What the subcommands share: exit codes, the queue flags, and loading the masking keys.

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "transform/keyring.h"

namespace sqs2pg::sqs {
class SqsClient;
struct ClientConfig;
}  // namespace sqs2pg::sqs

namespace sqs2pg::cli {

// 0 success; 1 the work failed at run time; 2 the command line or configuration is wrong.
enum ExitCode : int { kExitOk = 0, kExitFailure = 1, kExitUsage = 2 };

// Prints "sqs2pg: <message>" to stderr and returns the exit code that fits the status.
int Fail(const Status& status);

struct QueueOptions {
  std::string queue_url;
  std::string queue_name = "login-queue";
  std::string endpoint_url;
  std::string region;
  std::string ca_file;
  std::string sqs_protocol = "auto";  // json, query or auto
};
void AddQueueOptions(CLI::App& app, QueueOptions& options);

// Endpoint, region and credentials from the flags, the environment and the AWS files.
Result<sqs::ClientConfig> MakeClientConfig(const QueueOptions& options);
// A client for them.
Result<std::unique_ptr<sqs::SqsClient>> MakeSqsClient(const QueueOptions& options);
// --queue-url as given, else the URL of --queue looked up with GetQueueUrl.
Result<std::string> ResolveQueueUrl(sqs::SqsClient& client, const QueueOptions& options);

// --key-file, else SQS2PG_KEY_FILE, else the keyring text in SQS2PG_KEYS. No key: an error
// that says how to make one (there is deliberately no built-in default key).
Result<transform::Keyring> LoadKeyring(const std::string& key_file_flag);
void AddKeyFileOption(CLI::App& app, std::string& key_file);

}  // namespace sqs2pg::cli
