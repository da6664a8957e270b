#include "harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "aws/aws_config.h"

namespace sqs2pg::integration {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

void LoadStackEnvironment() {
  static bool loaded = false;
  if (loaded) return;
  std::ifstream in(SQS2PG_TEST_STACK_ENV);
  ASSERT_TRUE(in) << "no stack env file at " << SQS2PG_TEST_STACK_ENV << ": the stack_up fixture did not run";
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("export ")) continue;
    std::istringstream words(line.substr(7));
    for (std::string word; words >> word;) {
      auto eq = word.find('=');
      if (eq != std::string::npos) setenv(word.substr(0, eq).c_str(), word.substr(eq + 1).c_str(), 1);
    }
  }
  // Keys must come from the tests' own files, never from the developer's environment.
  unsetenv("SQS2PG_KEY_FILE");
  unsetenv("SQS2PG_KEYS");
  unsetenv("AWS_PROFILE");
  loaded = true;
}

std::string StackVar(const std::string& name) {
  LoadStackEnvironment();
  const char* v = std::getenv(name.c_str());
  return v ? v : "";
}

CommandResult RunShell(const std::string& command_line) {
  // A file pair per call: a test may run commands from two threads at once.
  static std::atomic<int> calls{0};
  std::string dir = TestDir();
  int n = ++calls;
  std::string out = fmt::format("{}/stdout.{}", dir, n), err = fmt::format("{}/stderr.{}", dir, n);
  // Quoted: the build tree may be on a path with a space.
  int status =
      std::system(fmt::format("{} >{} 2>{}", command_line, ShellQuote(out), ShellQuote(err)).c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

CommandResult RunSqs2pg(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  LoadStackEnvironment();
  std::string line;
  for (const auto& [k, v] : env) line += fmt::format("{}={} ", k, ShellQuote(v));
  line += ShellQuote(SQS2PG_BINARY);
  for (const auto& a : args) line += " " + ShellQuote(a);
  return RunShell(line);
}

std::string UniqueName(const std::string& prefix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = fmt::format("{}_{}_{}", prefix, info ? info->name() : "x", getpid());
  // Lower case, and nothing but [a-z0-9_]: a parameterized test's name holds '/'.
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::isalnum(c) ? static_cast<char>(std::tolower(c)) : '_'; });
  // Queue names allow 80 characters; table names must leave room for "_rejects" in 63.
  return name.size() > 50 ? name.substr(0, 40) + name.substr(name.size() - 10) : name;
}

std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir =
      fmt::format("{}/files/{}.{}", std::filesystem::path(SQS2PG_TEST_STACK_ENV).parent_path().string(),
                  info ? info->test_suite_name() : "suite", info ? info->name() : "test");
  std::filesystem::create_directories(dir);
  return dir;
}

std::string MakeKeyFile() {
  std::string path = TestDir() + "/masking.key";
  std::filesystem::remove(path);
  CommandResult r = RunSqs2pg({"keygen", "--out", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return path;
}

std::string SampleDataPath() { return std::string(SQS2PG_SOURCE_DIR) + "/data/sample_data.json.gz"; }

std::unique_ptr<sqs::SqsClient> ClientFor(const std::string& endpoint_url, sqs::SqsProtocol protocol) {
  LoadStackEnvironment();
  sqs::ClientConfig config;
  config.protocol = protocol;
  config.endpoint_url = endpoint_url;
  config.region = "us-east-1";
  config.credentials = {"test", "test", ""};
  auto client = sqs::SqsClient::Create(config);
  EXPECT_TRUE(client.ok()) << client.status().message();
  return client.ok() ? std::move(client).value() : nullptr;
}

std::unique_ptr<sqs::SqsClient> FauxqsClient() { return ClientFor(StackVar("AWS_ENDPOINT_URL_SQS")); }

Db::Db() {
  LoadStackEnvironment();
  conn_ = PQconnectdb("");
  EXPECT_EQ(PQstatus(conn_), CONNECTION_OK) << PQerrorMessage(conn_);
}

Db::~Db() { PQfinish(conn_); }

void Db::Exec(const std::string& sql) {
  PGresult* res = PQexec(conn_, sql.c_str());
  EXPECT_TRUE(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
      << sql << ": " << PQerrorMessage(conn_);
  PQclear(res);
}

std::vector<std::vector<std::optional<std::string>>> Db::Rows(const std::string& sql) {
  PGresult* res = PQexec(conn_, sql.c_str());
  std::vector<std::vector<std::optional<std::string>>> rows;
  EXPECT_EQ(PQresultStatus(res), PGRES_TUPLES_OK) << sql << ": " << PQerrorMessage(conn_);
  for (int r = 0; r < PQntuples(res); ++r) {
    auto& row = rows.emplace_back();
    for (int c = 0; c < PQnfields(res); ++c) {
      row.push_back(PQgetisnull(res, r, c) ? std::nullopt
                                           : std::optional<std::string>(PQgetvalue(res, r, c)));
    }
  }
  PQclear(res);
  return rows;
}

std::string Db::Scalar(const std::string& sql) {
  auto rows = Rows(sql);
  if (rows.empty() || rows[0].empty() || !rows[0][0]) return "";
  return *rows[0][0];
}

long Db::Count(const std::string& table) {
  return std::stol(Scalar(fmt::format("SELECT count(*) FROM \"{}\"", table)));
}

}  // namespace sqs2pg::integration
