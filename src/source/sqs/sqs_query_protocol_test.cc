#include "source/sqs/sqs_query_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/digest.h"
#include "common/encoding.h"
#include "source/sqs/sqs_wire.h"

namespace sqs2pg::sqs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kQueueUrl[] = "http://sqs.us-east-1.localhost:4566/000000000000/login-queue";
constexpr char kEncodedUrl[] = "http%3A%2F%2Fsqs.us-east-1.localhost%3A4566%2F000000000000%2Flogin-queue";
constexpr char kPrefix[] = "Action=";

std::map<std::string, std::string> HeaderMap(const HttpRequest& request) {
  std::map<std::string, std::string> headers;
  for (const HttpHeader& h : request.headers) headers[h.name] = h.value;
  return headers;
}

TEST(QueryRequestTest, PostsSignedFormWithoutTarget) {
  auto endpoint = ParseEndpoint("http://127.0.0.1:4566");
  ASSERT_TRUE(endpoint.ok());
  auto request = query::BuildSignedRequest(*endpoint, query::GetQueueUrlBody("q"), {"AKID", "secret", ""},
                                           "us-east-1", std::chrono::system_clock::time_point{});
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->url, "http://127.0.0.1:4566/");
  auto headers = HeaderMap(*request);
  EXPECT_EQ(headers["Content-Type"], "application/x-www-form-urlencoded; charset=utf-8");
  EXPECT_EQ(headers.count("X-Amz-Target"), 0u);
  EXPECT_THAT(headers["Authorization"], HasSubstr("Credential=AKID/19700101/us-east-1/sqs/aws4_request, "
                                                  "SignedHeaders=content-type;host;x-amz-date, Signature="));
}

TEST(QueryRequestTest, WritesEachOperation) {
  EXPECT_EQ(query::GetQueueUrlBody("login-queue"),
            "Action=GetQueueUrl&Version=2012-11-05&QueueName=login-queue");
  EXPECT_EQ(
      query::CreateQueueBody("q", {{"VisibilityTimeout", "30"}, {"DelaySeconds", "0"}}),
      "Action=CreateQueue&Version=2012-11-05&QueueName=q&Attribute.1.Name=DelaySeconds&Attribute.1.Value=0&"
      "Attribute.2.Name=VisibilityTimeout&Attribute.2.Value=30");
  EXPECT_EQ(
      query::ReceiveMessageBody(kQueueUrl, 10, 20, 45),
      std::string("Action=ReceiveMessage&Version=2012-11-05&QueueUrl=") + kEncodedUrl +
          "&MaxNumberOfMessages=10&WaitTimeSeconds=20&VisibilityTimeout=45&AttributeName.1=SentTimestamp&"
          "AttributeName.2=ApproximateReceiveCount&AttributeName.3=MessageGroupId&AttributeName.4="
          "SequenceNumber&"
          "AttributeName.5=MessageDeduplicationId");
  EXPECT_THAT(query::ReceiveMessageBody("u", 1, 0, std::nullopt), Not(HasSubstr("VisibilityTimeout")));
  std::vector<DeleteEntry> deletes = {{"0", "rh+/=0"}, {"1", "rh1"}};
  EXPECT_EQ(
      query::DeleteMessageBatchBody("u", deletes),
      "Action=DeleteMessageBatch&Version=2012-11-05&QueueUrl=u&DeleteMessageBatchRequestEntry.1.Id=0&"
      "DeleteMessageBatchRequestEntry.1.ReceiptHandle=rh%2B%2F%3D0&DeleteMessageBatchRequestEntry.2.Id=1&"
      "DeleteMessageBatchRequestEntry.2.ReceiptHandle=rh1");
  std::vector<VisibilityEntry> extend = {{"a", "rh", 60}};
  EXPECT_EQ(query::ChangeMessageVisibilityBatchBody("u", extend),
            "Action=ChangeMessageVisibilityBatch&Version=2012-11-05&QueueUrl=u&"
            "ChangeMessageVisibilityBatchRequestEntry.1.Id=a&ChangeMessageVisibilityBatchRequestEntry.1."
            "ReceiptHandle=rh&ChangeMessageVisibilityBatchRequestEntry.1.VisibilityTimeout=60");
  EXPECT_EQ(
      query::GetQueueAttributesBody("u", {"ApproximateNumberOfMessages", "MessageRetentionPeriod"}),
      "Action=GetQueueAttributes&Version=2012-11-05&QueueUrl=u&AttributeName.1=ApproximateNumberOfMessages&"
      "AttributeName.2=MessageRetentionPeriod");
}

TEST(QueryRequestTest, EncodesBodiesByteForByte) {
  std::vector<SendEntry> entries = {{"a", "{\"k\": \"caf\xc3\xa9 & =+\"}\r\n"}};
  auto body = query::SendMessageBatchBody("u", entries);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(
      *body,
      "Action=SendMessageBatch&Version=2012-11-05&QueueUrl=u&SendMessageBatchRequestEntry.1.Id=a&"
      "SendMessageBatchRequestEntry.1.MessageBody=%7B%22k%22%3A%20%22caf%C3%A9%20%26%20%3D%2B%22%7D%0D%0A");
  std::vector<SendEntry> fifo = {{"f", "b", "g1", "d1"}};
  auto fifo_body = query::SendMessageBatchBody("u", fifo);
  ASSERT_TRUE(fifo_body.ok());
  EXPECT_THAT(*fifo_body, HasSubstr("&SendMessageBatchRequestEntry.1.MessageGroupId=g1&"
                                    "SendMessageBatchRequestEntry.1.MessageDeduplicationId=d1"));
  std::vector<SendEntry> bad = {{"x7", "\xff"}};
  auto refused = query::SendMessageBatchBody("u", bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kInvalidInput);
  EXPECT_THAT(refused.status().message(), HasSubstr("x7"));
}

// As AWS documents them (and moto and LocalStack 0.14 send them), namespace and all.
TEST(QueryResponseTest, ReadsQueueUrls) {
  auto url = query::ParseQueueUrlResponse(
      R"(<?xml version="1.0"?><GetQueueUrlResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/">)"
      R"(<GetQueueUrlResult><QueueUrl>http://h/000000000000/q</QueueUrl></GetQueueUrlResult>)"
      R"(<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetQueueUrlResponse>)");
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(*url, "http://h/000000000000/q");
  auto created = query::ParseQueueUrlResponse(
      "<CreateQueueResponse><CreateQueueResult><QueueUrl>u2</QueueUrl></CreateQueueResult></"
      "CreateQueueResponse>");
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(*created, "u2");
  for (const char* bad :
       {"", "{\"QueueUrl\":\"u\"}", "<GetQueueUrlResponse><GetQueueUrlResult/></GetQueueUrlResponse>",
        "<GetQueueUrlResponse><GetQueueUrlResult><QueueUrl>u"}) {
    auto parsed = query::ParseQueueUrlResponse(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_TRUE(parsed.status().IsTransient()) << bad;
  }
}

TEST(QueryResponseTest, ReadsMessagesAndChecksTheirMd5) {
  std::string crlf_body = "line\r\n  &<>\"";
  std::string xml =
      R"(<ReceiveMessageResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><ReceiveMessageResult>)"
      "<Message><MessageId>m1</MessageId><ReceiptHandle>rh1</ReceiptHandle>"
      "<MD5OfBody>" +
      HexEncode(Md5(crlf_body)) +
      "</MD5OfBody><Body>line&#xD;\n  &amp;&lt;&gt;&quot;</Body>"
      "<Attribute><Name>SentTimestamp</Name><Value>1700000000123</Value></Attribute>"
      "<Attribute><Name>ApproximateReceiveCount</Name><Value>3</Value></Attribute></Message>"
      "<Message><MessageId>m2</MessageId><ReceiptHandle>rh2</ReceiptHandle>"
      "<MD5OfBody>" +
      HexEncode(Md5("   ")) +
      "</MD5OfBody><Body>   </Body></Message>"
      "<Message><MessageId>m3</MessageId><ReceiptHandle>rh3</ReceiptHandle>"
      "<MD5OfBody>5d41402abc4b2a76b9719d911017c592</MD5OfBody><Body>hellO</Body></Message>"
      "</ReceiveMessageResult></ReceiveMessageResponse>";
  auto messages = query::ParseReceiveMessageResponse(xml);
  ASSERT_TRUE(messages.ok()) << messages.status().message();
  ASSERT_EQ(messages->size(), 3u);
  const SqsMessage& m = (*messages)[0];
  EXPECT_EQ(m.message_id, "m1");
  EXPECT_EQ(m.receipt_handle, "rh1");
  EXPECT_EQ(m.body, crlf_body);  // a CR survives: the MD5 matches
  EXPECT_FALSE(m.body_corrupt);
  EXPECT_EQ(m.sent_timestamp_ms, 1700000000123);
  EXPECT_EQ(m.receive_count, 3);
  EXPECT_EQ((*messages)[1].body, "   ");  // a body of spaces is kept
  EXPECT_FALSE((*messages)[1].body_corrupt);
  EXPECT_TRUE((*messages)[2].body_corrupt);  // MD5("hello") for "hellO"

  auto empty = query::ParseReceiveMessageResponse(
      "<ReceiveMessageResponse><ReceiveMessageResult/><ResponseMetadata/></ReceiveMessageResponse>");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto no_handle = query::ParseReceiveMessageResponse(
      "<ReceiveMessageResponse><ReceiveMessageResult><Message><MessageId>m</MessageId></Message>"
      "</ReceiveMessageResult></ReceiveMessageResponse>");
  EXPECT_FALSE(no_handle.ok());
}

TEST(QueryResponseTest, ReadsBatchSuccessesAndFailures) {
  auto deleted = query::ParseBatchResponse(
      "<DeleteMessageBatchResponse><DeleteMessageBatchResult>"
      "<DeleteMessageBatchResultEntry><Id>0</Id></DeleteMessageBatchResultEntry>"
      "<BatchResultErrorEntry><Id>1</Id><Code>ReceiptHandleIsInvalid</Code><Message>The input receipt handle "
      "is "
      "invalid.</Message><SenderFault>true</SenderFault></BatchResultErrorEntry>"
      "<BatchResultErrorEntry><Id>2</Id><Code>InternalError</Code><SenderFault>false</SenderFault>"
      "</BatchResultErrorEntry>"
      "</DeleteMessageBatchResult></DeleteMessageBatchResponse>");
  ASSERT_TRUE(deleted.ok()) << deleted.status().message();
  EXPECT_THAT(deleted->successful_ids, ElementsAre("0"));
  ASSERT_EQ(deleted->failed.size(), 2u);
  EXPECT_EQ(deleted->failed[0].id, "1");
  EXPECT_EQ(deleted->failed[0].code, "ReceiptHandleIsInvalid");
  EXPECT_THAT(deleted->failed[0].message, HasSubstr("invalid"));
  EXPECT_TRUE(deleted->failed[0].sender_fault);
  EXPECT_FALSE(deleted->failed[1].sender_fault);

  auto sent = query::ParseBatchResponse(
      "<SendMessageBatchResponse><SendMessageBatchResult><SendMessageBatchResultEntry><Id>a</Id>"
      "<MessageId>m</MessageId><MD5OfMessageBody>abc</MD5OfMessageBody></SendMessageBatchResultEntry>"
      "</SendMessageBatchResult></SendMessageBatchResponse>");
  ASSERT_TRUE(sent.ok());
  EXPECT_THAT(sent->successful_ids, ElementsAre("a"));
  EXPECT_EQ(sent->body_md5.at("a"), "abc");

  auto extended = query::ParseBatchResponse(
      "<ChangeMessageVisibilityBatchResponse><ChangeMessageVisibilityBatchResult>"
      "<ChangeMessageVisibilityBatchResultEntry><Id>x</Id></ChangeMessageVisibilityBatchResultEntry>"
      "</ChangeMessageVisibilityBatchResult></ChangeMessageVisibilityBatchResponse>");
  ASSERT_TRUE(extended.ok());
  EXPECT_THAT(extended->successful_ids, ElementsAre("x"));

  EXPECT_FALSE(query::ParseBatchResponse("<GetQueueUrlResponse/>").ok());
  EXPECT_FALSE(query::ParseBatchResponse("{\"Successful\":[]}").ok());
}

TEST(QueryResponseTest, ReadsQueueAttributes) {
  auto attributes = query::ParseGetQueueAttributesResponse(
      "<GetQueueAttributesResponse><GetQueueAttributesResult>"
      "<Attribute><Name>ApproximateNumberOfMessages</Name><Value>7</Value></Attribute>"
      "<Attribute><Name>MessageRetentionPeriod</Name><Value>345600</Value></Attribute>"
      "</GetQueueAttributesResult></GetQueueAttributesResponse>");
  ASSERT_TRUE(attributes.ok());
  EXPECT_EQ(attributes->at("ApproximateNumberOfMessages"), "7");
  EXPECT_EQ(attributes->at("MessageRetentionPeriod"), "345600");
}

TEST(QueryResponseTest, ErrorsAreReadLikeJsonOnes) {
  HttpResponse response;
  response.status = 400;
  response.body =
      R"(<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error>)"
      "<Type>Sender</Type><Code>AWS.SimpleQueueService.NonExistentQueue</Code><Message>The specified queue "
      "does "
      "not exist for this wsdl version.</Message><Detail/></Error><RequestId>r</RequestId></ErrorResponse>";
  AwsError error = ParseError(response);
  EXPECT_EQ(error.code, "AWS.SimpleQueueService.NonExistentQueue");
  Status st = ErrorStatus(error, "GetQueueUrl", "missing-queue", "http://h");
  EXPECT_EQ(st.code(), Status::Code::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("missing-queue does not exist"));
}

// ---- auto: when an answer shows the server does not speak JSON ----------------------------------

HttpResponse Answer(long status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// What LocalStack 0.14 (and later ASF versions before JSON support) answer a JSON request.
constexpr char kLocalStackAnswer[] =
    R"(<?xml version='1.0' encoding='utf-8'?>)"
    "\n"
    R"(<ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error><Code>InternalError</Code>)"
    "<Message>exception while calling sqs with unknown operation: Operation detection failed. Missing Action "
    "in "
    "request for query-protocol service ServiceModel(sqs).</Message></Error><RequestId>r</RequestId>"
    "</ErrorResponse>";

TEST(AutoProtocolTest, FallsBackOnlyOnAnswersThatShowNoJson) {
  EXPECT_TRUE(ShowsJsonNotUnderstood(Answer(500, kLocalStackAnswer)));
  EXPECT_TRUE(ShowsJsonNotUnderstood(
      Answer(400, "<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>")));
  EXPECT_TRUE(ShowsJsonNotUnderstood(
      Answer(200, "<ReceiveMessageResponse><ReceiveMessageResult/></ReceiveMessageResponse>")));
  // JSON answers, and XML ones a JSON server or a proxy in front of it may send.
  EXPECT_FALSE(ShowsJsonNotUnderstood(Answer(200, "{}")));
  EXPECT_FALSE(ShowsJsonNotUnderstood(Answer(400, R"({"__type":"com.amazonaws.sqs#QueueDoesNotExist"})")));
  EXPECT_FALSE(ShowsJsonNotUnderstood(Answer(502, "<html><body>Bad Gateway</body></html>")));
  EXPECT_FALSE(ShowsJsonNotUnderstood(
      Answer(503, "<ErrorResponse><Error><Code>ServiceUnavailable</Code></Error></ErrorResponse>")));
  EXPECT_FALSE(ShowsJsonNotUnderstood(
      Answer(403, "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>")));
  EXPECT_FALSE(ShowsJsonNotUnderstood(
      Answer(400, "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>")));
  EXPECT_FALSE(ShowsJsonNotUnderstood(Answer(
      400,
      "<ErrorResponse><Error><Code>AWS.SimpleQueueService.NonExistentQueue</Code></Error></ErrorResponse>")));
  EXPECT_FALSE(ShowsJsonNotUnderstood(Answer(500, "<ErrorResponse><Error><Code>X</Code>")));  // cut short
}

TEST(AutoProtocolTest, TheChoiceIsRememberedPerEndpoint) {
  WireChoice fixed_json(SqsProtocol::kJson, "http://unit-a");
  WireChoice automatic(SqsProtocol::kAuto, "http://unit-a");
  WireChoice other(SqsProtocol::kAuto, "http://unit-b");
  EXPECT_EQ(automatic.Current().protocol(), SqsProtocol::kJson);
  EXPECT_FALSE(fixed_json.FallBack(fixed_json.Current(), Answer(500, kLocalStackAnswer)));
  EXPECT_EQ(fixed_json.Current().protocol(), SqsProtocol::kJson);
  EXPECT_FALSE(automatic.FallBack(automatic.Current(), Answer(200, "{}")));
  EXPECT_EQ(automatic.Current().protocol(), SqsProtocol::kJson);
  EXPECT_TRUE(automatic.FallBack(automatic.Current(), Answer(500, kLocalStackAnswer)));
  EXPECT_EQ(automatic.Current().protocol(), SqsProtocol::kQuery);
  // A client made later for the same endpoint starts with Query; another endpoint does not.
  EXPECT_EQ(WireChoice(SqsProtocol::kAuto, "http://unit-a").Current().protocol(), SqsProtocol::kQuery);
  EXPECT_EQ(other.Current().protocol(), SqsProtocol::kJson);
  // An answer to a Query request never counts.
  EXPECT_FALSE(automatic.FallBack(automatic.Current(), Answer(500, kLocalStackAnswer)));
  EXPECT_EQ(WireChoice(SqsProtocol::kQuery, "http://unit-b").Current().protocol(), SqsProtocol::kQuery);
  EXPECT_TRUE(ParseSqsProtocol("query").ok());
  EXPECT_FALSE(ParseSqsProtocol("xml").ok());
}

}  // namespace
}  // namespace sqs2pg::sqs
