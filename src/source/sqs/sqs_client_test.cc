#include "source/sqs/sqs_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <mutex>
#include <thread>

#include "aws/sigv4.h"
#include "common/digest.h"
#include "common/encoding.h"

namespace sqs2pg::sqs {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "fake/secret+KEY";
constexpr char kToken[] = "fake-session-token";
constexpr char kRegion[] = "eu-west-1";
// What fauxqs hands out: a host nobody resolves. Requests must still go to the endpoint.
constexpr char kQueueUrl[] = "http://sqs.eu-west-1.localhost:9/000000000000/login-queue";

struct Reply {
  Reply(int status = 200, std::string body = "{}",
        std::vector<std::pair<std::string, std::string>> headers = {}, milliseconds delay = milliseconds(0))
      : status(status), body(std::move(body)), headers(std::move(headers)), delay(delay) {}
  int status;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  milliseconds delay;
};

struct Seen {
  std::string path, host, target, body;
  int remote_port = 0;
  bool signature_ok = false;
};

// Checks a request's signature the way SQS would: re-sign the headers it says it signed.
bool SignatureMatches(const httplib::Request& req) {
  const std::string authorization = req.get_header_value("Authorization");
  size_t begin = authorization.find("SignedHeaders=") + 14;
  std::string names = authorization.substr(begin, authorization.find(',', begin) - begin);
  std::vector<aws::HttpHeader> headers;
  for (size_t pos = 0; pos <= names.size();) {
    size_t end = std::min(names.find(';', pos), names.size());
    std::string name = names.substr(pos, end - pos);
    headers.push_back({name, req.get_header_value(name.c_str())});
    pos = end + 1;
  }
  // The X-Amz-Date and token headers are present, so the signer only computes Authorization.
  auto added = aws::SignRequest({req.method, req.path, "", headers, req.body}, {"AKIDTEST", kSecret, kToken},
                                {kRegion, "sqs"}, std::chrono::system_clock::now());
  return added.ok() && added->size() == 1 && (*added)[0].value == authorization;
}

// An SQS stand-in on 127.0.0.1 with an OS-chosen port, answering from a script.
class FakeSqs {
 public:
  FakeSqs() {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");  // listening from here on: early connects queue up
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the accept loop has started would be lost, and join() would never return.
    while (!server_.is_running()) std::this_thread::sleep_for(milliseconds(1));
  }
  ~FakeSqs() {
    server_.stop();
    thread_.join();
  }

  // Replies in order; the last one repeats.
  void Script(std::vector<Reply> replies) {
    std::lock_guard lock(mu_);
    replies_ = std::move(replies);
    next_ = 0;
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void Handle(const httplib::Request& req, httplib::Response& res) {
    Reply reply;
    {
      std::lock_guard lock(mu_);
      seen_.push_back({req.path, req.get_header_value("Host"), req.get_header_value("X-Amz-Target"), req.body,
                       req.remote_port, SignatureMatches(req)});
      reply = replies_.empty() ? Reply{} : replies_[std::min(next_++, replies_.size() - 1)];
    }
    std::this_thread::sleep_for(reply.delay);
    res.status = reply.status;
    for (const auto& [name, value] : reply.headers) res.set_header(name, value);
    res.set_content(reply.body, "application/x-amz-json-1.0");
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Reply> replies_;
  size_t next_ = 0;
  std::vector<Seen> seen_;
};

ClientConfig ConfigFor(const std::string& endpoint) {
  ClientConfig config;
  config.endpoint_url = endpoint;
  config.region = kRegion;
  config.credentials = {"AKIDTEST", kSecret, kToken};
  config.retry = {4, milliseconds(1), milliseconds(5)};
  config.connect_timeout = milliseconds(1000);
  config.request_timeout = milliseconds(2000);
  return config;
}

std::string Md5Hex(std::string_view s) { return HexEncode(Md5(s)); }

class SqsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto client = SqsClient::Create(ConfigFor(fake_.url()));
    ASSERT_TRUE(client.ok()) << client.status().message();
    client_ = std::move(client).value();
  }
  FakeSqs fake_;
  std::unique_ptr<SqsClient> client_;
};

TEST_F(SqsClientTest, EveryRequestGoesSignedToTheConfiguredEndpoint) {
  fake_.Script({{200, R"({"Messages":[]})"}});
  ASSERT_TRUE(client_->ReceiveMessage(kQueueUrl, 10, 0, 30).ok());
  ASSERT_TRUE(client_->GetQueueAttributes(kQueueUrl, {"All"}).ok());
  std::vector<Seen> seen = fake_.seen();
  ASSERT_EQ(seen.size(), 2u);
  for (const Seen& s : seen) {
    EXPECT_EQ(s.path, "/");
    EXPECT_EQ(s.host, fake_.url().substr(7));
    EXPECT_TRUE(s.signature_ok) << s.target;
    EXPECT_THAT(s.body, HasSubstr(kQueueUrl));
    EXPECT_EQ(s.remote_port, seen[0].remote_port) << "one kept-alive connection";
  }
  EXPECT_EQ(seen[0].target, "AmazonSQS.ReceiveMessage");
  EXPECT_EQ(seen[1].target, "AmazonSQS.GetQueueAttributes");
}

TEST_F(SqsClientTest, RetriesServiceUnavailableThenSucceeds) {
  fake_.Script({{503, "", {}},
                {503, R"({"__type":"com.amazonaws.sqs#ServiceUnavailable"})"},
                {200, R"({"QueueUrl":"http://sqs.eu-west-1.localhost/1/login-queue"})"}});
  auto url = client_->GetQueueUrl("login-queue");
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(*url, "http://sqs.eu-west-1.localhost/1/login-queue");
  EXPECT_EQ(fake_.seen().size(), 3u);
}

TEST_F(SqsClientTest, RetriesThrottling) {
  fake_.Script({{400, R"({"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"})"},
                {429, ""},
                {400, "", {{"x-amzn-query-error", "AWS.SimpleQueueService.RequestThrottled;Sender"}}},
                {200, R"({"Attributes":{"VisibilityTimeout":"30"}})"}});
  auto attributes = client_->GetQueueAttributes(kQueueUrl, {"VisibilityTimeout"});
  ASSERT_TRUE(attributes.ok()) << attributes.status().message();
  EXPECT_EQ(attributes->at("VisibilityTimeout"), "30");
  EXPECT_EQ(fake_.seen().size(), 4u);
}

TEST_F(SqsClientTest, GivesUpAsTransientAfterMaxAttempts) {
  fake_.Script({{500, R"({"__type":"InternalError","message":"boom"})"}});
  auto url = client_->GetQueueUrl("login-queue");
  ASSERT_FALSE(url.ok());
  EXPECT_TRUE(url.status().IsTransient());
  EXPECT_THAT(url.status().message(), HasSubstr("InternalError"));
  EXPECT_THAT(url.status().message(), HasSubstr("after 4 attempts"));
  EXPECT_EQ(fake_.seen().size(), 4u);
}

TEST_F(SqsClientTest, MissingQueueIsNotFoundAndNotRetried) {
  fake_.Script(
      {{400,
        R"({"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."})",
        {{"x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender"}}}});
  auto url = client_->GetQueueUrl("login-queue");
  ASSERT_FALSE(url.ok());
  EXPECT_EQ(url.status().code(), Status::Code::kNotFound);
  EXPECT_EQ(url.status().message(), "queue login-queue does not exist at " + fake_.url());
  auto received = client_->ReceiveMessage(kQueueUrl, 1, 0, std::nullopt);
  EXPECT_EQ(received.status().code(), Status::Code::kNotFound);
  EXPECT_EQ(fake_.seen().size(), 2u);
}

TEST_F(SqsClientTest, OtherClientErrorsCarryAwsCodeAndMessageWithoutSecrets) {
  fake_.Script(
      {{403, std::string(R"({"__type":"com.amazonaws.sqs#SignatureDoesNotMatch","message":"expected )") +
                 kSecret + " and " + kToken + R"("})"}});
  auto url = client_->GetQueueUrl("login-queue");
  ASSERT_FALSE(url.ok());
  EXPECT_EQ(url.status().code(), Status::Code::kInvalidInput);  // a credential error: exit 2
  EXPECT_THAT(url.status().message(), HasSubstr("SignatureDoesNotMatch (HTTP 403)"));
  EXPECT_THAT(url.status().message(), HasSubstr("secret access key does not match"));
  EXPECT_THAT(url.status().message(), Not(HasSubstr(kSecret)));
  EXPECT_THAT(url.status().message(), Not(HasSubstr(kToken)));
  EXPECT_EQ(fake_.seen().size(), 1u);

  fake_.Script({{400, R"({"__type":"com.amazonaws.sqs#InvalidParameterValue","message":"bad"})"}});
  EXPECT_EQ(client_->GetQueueUrl("x").status().code(), Status::Code::kInvalidInput);
}

TEST_F(SqsClientTest, ReceivesUnicodeBodiesAndChecksTheirMd5) {
  const std::string body = "{\"user\":\"Zoë 😀\",\"note\":\"tab\\tquote\\\"\"}";
  std::string json_body =
      "{\\\"user\\\":\\\"Zo\\u00eb \\ud83d\\ude00\\\",\\\"note\\\":\\\"tab\\\\tquote\\\\\\\"\\\"}";
  fake_.Script(
      {{200, R"({"Messages":[{"MessageId":"m1","ReceiptHandle":"rh1","MD5OfBody":")" + Md5Hex(body) +
                 R"(","Body":")" + json_body +
                 R"(","Attributes":{"SentTimestamp":"1700000000123","ApproximateReceiveCount":"2"}}]})"}});
  auto messages = client_->ReceiveMessage(kQueueUrl, 10, 1, std::nullopt);
  ASSERT_TRUE(messages.ok()) << messages.status().message();
  ASSERT_EQ(messages->size(), 1u);
  EXPECT_EQ((*messages)[0].body, body);
  EXPECT_EQ((*messages)[0].sent_timestamp_ms, 1700000000123);
  EXPECT_EQ((*messages)[0].receive_count, 2);
  EXPECT_THAT(fake_.seen()[0].body,
              HasSubstr(R"("AttributeNames":["SentTimestamp","ApproximateReceiveCount","MessageGroupId",)"
                        R"("SequenceNumber","MessageDeduplicationId"])"));
  EXPECT_THAT(fake_.seen()[0].body, HasSubstr(R"("MessageSystemAttributeNames":)"));

  fake_.Script(
      {{200, R"({"Messages":[{"MessageId":"m2","ReceiptHandle":"rh","Body":"x","MD5OfBody":"00"}]})"}});
  // A damaged message is left for SQS to deliver again; the call itself succeeds.
  auto corrupt = client_->ReceiveMessage(kQueueUrl, 10, 0, std::nullopt);
  ASSERT_TRUE(corrupt.ok()) << corrupt.status().message();
  EXPECT_TRUE(corrupt->empty());
}

TEST_F(SqsClientTest, DeleteRetriesOnlyServerFaultEntries) {
  fake_.Script({{200, R"({"Successful":[{"Id":"0"}],"Failed":[
                   {"Id":"1","SenderFault":false,"Code":"InternalError","Message":"try again"},
                   {"Id":"2","SenderFault":true,"Code":"ReceiptHandleIsInvalid","Message":"bad"}]})"},
                {200, R"({"Successful":[{"Id":"1"}]})"}});
  std::vector<DeleteEntry> entries = {{"0", "rh0"}, {"1", "rh1"}, {"2", "rh2"}};
  auto failures = client_->DeleteMessageBatch(kQueueUrl, entries);
  ASSERT_TRUE(failures.ok()) << failures.status().message();
  ASSERT_EQ(failures->size(), 1u);
  EXPECT_EQ((*failures)[0].id, "2");
  EXPECT_EQ((*failures)[0].code, "ReceiptHandleIsInvalid");
  EXPECT_TRUE((*failures)[0].sender_fault);
  std::vector<Seen> seen = fake_.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].body, R"({"QueueUrl":")" + std::string(kQueueUrl) +
                              R"(","Entries":[{"Id":"1","ReceiptHandle":"rh1"}]})");
}

TEST_F(SqsClientTest, BatchEntriesThatKeepFailingAreReturnedAfterMaxRounds) {
  fake_.Script({{200, R"({"Failed":[{"Id":"a","SenderFault":false,"Code":"InternalError"}]})"}});
  std::vector<VisibilityEntry> entries = {{"a", "rh", 0}};
  auto failures = client_->ChangeMessageVisibilityBatch(kQueueUrl, entries);
  ASSERT_TRUE(failures.ok());
  ASSERT_EQ(failures->size(), 1u);
  EXPECT_EQ((*failures)[0].code, "InternalError");
  EXPECT_EQ(fake_.seen().size(), 4u);
}

TEST_F(SqsClientTest, SendReportsMd5MismatchAndMissingEntries) {
  fake_.Script({{200, R"({"Successful":[{"Id":"ok","MD5OfMessageBody":")" + Md5Hex("é\n\"") +
                          R"("},{"Id":"bad","MD5OfMessageBody":"0123"}]})"}});
  std::vector<SendEntry> entries = {{"ok", "é\n\""}, {"bad", "b"}, {"lost", "c"}};
  auto failures = client_->SendMessageBatch(kQueueUrl, entries);
  ASSERT_TRUE(failures.ok()) << failures.status().message();
  ASSERT_EQ(failures->size(), 2u);
  EXPECT_EQ((*failures)[0].id, "bad");
  EXPECT_EQ((*failures)[0].code, "MD5OfMessageBodyMismatch");
  EXPECT_EQ((*failures)[1].id, "lost");
  EXPECT_EQ(fake_.seen().size(), 1u) << "neither is retried: a resend could duplicate";
}

TEST_F(SqsClientTest, ChecksArgumentsBeforeSending) {
  std::vector<DeleteEntry> eleven(11, DeleteEntry{"x", "rh"});
  EXPECT_EQ(client_->DeleteMessageBatch(kQueueUrl, eleven).status().code(), Status::Code::kInvalidInput);
  auto none = client_->DeleteMessageBatch(kQueueUrl, {});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(client_->ReceiveMessage(kQueueUrl, 11, 0, std::nullopt).status().code(),
            Status::Code::kInvalidInput);
  EXPECT_EQ(client_->ReceiveMessage(kQueueUrl, 1, 21, std::nullopt).status().code(),
            Status::Code::kInvalidInput);
  std::vector<SendEntry> not_utf8 = {{"e", "\xff"}};
  EXPECT_EQ(client_->SendMessageBatch(kQueueUrl, not_utf8).status().code(), Status::Code::kInvalidInput);
  EXPECT_TRUE(fake_.seen().empty());
}

TEST_F(SqsClientTest, SlowAnswerTimesOutAsTransient) {
  ClientConfig config = ConfigFor(fake_.url());
  config.retry.max_attempts = 1;
  config.request_timeout = milliseconds(200);
  auto client = SqsClient::Create(config);
  ASSERT_TRUE(client.ok());
  fake_.Script({{200, R"({"QueueUrl":"u"})", {}, milliseconds(1500)}});
  auto url = (*client)->GetQueueUrl("login-queue");
  ASSERT_FALSE(url.ok());
  EXPECT_TRUE(url.status().IsTransient());
  EXPECT_THAT(url.status().message(), HasSubstr("cannot reach SQS at " + fake_.url()));
}

TEST_F(SqsClientTest, ASendWhoseAnswerIsLostIsNotSentAgain) {
  // The server got the batch but its answer never came: a resend could duplicate the messages
  // under new MessageIds, which no ledger can catch. Other calls are retried as before.
  ClientConfig config = ConfigFor(fake_.url());
  config.retry.max_attempts = 3;
  config.request_timeout = milliseconds(200);
  auto client = SqsClient::Create(config);
  ASSERT_TRUE(client.ok());
  fake_.Script({{200, R"({"Successful":[]})", {}, milliseconds(1500)}, {200, R"({"Successful":[]})"}});
  std::vector<SendEntry> entries = {{"a", "x"}};
  auto sent = (*client)->SendMessageBatch(kQueueUrl, entries);
  ASSERT_FALSE(sent.ok());
  EXPECT_THAT(sent.status().message(), HasSubstr("may or may not have acted on this SendMessageBatch"));
  EXPECT_EQ(fake_.seen().size(), 1u);
}

TEST(SqsClientNoServerTest, ConnectionRefusedSaysWhereAndIsTransient) {
  std::string endpoint;
  {
    FakeSqs gone;  // an OS-chosen port that nothing listens on once it is closed
    endpoint = gone.url();
  }
  ClientConfig config = ConfigFor(endpoint);
  config.retry.max_attempts = 2;
  auto client = SqsClient::Create(config);
  ASSERT_TRUE(client.ok());
  auto url = (*client)->GetQueueUrl("login-queue");
  ASSERT_FALSE(url.ok());
  EXPECT_TRUE(url.status().IsTransient());
  EXPECT_THAT(url.status().message(), HasSubstr("cannot reach SQS at " + endpoint + ": "));
  EXPECT_THAT(url.status().message(), HasSubstr("after 2 attempts"));
}

TEST(SqsClientCreateTest, RejectsBadConfiguration) {
  ClientConfig config = ConfigFor("127.0.0.1:4566");
  EXPECT_EQ(SqsClient::Create(config).status().code(), Status::Code::kInvalidInput);
  config = ConfigFor("http://127.0.0.1:4566");
  config.region.clear();
  EXPECT_FALSE(SqsClient::Create(config).ok());
  config = ConfigFor("http://127.0.0.1:4566");
  config.credentials.secret_access_key.clear();
  auto missing = SqsClient::Create(config);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), Not(HasSubstr(kToken)));
}

}  // namespace
}  // namespace sqs2pg::sqs
