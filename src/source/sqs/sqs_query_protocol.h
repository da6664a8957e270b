#pragma once
// The AWS Query protocol of SQS (API version 2012-11-05) as pure functions: form-encoded request
// bodies (Action=...&Version=...&...) and XML responses. It is what SQS spoke before the JSON
// protocol (November 2023), and all that older emulators speak, LocalStack 0.14 among them. The
// functions mirror those of sqs_protocol.h, so the two protocols are interchangeable behind
// Wire (sqs_wire.h). Internal to the SQS stage.

#include <chrono>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aws/credentials.h"
#include "common/result.h"
#include "source/sqs/sqs_protocol.h"
#include "source/sqs/sqs_types.h"

namespace sqs2pg::sqs::query {

// The Version parameter every request carries.
inline constexpr std::string_view kApiVersion = "2012-11-05";

// A form-encoded POST of `body` to the endpoint, signed for service "sqs". The body names its
// Action itself; there is no X-Amz-Target header.
Result<HttpRequest> BuildSignedRequest(const Endpoint& endpoint, std::string body,
                                       const Credentials& credentials, const std::string& region,
                                       std::chrono::system_clock::time_point now);

// Request bodies, application/x-www-form-urlencoded with RFC 3986 percent-encoding.
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

// Response bodies (<XxxResponse><XxxResult>...). A malformed response is Transient, as in the
// JSON protocol: a proxy or a cut connection can cause it.
Result<std::string> ParseQueueUrlResponse(std::string_view body);  // GetQueueUrl, CreateQueue
// A message whose MD5OfBody does not match its body comes back with body_corrupt set.
Result<std::vector<SqsMessage>> ParseReceiveMessageResponse(std::string_view body);
// <...BatchResultEntry> are the successes, <BatchResultErrorEntry> the failures.
Result<BatchResponse> ParseBatchResponse(std::string_view body);
Result<std::map<std::string, std::string>> ParseGetQueueAttributesResponse(std::string_view body);

}  // namespace sqs2pg::sqs::query
