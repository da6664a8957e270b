#include "source/sqs/sqs_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include "common/digest.h"
#include "common/encoding.h"

namespace sqs2pg::sqs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kHelloMd5[] = "5d41402abc4b2a76b9719d911017c592";  // MD5("hello")
constexpr char kQueueUrl[] = "http://sqs.us-east-1.localhost:4566/000000000000/login-queue";

std::string Md5Hex(std::string_view s) { return HexEncode(Md5(s)); }

TEST(ParseEndpointTest, SplitsHostAndPath) {
  auto local = ParseEndpoint("http://127.0.0.1:4566");
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local->host, "127.0.0.1:4566");
  EXPECT_EQ(local->path, "/");
  EXPECT_EQ(local->request_url, "http://127.0.0.1:4566/");
  EXPECT_EQ(local->url, "http://127.0.0.1:4566");

  auto aws = ParseEndpoint("HTTPS://sqs.eu-west-1.amazonaws.com/");
  ASSERT_TRUE(aws.ok());
  EXPECT_EQ(aws->host, "sqs.eu-west-1.amazonaws.com");
  EXPECT_EQ(aws->request_url, "https://sqs.eu-west-1.amazonaws.com/");

  auto with_path = ParseEndpoint("http://[::1]:9324/sqs/");
  ASSERT_TRUE(with_path.ok());
  EXPECT_EQ(with_path->host, "[::1]:9324");
  EXPECT_EQ(with_path->path, "/sqs/");
}

TEST(ParseEndpointTest, RejectsWhatItCannotSign) {
  for (const char* bad :
       {"ftp://h", "127.0.0.1:4566", "http://user:pw@h", "http://h/?q=1", "http:///x", "http://h\r\nX: y"}) {
    auto endpoint = ParseEndpoint(bad);
    EXPECT_FALSE(endpoint.ok()) << bad;
    EXPECT_EQ(endpoint.status().code(), Status::Code::kInvalidInput) << bad;
  }
}

TEST(BuildSignedRequestTest, PostsSignedJsonToTheEndpoint) {
  auto endpoint = ParseEndpoint("http://127.0.0.1:4566");
  ASSERT_TRUE(endpoint.ok());
  auto request = BuildSignedRequest(*endpoint, "ReceiveMessage", "{}", {"AKID", "secret", "session"},
                                    "us-east-1", std::chrono::system_clock::time_point{});
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->url, "http://127.0.0.1:4566/");
  EXPECT_EQ(request->body, "{}");
  std::map<std::string, std::string> headers;
  for (const HttpHeader& h : request->headers) headers[h.name] = h.value;
  EXPECT_EQ(headers["Host"], "127.0.0.1:4566");
  EXPECT_EQ(headers["Content-Type"], "application/x-amz-json-1.0");
  EXPECT_EQ(headers["X-Amz-Target"], "AmazonSQS.ReceiveMessage");
  EXPECT_EQ(headers["X-Amz-Date"], "19700101T000000Z");
  EXPECT_EQ(headers["X-Amz-Security-Token"], "session");
  EXPECT_THAT(headers["Authorization"], HasSubstr("Credential=AKID/19700101/us-east-1/sqs/aws4_request, "
                                                  "SignedHeaders=content-type;host;x-amz-date;"
                                                  "x-amz-security-token;x-amz-target, Signature="));
}

TEST(RequestBodyTest, WritesEachOperation) {
  EXPECT_EQ(GetQueueUrlBody("login-queue"), R"({"QueueName":"login-queue"})");
  EXPECT_EQ(CreateQueueBody("q", {}), R"({"QueueName":"q"})");
  EXPECT_EQ(CreateQueueBody("q", {{"VisibilityTimeout", "30"}, {"DelaySeconds", "0"}}),
            R"({"QueueName":"q","Attributes":{"DelaySeconds":"0","VisibilityTimeout":"30"}})");
  EXPECT_EQ(
      ReceiveMessageBody("u", 10, 20, std::nullopt),
      R"({"QueueUrl":"u","MaxNumberOfMessages":10,"WaitTimeSeconds":20,)"
      R"("AttributeNames":["SentTimestamp","ApproximateReceiveCount","MessageGroupId","SequenceNumber",)"
      R"("MessageDeduplicationId"],)"
      R"("MessageSystemAttributeNames":["SentTimestamp","ApproximateReceiveCount","MessageGroupId",)"
      R"("SequenceNumber","MessageDeduplicationId"]})");
  EXPECT_THAT(ReceiveMessageBody("u", 1, 0, 45), HasSubstr(R"("WaitTimeSeconds":0,"VisibilityTimeout":45,)"));
  std::vector<DeleteEntry> deletes = {{"0", "rh0"}, {"1", "rh1"}};
  EXPECT_EQ(
      DeleteMessageBatchBody("u", deletes),
      R"({"QueueUrl":"u","Entries":[{"Id":"0","ReceiptHandle":"rh0"},{"Id":"1","ReceiptHandle":"rh1"}]})");
  std::vector<VisibilityEntry> visibility = {{"a", "rh", 0}};
  EXPECT_EQ(ChangeMessageVisibilityBatchBody("u", visibility),
            R"({"QueueUrl":"u","Entries":[{"Id":"a","ReceiptHandle":"rh","VisibilityTimeout":0}]})");
  EXPECT_EQ(GetQueueAttributesBody("u", {"All"}), R"({"QueueUrl":"u","AttributeNames":["All"]})");
}

TEST(RequestBodyTest, EscapesAnyBodyExactly) {
  const std::string tricky = std::string("quote\" backslash\\ slash/ nl\n cr\r tab\t nul") + '\0' +
                             "\x01\x1f\x7f é ሴ 😀 \xe2\x80\xa8 </script>";
  std::vector<SendEntry> entries = {{"e1", tricky}, {"e2", ""}};
  auto body = SendMessageBatchBody(kQueueUrl, entries);
  ASSERT_TRUE(body.ok());
  EXPECT_THAT(*body, HasSubstr(R"(nul\u0000\u0001\u001f)"));

  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(*body).get(doc), simdjson::SUCCESS) << *body;
  std::string_view first, second, url;
  ASSERT_EQ(doc["Entries"].at(0)["MessageBody"].get(first), simdjson::SUCCESS);
  ASSERT_EQ(doc["Entries"].at(1)["MessageBody"].get(second), simdjson::SUCCESS);
  ASSERT_EQ(doc["QueueUrl"].get(url), simdjson::SUCCESS);
  EXPECT_EQ(first, tricky);
  EXPECT_EQ(second, "");
  EXPECT_EQ(url, kQueueUrl);
}

TEST(RequestBodyTest, SendsFifoIdsOnlyWhenGiven) {
  std::vector<SendEntry> entries = {{"a", "x", "user-1", "d-1"}, {"b", "y"}};
  auto body = SendMessageBatchBody("u", entries);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, R"({"QueueUrl":"u","Entries":[{"Id":"a","MessageBody":"x","MessageGroupId":"user-1",)"
                   R"("MessageDeduplicationId":"d-1"},{"Id":"b","MessageBody":"y"}]})");
}

TEST(ParseReceiveTest, KeepsTheFifoAttributes) {
  auto messages = ParseReceiveMessageResponse(
      R"({"Messages":[{"MessageId":"m1","ReceiptHandle":"rh1","Body":"b","Attributes":{"MessageGroupId":"g7",)"
      R"("SequenceNumber":"18849496460467696128","MessageDeduplicationId":"d9"}},)"
      R"({"MessageId":"m2","ReceiptHandle":"rh2","Body":"b","Attributes":{"SequenceNumber":"12; DROP"}}]})");
  ASSERT_TRUE(messages.ok()) << messages.status().message();
  ASSERT_EQ(messages->size(), 2u);
  EXPECT_EQ((*messages)[0].message_group_id, "g7");
  EXPECT_EQ((*messages)[0].sequence_number, "18849496460467696128");
  EXPECT_EQ((*messages)[0].deduplication_id, "d9");
  // Stored as numeric: what is not a decimal number is not kept (and cannot fail a batch).
  EXPECT_EQ((*messages)[1].sequence_number, "");
  EXPECT_EQ((*messages)[1].message_group_id, "");
}

TEST(RequestBodyTest, RefusesABodyThatIsNotUtf8) {
  std::vector<SendEntry> entries = {{"ok", "fine"}, {"bad-7", "caf\xe9"}};
  auto body = SendMessageBatchBody("u", entries);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), Status::Code::kInvalidInput);
  EXPECT_THAT(body.status().message(), HasSubstr("bad-7"));
}

TEST(ParseReceiveTest, ReadsMessagesAndAttributes) {
  const std::string body = R"({"Messages":[
    {"MessageId":"m1","ReceiptHandle":"rh1","MD5OfBody":")" +
                           std::string(kHelloMd5) + R"(","Body":"hello",
     "Attributes":{"SentTimestamp":"1700000000123","ApproximateReceiveCount":"3"}},
    {"MessageId":"m2","ReceiptHandle":"rh2","Body":"caf\u00e9 \ud83d\ude00 \"q\" \\ \n",
     "MD5OfBody":")" + Md5Hex("café 😀 \"q\" \\ \n") +
                           R"("}]})";
  auto messages = ParseReceiveMessageResponse(body);
  ASSERT_TRUE(messages.ok()) << messages.status().message();
  ASSERT_EQ(messages->size(), 2u);
  EXPECT_EQ((*messages)[0].message_id, "m1");
  EXPECT_EQ((*messages)[0].receipt_handle, "rh1");
  EXPECT_EQ((*messages)[0].body, "hello");
  EXPECT_EQ((*messages)[0].sent_timestamp_ms, 1700000000123);
  EXPECT_EQ((*messages)[0].receive_count, 3);
  EXPECT_EQ((*messages)[1].body, "café 😀 \"q\" \\ \n");
  EXPECT_EQ((*messages)[1].sent_timestamp_ms, 0);
  EXPECT_EQ((*messages)[1].receive_count, 0);
}

// The attributes are read in place (no map of copies); what a map gave must stay: the first of a
// repeated name counts, other names are ignored, and a value that is not a string is malformed.
TEST(ParseReceiveTest, AttributesKeepTheirRules) {
  auto messages = ParseReceiveMessageResponse(
      R"({"Messages":[{"MessageId":"m1","ReceiptHandle":"rh1","Body":"b","Attributes":{"SenderId":"x",)"
      R"("SentTimestamp":"17","SentTimestamp":"99","ApproximateReceiveCount":"2"}}]})");
  ASSERT_TRUE(messages.ok()) << messages.status().message();
  EXPECT_EQ((*messages)[0].sent_timestamp_ms, 17);
  EXPECT_EQ((*messages)[0].receive_count, 2);

  auto bad = ParseReceiveMessageResponse(
      R"({"Messages":[{"MessageId":"m1","ReceiptHandle":"rh1","Body":"b","Attributes":{"SenderId":5}}]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsTransient());
  EXPECT_THAT(bad.status().message(), HasSubstr("Message.SenderId"));

  auto not_object = ParseReceiveMessageResponse(
      R"({"Messages":[{"MessageId":"m1","ReceiptHandle":"rh1","Body":"b","Attributes":[]}]})");
  ASSERT_FALSE(not_object.ok());
  EXPECT_THAT(not_object.status().message(), HasSubstr("Message.Attributes"));
}

TEST(ParseReceiveTest, NoMessagesIsEmpty) {
  for (const char* body : {"{}", R"({"Messages":[]})"}) {
    auto messages = ParseReceiveMessageResponse(body);
    ASSERT_TRUE(messages.ok()) << body;
    EXPECT_TRUE(messages->empty());
  }
}

TEST(ParseReceiveTest, Md5MismatchFlagsOnlyThatMessage) {
  auto messages = ParseReceiveMessageResponse(
      R"({"Messages":[{"MessageId":"m9","ReceiptHandle":"rh","Body":"hellO","MD5OfBody":")" +
      std::string(kHelloMd5) + R"("},{"MessageId":"m10","ReceiptHandle":"rh2","Body":"hello","MD5OfBody":")" +
      std::string(kHelloMd5) + R"("}]})");
  ASSERT_TRUE(messages.ok()) << messages.status().message();
  ASSERT_EQ(messages->size(), 2u);
  EXPECT_TRUE((*messages)[0].body_corrupt);
  EXPECT_FALSE((*messages)[1].body_corrupt);
}

TEST(ParseReceiveTest, MalformedResponsesAreTransientErrors) {
  for (const char* body : {"", "<html>", R"({"Messages":{}})", R"({"Messages":[{"MessageId":"m"}]})",
                           R"({"Messages":[{"MessageId":1,"ReceiptHandle":"r"}]})", "[]"}) {
    auto messages = ParseReceiveMessageResponse(body);
    ASSERT_FALSE(messages.ok()) << body;
    EXPECT_TRUE(messages.status().IsTransient()) << body;
  }
}

TEST(ParseBatchTest, ReportsPartialFailures) {
  auto batch = ParseBatchResponse(R"({
    "Successful":[{"Id":"0"},{"Id":"2","MD5OfMessageBody":"abc","MessageId":"x"}],
    "Failed":[{"Id":"1","SenderFault":true,"Code":"ReceiptHandleIsInvalid","Message":"bad handle"},
              {"Id":"3","SenderFault":false,"Code":"InternalError"},
              {"Id":"4","Code":"ServiceUnavailable","Message":"later"}]})");
  ASSERT_TRUE(batch.ok()) << batch.status().message();
  EXPECT_THAT(batch->successful_ids, ElementsAre("0", "2"));
  EXPECT_EQ(batch->body_md5.at("2"), "abc");
  ASSERT_EQ(batch->failed.size(), 3u);
  EXPECT_EQ(batch->failed[0].id, "1");
  EXPECT_EQ(batch->failed[0].code, "ReceiptHandleIsInvalid");
  EXPECT_EQ(batch->failed[0].message, "bad handle");
  EXPECT_TRUE(batch->failed[0].sender_fault);
  EXPECT_FALSE(batch->failed[1].sender_fault);
  EXPECT_FALSE(batch->failed[2].sender_fault);
  EXPECT_EQ(batch->failed[2].message, "later");
}

TEST(ParseOtherResponsesTest, QueueUrlAndAttributes) {
  auto url = ParseQueueUrlResponse(R"({"QueueUrl":"http://h/1/q"})");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(*url, "http://h/1/q");
  EXPECT_FALSE(ParseQueueUrlResponse("{}").ok());
  auto attributes = ParseGetQueueAttributesResponse(
      R"({"Attributes":{"ApproximateNumberOfMessages":"5","VisibilityTimeout":"30"}})");
  ASSERT_TRUE(attributes.ok());
  EXPECT_EQ(attributes->at("ApproximateNumberOfMessages"), "5");
  EXPECT_EQ(attributes->size(), 2u);
}

HttpResponse Response(long status, std::string body, std::vector<HttpHeader> headers = {}) {
  return HttpResponse{status, std::move(headers), std::move(body)};
}

TEST(ParseErrorTest, CodeComesFromTypeThenQueryErrorHeader) {
  AwsError json =
      ParseError(Response(400,
                          R"({"__type":"com.amazonaws.sqs#QueueDoesNotExist",)"
                          R"("message":"The specified queue does not exist."})",
                          {{"x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender"}}));
  EXPECT_EQ(json.http_status, 400);
  EXPECT_EQ(json.code, "QueueDoesNotExist");
  EXPECT_EQ(json.message, "The specified queue does not exist.");

  AwsError header_only = ParseError(
      Response(400, "", {{"X-Amzn-Query-Error", "AWS.SimpleQueueService.NonExistentQueue;Sender"}}));
  EXPECT_EQ(header_only.code, "AWS.SimpleQueueService.NonExistentQueue");

  AwsError capital =
      ParseError(Response(400, R"({"__type":"ThrottlingException:http://x/","Message":"slow"})"));
  EXPECT_EQ(capital.code, "ThrottlingException");
  EXPECT_EQ(capital.message, "slow");
}

TEST(ParseErrorTest, NonJsonBodiesAreCutToOneShortLine) {
  AwsError html = ParseError(Response(502, "<html>Bad Gateway\n" + std::string(5000, 'x')));
  EXPECT_EQ(html.code, "");
  EXPECT_EQ(html.message, "<html>Bad Gateway");
  AwsError long_line = ParseError(Response(500, std::string(1000, 'y')));
  EXPECT_LE(long_line.message.size(), 310u);
}

TEST(ClassifyTest, RetriesThrottlingAndServerErrors) {
  EXPECT_TRUE(IsRetryable({503, "", ""}));
  EXPECT_TRUE(IsRetryable({500, "InternalError", ""}));
  EXPECT_TRUE(IsRetryable({429, "", ""}));
  for (const char* code : {"ThrottlingException", "RequestThrottled", "RequestThrottledException",
                           "KmsThrottled", "AWS.SimpleQueueService.RequestThrottled"}) {
    EXPECT_TRUE(IsRetryable({400, code, ""})) << code;
  }
  EXPECT_FALSE(IsRetryable({400, "AccessDenied", ""}));
  EXPECT_FALSE(IsRetryable({403, "InvalidClientTokenId", ""}));
  EXPECT_FALSE(IsRetryable({400, "QueueDoesNotExist", ""}));
}

TEST(ClassifyTest, MapsErrorsToStatuses) {
  Status missing =
      ErrorStatus({400, "QueueDoesNotExist", "x"}, "GetQueueUrl", "login-queue", "http://127.0.0.1:4566");
  EXPECT_EQ(missing.code(), Status::Code::kNotFound);
  EXPECT_EQ(missing.message(), "queue login-queue does not exist at http://127.0.0.1:4566");
  Status legacy = ErrorStatus({400, "AWS.SimpleQueueService.NonExistentQueue", ""}, "ReceiveMessage",
                              kQueueUrl, "http://127.0.0.1:4566");
  EXPECT_EQ(legacy.code(), Status::Code::kNotFound);
  EXPECT_THAT(legacy.message(), HasSubstr("queue login-queue does not exist"));

  Status invalid = ErrorStatus({400, "InvalidParameterValue", "bad wait"}, "ReceiveMessage", kQueueUrl, "e");
  EXPECT_EQ(invalid.code(), Status::Code::kInvalidInput);
  EXPECT_EQ(invalid.message(),
            "SQS ReceiveMessage on queue login-queue: InvalidParameterValue (HTTP 400): bad wait");
  // Credential and permission errors are configuration errors (exit 2), with what to fix.
  Status denied = ErrorStatus({403, "AccessDenied", ""}, "ReceiveMessage", kQueueUrl, "e", "environment");
  EXPECT_EQ(denied.code(), Status::Code::kInvalidInput);
  EXPECT_THAT(denied.message(), HasSubstr("may not call sqs:ReceiveMessage"));
  EXPECT_EQ(ErrorStatus({403, "KMS.DisabledException", ""}, "ReceiveMessage", kQueueUrl, "e").code(),
            Status::Code::kPermanent);
  EXPECT_EQ(ErrorStatus({503, "", ""}, "ReceiveMessage", kQueueUrl, "e").code(), Status::Code::kTransient);
}

TEST(QueueNameOfTest, TakesTheLastPathSegment) {
  EXPECT_EQ(QueueNameOf(kQueueUrl), "login-queue");
  EXPECT_EQ(QueueNameOf("http://h/1/q/"), "q");
  EXPECT_EQ(QueueNameOf("plain-name"), "plain-name");
}

TEST(RedactSecretsTest, RemovesEveryCopyOfTheSecretAndTheToken) {
  Credentials credentials{"AKIDEXAMPLE", "s3cr3t/KEY", "tok3n"};
  std::string text = RedactSecrets("bad s3cr3t/KEY and tok3n, again s3cr3t/KEY; id AKIDEXAMPLE", credentials);
  EXPECT_EQ(text, "bad [redacted] and [redacted], again [redacted]; id AKIDEXAMPLE");
}

TEST(RedactSecretsTest, EndsWhenTheSecretOccursInTheMark) {
  // Found by fuzz_sqs_response: "d" is in "[redacted]", and the search used to restart inside it.
  EXPECT_EQ(RedactSecrets("odd", Credentials{"AKID", "d", ""}), "o[redacted][redacted]");
  EXPECT_EQ(RedactSecrets("[redacted]", Credentials{"AKID", "[redacted]", ""}), "[redacted]");
}

}  // namespace
}  // namespace sqs2pg::sqs
