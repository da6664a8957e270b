#include "source/sqs/sqs_wire.h"

#include <spdlog/spdlog.h>

#include <mutex>
#include <pugixml.hpp>

#include "aws/aws_error.h"
#include "source/sqs/sqs_query_protocol.h"

namespace sqs2pg::sqs {
namespace {

class JsonWire final : public Wire {
 public:
  SqsProtocol protocol() const override { return SqsProtocol::kJson; }
  Result<HttpRequest> Sign(const Endpoint& endpoint, std::string_view operation, std::string body,
                           const Credentials& credentials, const std::string& region,
                           std::chrono::system_clock::time_point now) const override {
    return BuildSignedRequest(endpoint, operation, std::move(body), credentials, region, now);
  }
  std::string GetQueueUrlBody(std::string_view queue_name) const override {
    return sqs::GetQueueUrlBody(queue_name);
  }
  std::string CreateQueueBody(std::string_view queue_name,
                              const std::map<std::string, std::string>& attributes) const override {
    return sqs::CreateQueueBody(queue_name, attributes);
  }
  std::string ReceiveMessageBody(std::string_view queue_url, int max_messages, int wait_time_seconds,
                                 std::optional<int> visibility_timeout_seconds,
                                 bool message_attributes) const override {
    return sqs::ReceiveMessageBody(queue_url, max_messages, wait_time_seconds, visibility_timeout_seconds,
                                   message_attributes);
  }
  std::string DeleteMessageBatchBody(std::string_view queue_url,
                                     std::span<const DeleteEntry> entries) const override {
    return sqs::DeleteMessageBatchBody(queue_url, entries);
  }
  Result<std::string> SendMessageBatchBody(std::string_view queue_url,
                                           std::span<const SendEntry> entries) const override {
    return sqs::SendMessageBatchBody(queue_url, entries);
  }
  std::string ChangeMessageVisibilityBatchBody(std::string_view queue_url,
                                               std::span<const VisibilityEntry> entries) const override {
    return sqs::ChangeMessageVisibilityBatchBody(queue_url, entries);
  }
  std::string GetQueueAttributesBody(std::string_view queue_url,
                                     const std::vector<std::string>& names) const override {
    return sqs::GetQueueAttributesBody(queue_url, names);
  }
  Result<std::string> ParseQueueUrlResponse(std::string_view body) const override {
    return sqs::ParseQueueUrlResponse(body);
  }
  Result<std::vector<SqsMessage>> ParseReceiveMessageResponse(std::string_view body) const override {
    return sqs::ParseReceiveMessageResponse(body);
  }
  Result<BatchResponse> ParseBatchResponse(std::string_view body) const override {
    return sqs::ParseBatchResponse(body);
  }
  Result<std::map<std::string, std::string>> ParseGetQueueAttributesResponse(
      std::string_view body) const override {
    return sqs::ParseGetQueueAttributesResponse(body);
  }
};

class QueryWire final : public Wire {
 public:
  SqsProtocol protocol() const override { return SqsProtocol::kQuery; }
  Result<HttpRequest> Sign(const Endpoint& endpoint, std::string_view /*operation: in the body*/,
                           std::string body, const Credentials& credentials, const std::string& region,
                           std::chrono::system_clock::time_point now) const override {
    return query::BuildSignedRequest(endpoint, std::move(body), credentials, region, now);
  }
  std::string GetQueueUrlBody(std::string_view queue_name) const override {
    return query::GetQueueUrlBody(queue_name);
  }
  std::string CreateQueueBody(std::string_view queue_name,
                              const std::map<std::string, std::string>& attributes) const override {
    return query::CreateQueueBody(queue_name, attributes);
  }
  std::string ReceiveMessageBody(std::string_view queue_url, int max_messages, int wait_time_seconds,
                                 std::optional<int> visibility_timeout_seconds,
                                 bool message_attributes) const override {
    return query::ReceiveMessageBody(queue_url, max_messages, wait_time_seconds, visibility_timeout_seconds,
                                     message_attributes);
  }
  std::string DeleteMessageBatchBody(std::string_view queue_url,
                                     std::span<const DeleteEntry> entries) const override {
    return query::DeleteMessageBatchBody(queue_url, entries);
  }
  Result<std::string> SendMessageBatchBody(std::string_view queue_url,
                                           std::span<const SendEntry> entries) const override {
    return query::SendMessageBatchBody(queue_url, entries);
  }
  std::string ChangeMessageVisibilityBatchBody(std::string_view queue_url,
                                               std::span<const VisibilityEntry> entries) const override {
    return query::ChangeMessageVisibilityBatchBody(queue_url, entries);
  }
  std::string GetQueueAttributesBody(std::string_view queue_url,
                                     const std::vector<std::string>& names) const override {
    return query::GetQueueAttributesBody(queue_url, names);
  }
  Result<std::string> ParseQueueUrlResponse(std::string_view body) const override {
    return query::ParseQueueUrlResponse(body);
  }
  Result<std::vector<SqsMessage>> ParseReceiveMessageResponse(std::string_view body) const override {
    return query::ParseReceiveMessageResponse(body);
  }
  Result<BatchResponse> ParseBatchResponse(std::string_view body) const override {
    return query::ParseBatchResponse(body);
  }
  Result<std::map<std::string, std::string>> ParseGetQueueAttributesResponse(
      std::string_view body) const override {
    return query::ParseGetQueueAttributesResponse(body);
  }
};

// What auto has learned, per endpoint, for the whole process: the synchronous clients (one per
// thread) and the asynchronous source all find out at most once.
std::shared_ptr<std::atomic<bool>> LearnedFor(const std::string& endpoint_url) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<std::atomic<bool>>> learned;
  std::lock_guard lock(mutex);
  auto& slot = learned[endpoint_url];
  if (!slot) slot = std::make_shared<std::atomic<bool>>(false);
  return slot;
}

}  // namespace

Result<SqsProtocol> ParseSqsProtocol(std::string_view text) {
  if (text == "json") return SqsProtocol::kJson;
  if (text == "query") return SqsProtocol::kQuery;
  if (text == "auto") return SqsProtocol::kAuto;
  return Status::InvalidInput("SQS protocol '" + std::string(text) + "': expected json, query or auto");
}

std::string_view ProtocolName(SqsProtocol protocol) {
  switch (protocol) {
    case SqsProtocol::kJson:
      return "json";
    case SqsProtocol::kQuery:
      return "query";
    case SqsProtocol::kAuto:
      return "auto";
  }
  return "?";
}

const Wire& WireFor(SqsProtocol protocol) {
  static const JsonWire json;
  static const QueryWire query;
  return protocol == SqsProtocol::kQuery ? static_cast<const Wire&>(query) : json;
}

bool ShowsJsonNotUnderstood(const HttpResponse& response) {
  pugi::xml_document doc;
  // Only a whole XML document whose root is a Query-protocol response counts: an HTML page from
  // a proxy, or a body cut short, says nothing about the protocol.
  // pugixml skips text before the root element, so a JSON body holding an XML document in one of
  // its strings would parse: the body itself must start with markup (found by the fuzzer).
  size_t first = response.body.starts_with("\xEF\xBB\xBF") ? 3 : 0;  // a UTF-8 byte order mark
  first = response.body.find_first_not_of(" \t\r\n", first);
  if (first == std::string::npos || response.body[first] != '<') return false;
  if (!doc.load_buffer(response.body.data(), response.body.size())) return false;
  std::string_view root = doc.document_element().name();
  if (!root.ends_with("Response")) return false;
  if (response.status >= 200 && response.status < 300) return true;
  if (response.status >= 502 && response.status <= 504) return false;
  AwsError error = ParseError(response);
  return !aws::IsCredentialErrorCode(error.code) && !IsThrottlingCode(error.code) &&
         !IsQueueDoesNotExist(error.code);
}

WireChoice::WireChoice(SqsProtocol setting, std::string_view endpoint_url)
    : setting_(setting), endpoint_url_(endpoint_url) {
  if (setting_ == SqsProtocol::kAuto) use_query_ = LearnedFor(endpoint_url_);
}

const Wire& WireChoice::Current() const {
  if (setting_ == SqsProtocol::kAuto) {
    return WireFor(use_query_->load(std::memory_order_relaxed) ? SqsProtocol::kQuery : SqsProtocol::kJson);
  }
  return WireFor(setting_);
}

bool WireChoice::FallBack(const Wire& used, const HttpResponse& response) {
  if (setting_ != SqsProtocol::kAuto || used.protocol() != SqsProtocol::kJson) return false;
  if (!ShowsJsonNotUnderstood(response)) return false;
  if (!use_query_->exchange(true)) {
    AwsError error = ParseError(response);
    spdlog::info(
        "SQS at {} does not understand the JSON protocol (HTTP {}{}{}); using the Query protocol "
        "(--sqs-protocol query skips this first try)",
        endpoint_url_, response.status, error.code.empty() ? "" : ": ", error.code);
  }
  return true;
}

}  // namespace sqs2pg::sqs
