// The command line's promises: exit codes, messages that say what to do, key file handling.

#include <fmt/format.h>
#include <chrono>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CliTest, RunWithoutAKeyRefusesWithExitCode2) {
  CommandResult r = RunSqs2pg({"run", "--queue", "whatever"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("no masking key"));
  EXPECT_THAT(r.err, HasSubstr("sqs2pg keygen"));
}

TEST(CliTest, UnknownQueueSaysWhichAndWhere) {
  std::string key = MakeKeyFile();
  CommandResult r = RunSqs2pg({"run", "--queue", "no-such-queue", "--key-file", key});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no-such-queue"));
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
  EXPECT_THAT(r.err, HasSubstr(StackVar("AWS_ENDPOINT_URL_SQS")));
}

TEST(CliTest, UnreachablePostgresIsARuntimeFailure) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  // A drain retries a database that is down for --db-retry-timeout, then gives up with exit 1.
  auto started = std::chrono::steady_clock::now();
  CommandResult r = RunSqs2pg({"run", "--queue", queue, "--key-file", key, "--db-retry-timeout", "3", "--db",
                               "host=127.0.0.1 port=1 connect_timeout=2"});
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot connect to Postgres at 127.0.0.1:1"));
  EXPECT_THAT(r.err, HasSubstr("Postgres is not ready"));  // it did retry
  // Said once per try, not once per connection: the default two connections retry at once, and
  // the second one's retries are logged at debug level.
  size_t first_tries = 0;
  for (size_t at = r.err.find("not ready (1 tries)"); at != std::string::npos;
       at = r.err.find("not ready (1 tries)", at + 1)) {
    ++first_tries;
  }
  EXPECT_EQ(first_tries, 1u) << r.err;
  EXPECT_GE(took, std::chrono::seconds(3));
  EXPECT_LT(took, std::chrono::seconds(30));
}

TEST(CliTest, SigtermWhileWaitingForPostgresExitsPromptly) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  // --follow waits for Postgres for ever; SIGTERM after 2 s must still end it within seconds.
  auto started = std::chrono::steady_clock::now();
  CommandResult r = RunShell(fmt::format(
      "( {} run --follow --queue {} --key-file {} --db 'host=127.0.0.1 port=1 connect_timeout=2' & pid=$!; "
      "sleep 2; kill -TERM $pid; wait $pid )",
      SQS2PG_BINARY, queue, key));
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.exit_code, 0) << r.err;  // a requested stop; nothing was received
  EXPECT_THAT(r.err, HasSubstr("stopped before Postgres was reachable"));
  EXPECT_LT(took, std::chrono::seconds(10)) << r.err;
}

// Issue 17 item 14: sqs2pg holds the keyring and plaintext in memory, so it must never leave them
// in a core file, however the host's ulimit -c is set. unmask, waiting on stdin with the keys loaded,
// is killed with SIGSEGV in a directory where a core file would land (core_pattern "core").
TEST(CliTest, ACrashLeavesNoCoreFileWithTheKeys) {
  std::string key = MakeKeyFile();
  std::string dir = TestDir();
  CommandResult r = RunShell(
      fmt::format("cd {} && ulimit -c unlimited && ( sleep 3 | {} unmask --key-file {} & pid=$!; sleep 1; "
                  "kill -SEGV $pid; wait ); ls",
                  dir, SQS2PG_BINARY, key));
  EXPECT_THAT(r.out, Not(HasSubstr("core"))) << "a core file was written in " << dir;
}

TEST(CliTest, UsageErrorsExitWith2) {
  EXPECT_EQ(RunSqs2pg({}).exit_code, 2);
  EXPECT_EQ(RunSqs2pg({"run", "--batch-size", "0"}).exit_code, 2);
  EXPECT_EQ(RunSqs2pg({"mask", "--field", "email", "x"}).exit_code, 2);
}

TEST(CliTest, GlobalOptionsWorkAfterTheSubcommandToo) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  // warn hides run's "consuming ..." info line, so this shows the level took effect.
  CommandResult after =
      RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", key, "--log-level", "warn"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_THAT(after.out, HasSubstr("loaded 99"));
  EXPECT_THAT(after.err, Not(HasSubstr("consuming")));
  CommandResult before =
      RunSqs2pg({"--log-level", "debug", "run", "--queue", queue, "--table", table, "--key-file", key});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  EXPECT_THAT(before.err, HasSubstr("consuming"));
}

TEST(CliTest, KeygenWrites0600AndNeverOverwrites) {
  std::string path = TestDir() + "/k";
  std::filesystem::remove(path);
  ASSERT_EQ(RunSqs2pg({"keygen", "--out", path}).exit_code, 0);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string before = RunShell("cat '" + path + "'").out;
  CommandResult again = RunSqs2pg({"keygen", "--out", path});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.err, HasSubstr("already exists"));
  EXPECT_EQ(RunShell("cat '" + path + "'").out, before);
}

TEST(CliTest, AKeyFileOthersCanReadIsRefused) {
  std::string path = MakeKeyFile();
  chmod(path.c_str(), 0644);
  CommandResult r = RunSqs2pg({"mask", "--key-file", path, "--field", "ip", "1.2.3.4"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("chmod 600"));
}

TEST(CliTest, MaskUnmaskRoundTripAndRotation) {
  std::string key = MakeKeyFile();
  CommandResult masked =
      RunSqs2pg({"mask", "--key-file", key, "--field", "device_id", "593-47-5928", "104-25-0070"});
  ASSERT_EQ(masked.exit_code, 0) << masked.err;
  EXPECT_THAT(masked.out, Not(HasSubstr("593-47")));
  std::string first = masked.out.substr(0, masked.out.find('\n'));

  CommandResult rotated = RunSqs2pg({"keygen", "--rotate", "--out", key});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  CommandResult remasked = RunSqs2pg({"mask", "--key-file", key, "--field", "device_id", "593-47-5928"});
  EXPECT_NE(remasked.out.substr(0, remasked.out.find('\n')), first) << "the new key masks new values";

  CommandResult plain =
      RunSqs2pg({"unmask", "--key-file", key, first, remasked.out.substr(0, remasked.out.find('\n'))});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.out, "593-47-5928\n593-47-5928\n");
}

// A rotation that crashed after writing its temporary file must not block the next one.
TEST(CliTest, RotationReplacesTheFileAtomicallyDespiteAStaleTemporaryFile) {
  std::string key = MakeKeyFile();
  std::ofstream(key + ".tmp") << "half-written leftover of a crashed rotation\n";
  CommandResult rotated = RunSqs2pg({"keygen", "--rotate", "--out", key});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  EXPECT_FALSE(std::filesystem::exists(key + ".tmp"));
  struct stat st {};
  ASSERT_EQ(stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string text = RunShell("cat '" + key + "'").out;
  size_t keys = 0;
  for (size_t at = text.find("\nsqs2pg-key-v1 "); at != std::string::npos;
       at = text.find("\nsqs2pg-key-v1 ", at + 1))
    ++keys;
  EXPECT_EQ(keys, 2u);
}

TEST(CliTest, SchemaPrintsDdlAndGrantsWithoutTouchingADatabase) {
  CommandResult r = RunSqs2pg({"schema", "--table", "analytics.logins", "--role", "etl"},
                              {{"PGHOST", "127.0.0.1"}, {"PGPORT", "1"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("CREATE TABLE IF NOT EXISTS \"analytics\".\"logins_rejects\""));
  EXPECT_THAT(r.out, HasSubstr("body_shape text"));
  EXPECT_THAT(r.out, HasSubstr("ADD COLUMN IF NOT EXISTS body_bytes"));
  EXPECT_THAT(r.out,
              HasSubstr("GRANT SELECT, INSERT ON \"analytics\".\"logins\", \"analytics\".\"logins_ledger\", "
                        "\"analytics\".\"logins_rejects\" TO \"etl\""));
  EXPECT_THAT(r.out, HasSubstr("GRANT TEMPORARY ON DATABASE"));
  EXPECT_THAT(r.out, Not(HasSubstr("UPDATE")));
  EXPECT_THAT(r.out, Not(HasSubstr("DELETE")));
}

TEST(CliTest, UnmaskOfGarbageFailsWithoutEchoingIt) {
  std::string key = MakeKeyFile();
  CommandResult r = RunSqs2pg({"unmask", "--key-file", key, "abcdef12.c2VjcmV0LXZhbHVl"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, Not(HasSubstr("c2VjcmV0LXZhbHVl")));
}

TEST(CliTest, MaskOfIpUsesTheCanonicalForm) {
  std::string key = MakeKeyFile();
  CommandResult r = RunSqs2pg({"mask", "--key-file", key, "--field", "ip", "2001:DB8::0:1", "2001:db8::1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string a = r.out.substr(0, r.out.find('\n'));
  std::string b = r.out.substr(r.out.find('\n') + 1);
  EXPECT_EQ(a + "\n", b);
}

TEST(CliTest, SendReadsNdjsonAndPlainJsonArrays) {
  std::string queue = UniqueName("q");
  std::string dir = TestDir();
  std::ofstream(dir + "/a.ndjson") << "{\"user_id\":\"a\"}\n\n{\"user_id\":\"b\"}\nnot json at all\n";
  std::ofstream(dir + "/b.json") << "[{\"user_id\":\"c\"}, {\"user_id\":\"d\"}]";
  CommandResult r =
      RunSqs2pg({"send", "--create-queue", "--queue", queue, dir + "/a.ndjson", dir + "/b.json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sent 5 messages"));
}

}  // namespace
}  // namespace sqs2pg::integration
