// moto_server is a second, independent SQS implementation: it must accept our signed requests.
// It routes by the SigV4 Authorization header, so a wrong signature scope fails here.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "harness.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;

TEST(MotoTest, EveryOperationWeUseIsAccepted) {
  auto client = ClientFor(StackVar("MOTO_ENDPOINT_URL"));
  ASSERT_NE(client, nullptr);
  std::string name = UniqueName("q");
  auto url = client->CreateQueue(name, {});
  ASSERT_TRUE(url.ok()) << url.status().message();
  auto looked_up = client->GetQueueUrl(name);
  ASSERT_TRUE(looked_up.ok()) << looked_up.status().message();
  EXPECT_EQ(*looked_up, *url);

  std::vector<sqs::SendEntry> entries = {{"a", R"({"user_id":"u1"})"}, {"b", "caf\xc3\xa9 \"quoted\" \\ \t"}};
  auto send_failures = client->SendMessageBatch(*url, entries);
  ASSERT_TRUE(send_failures.ok()) << send_failures.status().message();
  EXPECT_TRUE(send_failures->empty());

  std::vector<sqs::SqsMessage> got;
  for (int i = 0; i < 5 && got.size() < 2; ++i) {
    auto batch = client->ReceiveMessage(*url, 10, 1, 30);
    ASSERT_TRUE(batch.ok()) << batch.status().message();
    got.insert(got.end(), batch->begin(), batch->end());
  }
  ASSERT_EQ(got.size(), 2u);
  std::set<std::string> bodies;
  for (const auto& m : got) {
    bodies.insert(m.body);
    EXPECT_GT(m.sent_timestamp_ms, 1'600'000'000'000);
    EXPECT_EQ(m.receive_count, 1);
  }
  EXPECT_EQ(bodies, (std::set<std::string>{entries[0].body, entries[1].body}));

  std::vector<sqs::VisibilityEntry> extend = {{"0", got[0].receipt_handle, 60}};
  auto extended = client->ChangeMessageVisibilityBatch(*url, extend);
  ASSERT_TRUE(extended.ok()) << extended.status().message();
  EXPECT_TRUE(extended->empty());

  std::vector<sqs::DeleteEntry> deletes = {{"0", got[0].receipt_handle}, {"1", got[1].receipt_handle}};
  auto delete_failures = client->DeleteMessageBatch(*url, deletes);
  ASSERT_TRUE(delete_failures.ok()) << delete_failures.status().message();
  EXPECT_TRUE(delete_failures->empty());

  auto attrs = client->GetQueueAttributes(
      *url, {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"});
  ASSERT_TRUE(attrs.ok()) << attrs.status().message();
  EXPECT_EQ((*attrs)["ApproximateNumberOfMessages"], "0");
  EXPECT_EQ((*attrs)["ApproximateNumberOfMessagesNotVisible"], "0");
}

TEST(MotoTest, TheWholeEtlRunsAgainstMoto) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  std::string endpoint = StackVar("MOTO_ENDPOINT_URL");
  CommandResult sent =
      RunSqs2pg({"send", "--endpoint-url", endpoint, "--create-queue", "--queue", queue, SampleDataPath()});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  CommandResult r = RunSqs2pg({"run", "--endpoint-url", endpoint, "--queue", queue, "--table", table,
                               "--key-file", key, "--wait-seconds", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // With many receives in flight moto sometimes hands one message to two of them at once; the
  // pipeline keeps one copy, so what is loaded is still exact.
  EXPECT_THAT(r.out, HasSubstr("loaded 99,"));
  EXPECT_THAT(r.out, HasSubstr("rejected 1,"));
  Db db;
  EXPECT_EQ(db.Count(table), 99);
}

TEST(MotoTest, AnUnknownQueueIsNotFound) {
  auto client = ClientFor(StackVar("MOTO_ENDPOINT_URL"));
  auto url = client->GetQueueUrl("no-such-queue-here");
  ASSERT_FALSE(url.ok());
  EXPECT_EQ(url.status().code(), Status::Code::kNotFound);
  EXPECT_THAT(url.status().message(), HasSubstr("no-such-queue-here"));
}

}  // namespace
}  // namespace sqs2pg::integration
