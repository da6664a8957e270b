// What an operator relies on: the configuration layers as the binary applies them, JSON logs a
// shipper can parse, and `sqs2pg check` against the real stack (fauxqs for SQS, moto for STS).

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <sstream>

#include "harness.h"

namespace sqs2pg::integration {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(ConfigCliTest, TheShippedExampleFileIsValid) {
  CommandResult r = RunSqs2pg({"config", "--config", std::string(SQS2PG_SOURCE_DIR) + "/deploy/sqs2pg.toml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("deploy/sqs2pg.toml:"));  // its values say where they came from
}

TEST(ConfigCliTest, ABadFileExitsWith2NamingTheFileAndLine) {
  std::string path = TestDir() + "/bad.toml";
  std::ofstream(path) << "[run]\nbatch-size = 500\nreceivers = 0\n";
  CommandResult r = RunSqs2pg({"run", "--config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, AllOf(HasSubstr(path + ":3"), HasSubstr("[run] receivers")));
  // `config` validates the same file for the same subcommand without running it.
  CommandResult shown = RunSqs2pg({"config", "run", "--config", path});
  EXPECT_EQ(shown.exit_code, 2);
  EXPECT_THAT(shown.err, HasSubstr(path + ":3"));
}

TEST(ConfigCliTest, TheEffectiveConfigShowsEachLayerAndNoSecret) {
  std::string path = TestDir() + "/layers.toml";
  std::ofstream(path) << "log-level = \"warn\"\n[run]\nbatch-size = 250\nreceivers = 4\n";
  CommandResult r =
      RunSqs2pg({"config", "run", "--receivers", "2", "--config", path},
                {{"SQS2PG_DB", "host=db user=etl password=s3cret-pw"}, {"SQS2PG_SHUTDOWN_TIMEOUT", "9"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("log-level = \"warn\"  # " + path + ":1"));
  EXPECT_THAT(r.out, HasSubstr("batch-size = 250  # " + path + ":3"));
  EXPECT_THAT(r.out, HasSubstr("receivers = 2  # flag"));
  EXPECT_THAT(r.out, HasSubstr("shutdown-timeout = 9  # env SQS2PG_SHUTDOWN_TIMEOUT"));
  EXPECT_THAT(r.out, HasSubstr("db-connections = 2  # default"));
  EXPECT_THAT(r.out, AllOf(HasSubstr("password=[redacted]"), Not(HasSubstr("s3cret-pw"))));
  EXPECT_THAT(r.err, Not(HasSubstr("s3cret-pw")));
}

TEST(ConfigCliTest, TheFileConfiguresARun) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  std::string path = TestDir() + "/run.toml";
  std::ofstream(path) << fmt::format(
      "[run]\nqueue = \"{}\"\ntable = \"{}\"\nkey-file = \"{}\"\nbatch-size = 7\n", queue, table, key);
  CommandResult r = RunSqs2pg({"run", "--config", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("received 100"));
  EXPECT_EQ(Db().Count(table), 99);
}

// Every line of stderr is one JSON object with ts, level and msg; the sites that have them add
// queue, table, message_id, attempt, delay_ms.
TEST(LogsTest, JsonLinesCarryStableKeysAndFields) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  CommandResult r =
      RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", key, "--log-format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  simdjson::dom::parser parser;
  bool start = false, stop = false, reject = false;
  std::vector<std::string> lines = Lines(r.err);
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    simdjson::dom::element object;
    ASSERT_EQ(parser.parse(line).get(object), simdjson::SUCCESS) << line;
    std::string_view ts, level, msg, event;
    ASSERT_EQ(object["ts"].get(ts), simdjson::SUCCESS) << line;
    ASSERT_EQ(object["level"].get(level), simdjson::SUCCESS) << line;
    ASSERT_EQ(object["msg"].get(msg), simdjson::SUCCESS) << line;
    if (object["event"].get(event) != simdjson::SUCCESS) continue;
    std::string_view got_queue, got_table, message_id;
    if (event == "start" || event == "stop") {
      EXPECT_EQ(object["queue"].get(got_queue), simdjson::SUCCESS) << line;
      EXPECT_THAT(std::string(got_queue), HasSubstr(queue));
      EXPECT_EQ(object["table"].get(got_table), simdjson::SUCCESS) << line;
      EXPECT_EQ(got_table, table);
      (event == "start" ? start : stop) = true;
    }
    if (event == "reject") {
      EXPECT_EQ(object["message_id"].get(message_id), simdjson::SUCCESS) << line;
      reject = true;
    }
  }
  EXPECT_TRUE(start && stop && reject) << r.err;
}

TEST(LogsTest, RetriesCarryAttemptAndDelayAndErrorsAreJsonToo) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  CommandResult r = RunSqs2pg({"--log-format", "json", "run", "--queue", queue, "--key-file", key,
                               "--db-retry-timeout", "2", "--db", "host=127.0.0.1 port=1 connect_timeout=1"});
  EXPECT_EQ(r.exit_code, 1);
  simdjson::dom::parser parser;
  bool retried = false;
  std::vector<std::string> lines = Lines(r.err);
  for (const std::string& line : lines) {
    simdjson::dom::element object;
    ASSERT_EQ(parser.parse(line).get(object), simdjson::SUCCESS) << line;
    int64_t attempt = 0, delay_ms = 0;
    if (object["attempt"].get(attempt) == simdjson::SUCCESS) {
      EXPECT_EQ(object["delay_ms"].get(delay_ms), simdjson::SUCCESS) << line;
      EXPECT_GE(attempt, 1);
      retried = true;
    }
  }
  EXPECT_TRUE(retried) << r.err;
  std::string_view level, msg;
  simdjson::dom::element last;
  ASSERT_EQ(parser.parse(lines.back()).get(last), simdjson::SUCCESS);
  EXPECT_EQ(last["level"].get(level), simdjson::SUCCESS);
  EXPECT_EQ(level, "error");
  EXPECT_EQ(last["msg"].get(msg), simdjson::SUCCESS);
  EXPECT_THAT(std::string(msg), HasSubstr("127.0.0.1:1"));
}

// moto answers STS GetCallerIdentity for the stack's keys; fauxqs is the queue.
std::map<std::string, std::string> WithSts() {
  return {{"AWS_ENDPOINT_URL_STS", StackVar("MOTO_ENDPOINT_URL")}};
}

TEST(CheckTest, AllHoldForAQueueAndAPreparedTable) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  CommandResult schema = RunSqs2pg({"schema", "--table", table});
  ASSERT_EQ(schema.exit_code, 0);
  Db().Exec(schema.out);
  CommandResult r = RunSqs2pg({"check", "--queue", queue, "--table", table, "--key-file", key}, WithSts());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("✓ AWS credentials from environment"));
  EXPECT_THAT(r.out, HasSubstr("✓ STS GetCallerIdentity: arn:aws:"));
  EXPECT_THAT(r.out, HasSubstr("✓ queue "));
  EXPECT_THAT(r.out, HasSubstr("✓ visibility timeout 30 s (the queue's)"));
  EXPECT_THAT(r.out, HasSubstr("! no redrive policy"));  // a warning, not a failure
  EXPECT_THAT(r.out, HasSubstr("✓ sqs:DeleteMessage allowed"));
  EXPECT_THAT(r.out, HasSubstr("✓ sqs:ChangeMessageVisibility allowed"));
  EXPECT_THAT(r.out, HasSubstr("- not checked: sqs:ReceiveMessage"));
  EXPECT_THAT(r.out, HasSubstr("✓ the role may load"));
  EXPECT_THAT(r.out, AllOf(HasSubstr("all checks passed"), Not(HasSubstr("✗"))));
  // Nothing was received, written or deleted.
  auto depth = FauxqsClient()->GetQueueAttributes(FauxqsClient()->GetQueueUrl(queue).value(),
                                                  {"ApproximateNumberOfMessages"});
  ASSERT_TRUE(depth.ok());
  EXPECT_EQ(depth->at("ApproximateNumberOfMessages"), "100");
  EXPECT_EQ(Db().Count(table), 0);
}

TEST(CheckTest, AWrongQueueAndAMissingPrivilegeFailWithWhatToDo) {
  std::string key = MakeKeyFile();
  std::string table = UniqueName("t");
  std::string role = UniqueName("r");
  CommandResult schema = RunSqs2pg({"schema", "--table", table});
  ASSERT_EQ(schema.exit_code, 0);
  Db db;
  db.Exec(schema.out);
  db.Exec(fmt::format("CREATE ROLE {} LOGIN; GRANT SELECT ON {} TO {}", role, table, role));
  CommandResult r = RunSqs2pg({"check", "--queue", "no-such-queue-" + role, "--table", table, "--key-file",
                               key, "--db", "user=" + role, "--visibility-timeout", "5"},
                              WithSts());
  db.Exec(fmt::format("REVOKE ALL ON {} FROM {}; DROP ROLE {}", table, role, role));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("✗ queue: "));
  EXPECT_THAT(r.out, HasSubstr("does not exist"));
  EXPECT_THAT(r.out, HasSubstr("✓ Postgres reachable"));
  EXPECT_THAT(r.out, AllOf(HasSubstr("✗ Postgres privileges"), HasSubstr("lacks INSERT on table"),
                           HasSubstr("sqs2pg schema --table " + table)));
  EXPECT_THAT(r.out, HasSubstr("2 check(s) failed"));
}

}  // namespace
}  // namespace sqs2pg::integration
