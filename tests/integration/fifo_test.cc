// FIFO queues against two real implementations, fauxqs and moto_server: a group's next messages
// are not delivered while one of the group is in flight, which once made a drain stop after one
// message per group. Each test sends with `sqs2pg send` and loads with `sqs2pg run`.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "harness.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// One SQS implementation: its endpoint ("" is the stack's fauxqs, from the environment).
struct Server {
  const char* name;
  const char* endpoint_var;
  bool gives_sequence_numbers;  // moto 5 sends no SequenceNumber attribute
  // The drain test's load. moto takes about 0.45 s for each FIFO receive, so it gets fewer.
  int groups, per_group, hot;
};
void PrintTo(const Server& s, std::ostream* os) { *os << s.name; }

std::string Endpoint(const Server& s) { return StackVar(s.endpoint_var); }

// Login messages: `per_group` in each of `groups` users, then `hot` more for user "hot". Every
// body differs (field n, counted from first_n), so content-based deduplication keeps them all.
std::string WriteLogins(int groups, int per_group, int hot, int first_n = 0) {
  std::string path = TestDir() + fmt::format("/logins-{}.ndjson", first_n);
  std::ofstream out(path);
  int n = first_n;
  auto line = [&](const std::string& user) {
    out << fmt::format(
        R"({{"user_id":"{}","app_version":"2.3.0","device_type":"ios","ip":"10.0.{}.{}","locale":"RU",)"
        R"("device_id":"593-47-{:04}","n":{}}})"
        "\n",
        user, n / 250 % 250, n % 250, n % 10000, n);
    ++n;
  };
  // Interleaved, as users log in: the queue holds every group at once.
  for (int i = 0; i < per_group; ++i)
    for (int g = 0; g < groups; ++g) line(fmt::format("user-{}", g));
  for (int i = 0; i < hot; ++i) line("hot");
  return path;
}

class FifoTest : public ::testing::TestWithParam<Server> {
 protected:
  std::vector<std::string> Queue(const std::string& queue) {
    return {"--endpoint-url", Endpoint(GetParam()), "--queue", queue};
  }
  CommandResult Send(const std::string& queue, std::vector<std::string> extra) {
    std::vector<std::string> args = {"send"};
    for (auto& a : Queue(queue)) args.push_back(a);
    for (auto& a : extra) args.push_back(std::move(a));
    return RunSqs2pg(args);
  }
  std::map<std::string, std::string> Depth(const std::string& queue) {
    auto client = ClientFor(Endpoint(GetParam()));
    auto url = client->GetQueueUrl(queue);
    EXPECT_TRUE(url.ok()) << url.status().message();
    if (!url.ok()) return {};
    auto attrs = client->GetQueueAttributes(
        *url, {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"});
    EXPECT_TRUE(attrs.ok()) << attrs.status().message();
    return attrs.ok() ? *attrs : std::map<std::string, std::string>{};
  }
};

TEST_P(FifoTest, OneDrainLoadsManyGroupsAndAHotGroupCompletely) {
  const int groups = GetParam().groups, per_group = GetParam().per_group, hot = GetParam().hot;
  const int total = groups * per_group + hot;
  std::string queue = UniqueName("q") + ".fifo";
  std::string table = UniqueName("t");
  CommandResult sent =
      Send(queue, {"--create-queue", "--group-id-field", "user_id", WriteLogins(groups, per_group, hot)});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_THAT(sent.out, HasSubstr(fmt::format("sent {} messages", total)));

  std::vector<std::string> run = {"run",         "--table",        table, "--key-file",
                                  MakeKeyFile(), "--wait-seconds", "1"};
  for (auto& a : Queue(queue)) run.push_back(a);
  CommandResult r = RunSqs2pg(run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(fmt::format("loaded {},", total)));
  Db db;
  EXPECT_EQ(db.Count(table), total);
  auto depth = Depth(queue);
  EXPECT_EQ(depth["ApproximateNumberOfMessages"], "0");
  EXPECT_EQ(depth["ApproximateNumberOfMessagesNotVisible"], "0");
  // The ledger keeps each message's group and sequence number: SQS's order is recoverable.
  EXPECT_EQ(db.Scalar(fmt::format("SELECT count(DISTINCT message_group_id) FROM {}_ledger", table)),
            std::to_string(groups + 1));
  EXPECT_EQ(db.Scalar(fmt::format("SELECT count(*) FROM {}_ledger WHERE message_group_id IS NULL", table)),
            "0");
  if (GetParam().gives_sequence_numbers) {
    EXPECT_EQ(db.Scalar(fmt::format("SELECT count(DISTINCT sequence_number) FROM {}_ledger", table)),
              std::to_string(total));
  }
  EXPECT_EQ(db.Scalar(fmt::format("SELECT count(*) FROM {}_ledger WHERE message_group_id = 'hot'", table)),
            std::to_string(hot));
}

TEST_P(FifoTest, FollowModeKeepsUpWithAFifoQueue) {
  const int groups = 10, per_group = 20, hot = 100, total = groups * per_group + hot;
  std::string queue = UniqueName("q") + ".fifo";
  std::string table = UniqueName("t");
  std::string key = MakeKeyFile();
  // One message first, so the table exists when the rest arrive.
  ASSERT_EQ(
      Send(queue, {"--create-queue", "--group-id-field", "user_id", WriteLogins(1, 1, 0, 100000)}).exit_code,
      0);
  std::string pid_file = TestDir() + "/run.pid";
  CommandResult follow;
  std::thread runner([&] {
    follow =
        RunShell(fmt::format("exec {} run --follow --endpoint-url {} --queue {} --table {} --key-file {} "
                             "--wait-seconds 1 & echo $! > "
                             "{}; wait $!",
                             SQS2PG_BINARY, Endpoint(GetParam()), queue, table, key, pid_file));
  });
  std::string path = WriteLogins(groups, per_group, hot);
  CommandResult sent = Send(queue, {"--group-id-field", "user_id", path});
  EXPECT_EQ(sent.exit_code, 0) << sent.err;
  Db db;
  // Not a speed test: a bound that only a stall (a group waiting out --batch-max-wait per
  // round: 120 rounds of the hot group alone) would come near.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  long loaded = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (db.Scalar(fmt::format("SELECT to_regclass('{}') IS NOT NULL", table)) == "t" &&
        (loaded = db.Count(table)) >= total + 1)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  RunShell(fmt::format("kill -TERM $(cat {})", pid_file));
  runner.join();
  EXPECT_EQ(follow.exit_code, 0) << follow.err;
  EXPECT_EQ(loaded, total + 1);
  EXPECT_EQ(db.Count(table), total + 1);
}

TEST_P(FifoTest, SendToAFifoQueueWithoutAGroupFailsOnceAndClearly) {
  std::string queue = UniqueName("q") + ".fifo";
  auto client = ClientFor(Endpoint(GetParam()));
  ASSERT_TRUE(
      client->CreateQueue(queue, {{"FifoQueue", "true"}, {"ContentBasedDeduplication", "true"}}).ok());
  CommandResult r = Send(queue, {WriteLogins(5, 20, 0)});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("is a FIFO queue: every message needs a MessageGroupId"));
  EXPECT_THAT(r.err, HasSubstr("--group-id-field"));
  // One error, not one a message.
  size_t errors = 0;
  for (size_t at = 0; (at = r.err.find("MessageGroupId", at)) != std::string::npos; ++at) ++errors;
  EXPECT_EQ(errors, 1u) << r.err;
  EXPECT_EQ(Depth(queue)["ApproximateNumberOfMessages"], "0");
}

TEST_P(FifoTest, OneGroupWithDeduplicationIdsFromAField) {
  std::string queue = UniqueName("q") + ".fifo";
  auto client = ClientFor(Endpoint(GetParam()));
  // No content-based deduplication: every message needs an id, and without one send says so.
  ASSERT_TRUE(client->CreateQueue(queue, {{"FifoQueue", "true"}}).ok());
  std::string path = WriteLogins(3, 10, 0);
  CommandResult refused = Send(queue, {"--group-id", "all-logins", path});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("no ContentBasedDeduplication"));

  ASSERT_EQ(Send(queue, {"--group-id", "all-logins", "--dedup-id-field", "n", path}).exit_code, 0);
  // Sent again within five minutes, with the same deduplication ids: SQS drops every one.
  CommandResult again = Send(queue, {"--group-id", "all-logins", "--dedup-id-field", "n", path});
  ASSERT_EQ(again.exit_code, 0) << again.err;

  std::string table = UniqueName("t");
  std::vector<std::string> run = {"run",         "--table",        table, "--key-file",
                                  MakeKeyFile(), "--wait-seconds", "1"};
  for (auto& a : Queue(queue)) run.push_back(a);
  CommandResult r = RunSqs2pg(run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Db db;
  EXPECT_EQ(db.Count(table), 30);
  EXPECT_EQ(
      db.Scalar(fmt::format("SELECT min(message_group_id) || max(message_group_id) FROM {}_ledger", table)),
      "all-loginsall-logins");
}

TEST_P(FifoTest, AGroupFieldAMessageLacksNamesTheMessageNotItsContent) {
  std::string queue = UniqueName("q") + ".fifo";
  std::string path = TestDir() + "/m.ndjson";
  std::ofstream(path) << R"({"user_id":"a","ip":"203.0.113.9"})"
                      << "\n"
                      << R"({"ip":"203.0.113.10"})"
                      << "\n";
  CommandResult r = Send(queue, {"--create-queue", "--group-id-field", "user_id", path});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("message 2: it has no field user_id"));
  EXPECT_THAT(r.err, Not(HasSubstr("203.0.113")));
}

// Issue 17, "Also": README's own FIFO example, on the sample data whose message 13 has no user_id.
// --group-id is the group of the messages without the field; the rest are grouped per user.
TEST_P(FifoTest, TheReadmesFifoExampleSendsEverySampleMessage) {
  std::string queue = UniqueName("q") + ".fifo";
  CommandResult r = Send(
      queue, {"--create-queue", "--group-id-field", "user_id", "--group-id", "no-user-id", SampleDataPath()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::stoi(Depth(queue)["ApproximateNumberOfMessages"]) +
                std::stoi(Depth(queue)["ApproximateNumberOfMessagesNotVisible"]),
            100);
  std::string table = UniqueName("t");
  std::vector<std::string> run = {"run",         "--table",        table, "--key-file",
                                  MakeKeyFile(), "--wait-seconds", "1"};
  for (auto& a : Queue(queue)) run.push_back(a);
  CommandResult loaded = RunSqs2pg(run);
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  Db db;
  EXPECT_EQ(
      db.Scalar(fmt::format("SELECT count(*) FROM {}_ledger WHERE message_group_id = 'no-user-id'", table)),
      "1");
  EXPECT_EQ(db.Scalar(fmt::format("SELECT count(*) FROM {}_ledger", table)), "100");
}

TEST_P(FifoTest, GroupOptionsOnAStandardQueueAreAnError) {
  std::string queue = UniqueName("q");
  CommandResult r = Send(queue, {"--create-queue", "--group-id", "g", WriteLogins(1, 1, 0)});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("is a standard queue"));
}

INSTANTIATE_TEST_SUITE_P(Servers, FifoTest,
                         ::testing::Values(Server{"fauxqs", "AWS_ENDPOINT_URL_SQS", true, 40, 10, 200},
                                           Server{"moto", "MOTO_ENDPOINT_URL", false, 10, 5, 50}),
                         [](const ::testing::TestParamInfo<Server>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace sqs2pg::integration
