// Both SQS protocols against moto_server, which speaks both: every operation sqs2pg uses, a batch
// that partly fails, and an error code. And --sqs-protocol auto against a server that, like
// LocalStack 0.14, refuses JSON: a proxy on loopback that answers JSON requests as LocalStack
// 0.14 does and passes Query requests on to moto.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <set>

#include "harness.h"
#include "loopback.h"

namespace sqs2pg::integration {
namespace {

using sqs::SqsProtocol;
using ::testing::HasSubstr;
using ::testing::Not;

class BothProtocolsTest : public ::testing::TestWithParam<SqsProtocol> {};

TEST_P(BothProtocolsTest, EveryOperationWithPartialFailuresAndErrors) {
  auto client = ClientFor(StackVar("MOTO_ENDPOINT_URL"), GetParam());
  ASSERT_NE(client, nullptr);
  std::string name = UniqueName("q");
  auto url = client->CreateQueue(name, {{"MessageRetentionPeriod", "86400"}, {"VisibilityTimeout", "30"}});
  ASSERT_TRUE(url.ok()) << url.status().message();
  auto looked_up = client->GetQueueUrl(name);
  ASSERT_TRUE(looked_up.ok()) << looked_up.status().message();
  EXPECT_EQ(*looked_up, *url);

  // Bodies that test the encodings: form and XML escapes, a CR (XML would turn CRLF into LF),
  // non-ASCII, and spaces only.
  std::vector<sqs::SendEntry> entries = {
      {"a", R"({"user_id":"u1","x":"a&b=c+d"})"}, {"b", "caf\xc3\xa9 <\"quoted\"> \\ \t\r\n"}, {"c", "   "}};
  auto send_failures = client->SendMessageBatch(*url, entries);
  ASSERT_TRUE(send_failures.ok()) << send_failures.status().message();
  EXPECT_TRUE(send_failures->empty());  // also: every MD5OfMessageBody matched

  std::vector<sqs::SqsMessage> got;
  for (int i = 0; i < 5 && got.size() < 3; ++i) {
    auto batch = client->ReceiveMessage(*url, 10, 1, 30);
    ASSERT_TRUE(batch.ok()) << batch.status().message();  // a body whose MD5 differed would fail it
    got.insert(got.end(), batch->begin(), batch->end());
  }
  ASSERT_EQ(got.size(), 3u);
  std::set<std::string> bodies;
  for (const auto& m : got) {
    bodies.insert(m.body);
    EXPECT_GT(m.sent_timestamp_ms, 1'600'000'000'000);
    EXPECT_EQ(m.receive_count, 1);
  }
  EXPECT_EQ(bodies, (std::set<std::string>{entries[0].body, entries[1].body, entries[2].body}));

  // A batch that partly fails: the bad entry comes back as the sender's fault, the rest succeed.
  std::vector<sqs::VisibilityEntry> extend = {{"0", got[0].receipt_handle, 60}, {"bad", "not-a-handle", 60}};
  auto extended = client->ChangeMessageVisibilityBatch(*url, extend);
  ASSERT_TRUE(extended.ok()) << extended.status().message();
  ASSERT_EQ(extended->size(), 1u);
  EXPECT_EQ((*extended)[0].id, "bad");
  EXPECT_EQ((*extended)[0].code, "ReceiptHandleIsInvalid");

  std::vector<sqs::DeleteEntry> deletes = {{"0", got[0].receipt_handle},
                                           {"1", got[1].receipt_handle},
                                           {"2", got[2].receipt_handle},
                                           {"bad", "not-a-handle"}};
  auto delete_failures = client->DeleteMessageBatch(*url, deletes);
  ASSERT_TRUE(delete_failures.ok()) << delete_failures.status().message();
  ASSERT_EQ(delete_failures->size(), 1u);
  EXPECT_EQ((*delete_failures)[0].id, "bad");
  EXPECT_EQ((*delete_failures)[0].code, "ReceiptHandleIsInvalid");
  EXPECT_TRUE((*delete_failures)[0].sender_fault);

  auto attrs = client->GetQueueAttributes(
      *url,
      {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "MessageRetentionPeriod"});
  ASSERT_TRUE(attrs.ok()) << attrs.status().message();
  EXPECT_EQ((*attrs)["ApproximateNumberOfMessages"], "0");
  EXPECT_EQ((*attrs)["ApproximateNumberOfMessagesNotVisible"], "0");
  EXPECT_EQ((*attrs)["MessageRetentionPeriod"], "86400");

  // Error codes: a missing queue is NotFound, by name; an invalid request is the caller's.
  auto missing = client->GetQueueUrl("no-such-queue-" + name);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound) << missing.status().message();
  EXPECT_THAT(missing.status().message(), HasSubstr("no-such-queue-" + name));
  auto invalid = client->GetQueueAttributes(*url, {"NoSuchAttribute"});
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status().code(), Status::Code::kInvalidInput) << invalid.status().message();
}

TEST_P(BothProtocolsTest, FifoAttributesGoAndComeBack) {
  auto client = ClientFor(StackVar("MOTO_ENDPOINT_URL"), GetParam());
  ASSERT_NE(client, nullptr);
  auto url = client->CreateQueue(UniqueName("q") + ".fifo", {{"FifoQueue", "true"}});
  ASSERT_TRUE(url.ok()) << url.status().message();
  std::vector<sqs::SendEntry> entries = {{"a", "first", "g1", "d1"}, {"b", "second", "g1", "d2"}};
  auto sent = client->SendMessageBatch(*url, entries, /*deduplicated=*/true);
  ASSERT_TRUE(sent.ok()) << sent.status().message();
  EXPECT_TRUE(sent->empty());
  auto got = client->ReceiveMessage(*url, 10, 1, 30);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].body, "first");
  EXPECT_EQ((*got)[0].message_group_id, "g1");
  EXPECT_EQ((*got)[0].deduplication_id, "d1");
  EXPECT_FALSE((*got)[0].sequence_number.empty());
  EXPECT_FALSE((*got)[1].sequence_number.empty());  // (moto's are random, not increasing)
}

INSTANTIATE_TEST_SUITE_P(Moto, BothProtocolsTest, ::testing::Values(SqsProtocol::kJson, SqsProtocol::kQuery),
                         [](const auto& info) {
                           return info.param == SqsProtocol::kJson ? "Json" : "Query";
                         });

TEST(QueryProtocolTest, TheWholeEtlRunsOverQuery) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  std::string endpoint = StackVar("MOTO_ENDPOINT_URL");
  CommandResult sent = RunSqs2pg({"send", "--sqs-protocol", "query", "--endpoint-url", endpoint,
                                  "--create-queue", "--queue", queue, SampleDataPath()});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  CommandResult r = RunSqs2pg({"run", "--sqs-protocol", "query", "--endpoint-url", endpoint, "--queue", queue,
                               "--table", table, "--key-file", key, "--wait-seconds", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("loaded 99,"));
  EXPECT_THAT(r.out, HasSubstr("rejected 1,"));
  Db db;
  EXPECT_EQ(db.Count(table), 99);
}

// Answers JSON requests as LocalStack 0.14 does (HTTP 500, an XML InternalError), and passes
// Query requests on to moto.
class QueryOnlySqs {
 public:
  explicit QueryOnlySqs(const std::string& moto_url)
      : moto_(moto_url), server_([this](httplib::Server& s) {
          // A thread per keep-alive connection: sqs2pg holds many long polls open at once.
          s.new_task_queue = [] { return new httplib::ThreadPool(64); };
          s.Post(".*", [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); });
        }) {}
  std::string url() const { return server_.url(); }
  int json_refused() const { return json_refused_.load(); }
  int query_passed() const { return query_passed_.load(); }

 private:
  void Handle(const httplib::Request& req, httplib::Response& res) {
    if (req.has_header("X-Amz-Target")) {
      ++json_refused_;
      res.status = 500;
      res.set_content(
          "<?xml version='1.0' encoding='utf-8'?>\n<ErrorResponse "
          "xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><Error><Code>InternalError</"
          "Code><Message>exception "
          "while calling sqs with unknown operation: Operation detection failed. Missing Action in request "
          "for "
          "query-protocol service "
          "ServiceModel(sqs).</Message></Error><RequestId>r</RequestId></ErrorResponse>",
          "text/xml");
      return;
    }
    ++query_passed_;
    httplib::Client moto(moto_);
    moto.set_read_timeout(std::chrono::seconds(30));
    httplib::Headers headers;
    for (const auto& [name, value] : req.headers) {
      if (name == "Authorization" || name == "X-Amz-Date" || name == "X-Amz-Security-Token") {
        headers.emplace(name, value);
      }
    }
    auto answer = moto.Post(req.path, headers, req.body, req.get_header_value("Content-Type"));
    if (!answer) {
      res.status = 502;
      return;
    }
    res.status = answer->status;
    res.set_content(answer->body, answer->get_header_value("Content-Type"));
  }

  std::string moto_;
  std::atomic<int> json_refused_{0}, query_passed_{0};
  Loopback server_;
};

TEST(QueryProtocolTest, AutoFallsBackToQueryWhenJsonIsRefused) {
  QueryOnlySqs sqs(StackVar("MOTO_ENDPOINT_URL"));
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  CommandResult sent =
      RunSqs2pg({"send", "--endpoint-url", sqs.url(), "--create-queue", "--queue", queue, SampleDataPath()});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_THAT(sent.err, HasSubstr("does not understand the JSON protocol"));
  int refused_by_send = sqs.json_refused();
  EXPECT_EQ(refused_by_send, 1);  // the first call; the rest went over Query at once

  CommandResult r = RunSqs2pg({"run", "--sqs-protocol", "auto", "--endpoint-url", sqs.url(), "--queue", queue,
                               "--table", table, "--key-file", key, "--wait-seconds", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("loaded 99,"));
  EXPECT_THAT(r.out, HasSubstr("rejected 1,"));
  // The run learned it once too (GetQueueUrl), and its receivers never tried JSON.
  EXPECT_EQ(sqs.json_refused() - refused_by_send, 1);
  Db db;
  EXPECT_EQ(db.Count(table), 99);

  // Told to speak JSON, the client does not fall back: the error says what the server answered.
  auto json = ClientFor(sqs.url(), SqsProtocol::kJson)->GetQueueUrl(queue);
  ASSERT_FALSE(json.ok());
  EXPECT_THAT(json.status().message(), HasSubstr("InternalError"));
  EXPECT_THAT(json.status().message(), HasSubstr("Missing Action"));
}

}  // namespace
}  // namespace sqs2pg::integration
