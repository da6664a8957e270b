#pragma once
// The AWS JSON 1.0 protocol of SQS as pure functions: request bodies, signed HTTP requests and
// response/error parsing, with no I/O, so one transport (easy handle) or many (multi handle) can
// drive them. Internal to the SQS stage.

#include <chrono>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aws/credentials.h"
#include "aws/http.h"
#include "common/result.h"
#include "source/sqs/sqs_types.h"

namespace sqs2pg::sqs {

// The AWS pieces this protocol is built on (src/aws/).
using aws::Credentials;
using aws::Endpoint;
using aws::HttpHeader;
using aws::HttpRequest;
using aws::HttpResponse;
using aws::ParseEndpoint;

// A POST of `body` to the endpoint for AmazonSQS.<operation>, signed for service "sqs".
Result<HttpRequest> BuildSignedRequest(const Endpoint& endpoint, std::string_view operation, std::string body,
                                       const Credentials& credentials, const std::string& region,
                                       std::chrono::system_clock::time_point now);

// The message attributes ReceiveMessage asks for, and how a message's attributes fill its
// fields; the same in both protocols (sqs_query_protocol.h uses them too).
std::span<const std::string_view> ReceiveAttributeNames();
void ApplyMessageAttributes(const std::map<std::string, std::string>& attributes, SqsMessage& message);

// Request bodies.
std::string GetQueueUrlBody(std::string_view queue_name);
std::string CreateQueueBody(std::string_view queue_name,
                            const std::map<std::string, std::string>& attributes);
std::string ReceiveMessageBody(std::string_view queue_url, int max_messages, int wait_time_seconds,
                               std::optional<int> visibility_timeout_seconds,
                               bool message_attributes = false);
std::string DeleteMessageBatchBody(std::string_view queue_url, std::span<const DeleteEntry> entries);
// InvalidInput naming the entry when a body is not valid UTF-8.
Result<std::string> SendMessageBatchBody(std::string_view queue_url, std::span<const SendEntry> entries);
std::string ChangeMessageVisibilityBatchBody(std::string_view queue_url,
                                             std::span<const VisibilityEntry> entries);
std::string GetQueueAttributesBody(std::string_view queue_url, const std::vector<std::string>& names);

// Response bodies. A malformed response is Transient: a proxy or a cut connection can cause it.
Result<std::string> ParseQueueUrlResponse(std::string_view body);  // GetQueueUrl, CreateQueue
// A message whose MD5OfBody does not match its body comes back with body_corrupt set.
Result<std::vector<SqsMessage>> ParseReceiveMessageResponse(std::string_view body);
struct BatchResponse {
  std::vector<std::string> successful_ids;
  std::vector<BatchEntryFailure> failed;
  // Id -> MD5OfMessageBody, for SendMessageBatch.
  std::map<std::string, std::string> body_md5;
};
Result<BatchResponse> ParseBatchResponse(std::string_view body);
Result<std::map<std::string, std::string>> ParseGetQueueAttributesResponse(std::string_view body);

// A non-2xx answer.
struct AwsError {
  long http_status = 0;
  // "QueueDoesNotExist": after '#' in __type, or <Code> of an XML error, else from x-amzn-query-error
  std::string code;
  std::string message;  // first line of AWS's message, at most a few hundred bytes
};
AwsError ParseError(const HttpResponse& response);

// Throttling, HTTP 429 and 5xx: worth another attempt after a backoff.
bool IsRetryable(const AwsError& error);
bool IsThrottlingCode(std::string_view code);
bool IsQueueDoesNotExist(std::string_view code);

// The Status for an error that is not retried (or no longer): NotFound for a missing queue,
// InvalidInput for a request SQS found invalid and for credential and permission errors (whose
// message says what the code means, naming credential_source), Transient for retryable ones,
// else Permanent. `queue` is a name or URL (its last path segment is shown).
Status ErrorStatus(const AwsError& error, std::string_view operation, std::string_view queue,
                   std::string_view endpoint_url, std::string_view credential_source = {});

// The last path segment of a queue URL: "login-queue" for ".../000000000000/login-queue".
std::string_view QueueNameOf(std::string_view queue_url_or_name);

// The text with the credentials' secret key and session token replaced, so a server that echoes
// them cannot leak them into a log or an error.
std::string RedactSecrets(std::string text, const Credentials& credentials);

}  // namespace sqs2pg::sqs
