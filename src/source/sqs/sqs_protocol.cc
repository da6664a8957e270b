#include "source/sqs/sqs_protocol.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>

#include "aws/aws_error.h"
#include "aws/sigv4.h"
#include "common/digest.h"
#include "common/encoding.h"
#include "common/json_writer.h"

namespace sqs2pg::sqs {
namespace {

namespace dom = simdjson::dom;

// The attributes ReceiveMessage asks for: the pipeline needs the first two; the FIFO ones are
// kept in the ledger (a standard queue has none of them, and servers leave them out).
constexpr std::array<std::string_view, 5> kReceiveAttributes = {
    "SentTimestamp", "ApproximateReceiveCount", "MessageGroupId", "SequenceNumber", "MessageDeduplicationId"};
// AWS messages are one sentence; anything longer is a proxy's HTML page or a diagnostic dump.
constexpr size_t kMaxErrorMessage = 300;

// Small helpers so the body builders read like the JSON they write.
void Key(std::string& out, std::string_view key) {
  if (out.back() != '{') out.push_back(',');
  AppendJsonString(out, key);
  out.push_back(':');
}

void StringField(std::string& out, std::string_view key, std::string_view value) {
  Key(out, key);
  AppendJsonString(out, value);
}

void IntField(std::string& out, std::string_view key, long long value) {
  Key(out, key);
  out += std::to_string(value);
}

template <typename Strings>
void StringArrayField(std::string& out, std::string_view key, const Strings& values) {
  Key(out, key);
  out.push_back('[');
  bool first = true;
  for (std::string_view v : values) {
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(out, v);
  }
  out.push_back(']');
}

std::string Malformed(std::string_view what, simdjson::error_code error) {
  return std::string("malformed SQS response (") + std::string(what) + "): " + simdjson::error_message(error);
}

// Every answer is parsed with this thread's parser: a new parser allocates its buffers (tape,
// strings, the padded copy of the body) on every parse, for each of the thousands of answers a
// drain reads. One grown by a large answer is dropped before the next small one, so what it keeps
// stays bounded by ordinary answers. The object returned lives until the thread's next parse.
constexpr size_t kKeptParserCapacity = size_t{1} << 20;

Result<dom::object> ParseObject(std::string_view body, std::string_view what) {
  thread_local dom::parser parser;
  if (parser.capacity() > kKeptParserCapacity && body.size() <= kKeptParserCapacity) parser = dom::parser();
  dom::object object;
  if (auto error = parser.parse(body.data(), body.size()).get(object)) {
    return Status::Transient(Malformed(what, error));
  }
  return object;
}

// Reads an optional string member: "" when absent, an error when of another type. The view
// points into the parser's document.
Status OptionalStringView(dom::object object, std::string_view key, std::string_view& out,
                          std::string_view what) {
  auto error = object[key].get(out);
  if (error == simdjson::NO_SUCH_FIELD) return Status::Ok();
  if (error) return Status::Transient(Malformed(std::string(what) + "." + std::string(key), error));
  return Status::Ok();
}

Status OptionalString(dom::object object, std::string_view key, std::string& out, std::string_view what) {
  std::string_view value;
  RETURN_IF_ERROR(OptionalStringView(object, key, value, what));
  out.assign(value);
  return Status::Ok();
}

Status RequiredString(dom::object object, std::string_view key, std::string& out, std::string_view what) {
  std::string_view value;
  if (auto error = object[key].get(value)) {
    return Status::Transient(Malformed(std::string(what) + "." + std::string(key), error));
  }
  out.assign(value);
  return Status::Ok();
}

// Calls fn(element) for each element of an array member; an absent member is an empty array.
template <typename Fn>
Status ForEachIn(dom::object object, std::string_view key, Fn fn) {
  dom::array array;
  auto error = object[key].get(array);
  if (error == simdjson::NO_SUCH_FIELD) return Status::Ok();
  if (error) return Status::Transient(Malformed(key, error));
  for (dom::element element : array) RETURN_IF_ERROR(fn(element));
  return Status::Ok();
}

Result<std::map<std::string, std::string>> StringMap(dom::object object, std::string_view key,
                                                     std::string_view what) {
  std::map<std::string, std::string> out;
  dom::object map;
  auto error = object[key].get(map);
  if (error == simdjson::NO_SUCH_FIELD) return out;
  if (error) return Status::Transient(Malformed(std::string(what) + "." + std::string(key), error));
  for (auto [name, value] : map) {
    std::string_view text;
    if (auto e = value.get(text))
      return Status::Transient(Malformed(std::string(what) + "." + std::string(name), e));
    out.emplace(name, text);
  }
  return out;
}

template <typename Int>
Int ParseIntOr0(const std::string_view* text) {
  Int value = 0;
  if (text != nullptr) std::from_chars(text->data(), text->data() + text->size(), value);
  return value;
}

// How a message's attributes fill its fields, whichever form they came in: find(name) gives the
// attribute's text, or nullptr when it is absent.
template <typename Find>
void ApplyAttributes(Find find, SqsMessage& message) {
  message.sent_timestamp_ms = ParseIntOr0<std::int64_t>(find("SentTimestamp"));
  message.receive_count = ParseIntOr0<int>(find("ApproximateReceiveCount"));
  if (const std::string_view* v = find("MessageGroupId")) message.message_group_id = *v;
  if (const std::string_view* v = find("MessageDeduplicationId")) message.deduplication_id = *v;
  // The ledger stores it as numeric: anything but digits would fail the whole batch there.
  if (const std::string_view* v = find("SequenceNumber");
      v != nullptr && !v->empty() && v->size() <= 40 &&
      std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; })) {
    message.sequence_number = *v;
  }
}

// The "Attributes" member of a JSON message, read in place: a std::map of copies per message cost
// several allocations each. Every value must be a string (as StringMap requires); the first of a
// repeated name counts (as std::map::emplace keeps it).
Status ApplyAttributesObject(dom::object object, SqsMessage& message) {
  dom::object map;
  auto error = object["Attributes"].get(map);
  if (error == simdjson::NO_SUCH_FIELD) {
    ApplyAttributes([](std::string_view) -> const std::string_view* { return nullptr; }, message);
    return Status::Ok();
  }
  if (error) return Status::Transient(Malformed("Message.Attributes", error));
  std::array<std::optional<std::string_view>, kReceiveAttributes.size()> found;
  for (auto [name, value] : map) {
    std::string_view text;
    if (auto e = value.get(text)) return Status::Transient(Malformed("Message." + std::string(name), e));
    auto known = std::find(kReceiveAttributes.begin(), kReceiveAttributes.end(), name);
    if (known != kReceiveAttributes.end() && !found[known - kReceiveAttributes.begin()]) {
      found[known - kReceiveAttributes.begin()] = text;
    }
  }
  ApplyAttributes(
      [&found](std::string_view name) -> const std::string_view* {
        auto known = std::find(kReceiveAttributes.begin(), kReceiveAttributes.end(), name);
        auto& slot = found[known - kReceiveAttributes.begin()];
        return slot ? &*slot : nullptr;
      },
      message);
  return Status::Ok();
}

Result<SqsMessage> ParseMessage(dom::element element) {
  dom::object object;
  if (auto error = element.get(object)) return Status::Transient(Malformed("Messages[]", error));
  SqsMessage message;
  RETURN_IF_ERROR(RequiredString(object, "MessageId", message.message_id, "Message"));
  RETURN_IF_ERROR(RequiredString(object, "ReceiptHandle", message.receipt_handle, "Message"));
  RETURN_IF_ERROR(OptionalString(object, "Body", message.body, "Message"));
  std::string_view md5;
  RETURN_IF_ERROR(OptionalStringView(object, "MD5OfBody", md5, "Message"));
  // One damaged entry must not cost the other nine of the receive: flag it, keep parsing.
  message.body_corrupt = !md5.empty() && !aws::EqualsIgnoreCase(md5, HexEncode(Md5(message.body)));
  RETURN_IF_ERROR(ApplyAttributesObject(object, message));
  // The sender's attributes: {"NAME": {"DataType": "String", "StringValue": "..."}}. Binary ones
  // (BinaryValue) are not text, so not kept; an entry of another form is skipped.
  dom::object sent;
  if (object["MessageAttributes"].get(sent) == simdjson::SUCCESS) {
    for (auto [name, value] : sent) {
      std::string_view text;
      if (value["StringValue"].get_string().get(text) == simdjson::SUCCESS)
        message.message_attributes.emplace_back(name, text);
    }
  }
  return message;
}

Result<BatchEntryFailure> ParseFailure(dom::element element) {
  dom::object object;
  if (auto error = element.get(object)) return Status::Transient(Malformed("Failed[]", error));
  BatchEntryFailure failure;
  RETURN_IF_ERROR(RequiredString(object, "Id", failure.id, "Failed"));
  RETURN_IF_ERROR(OptionalString(object, "Code", failure.code, "Failed"));
  RETURN_IF_ERROR(OptionalString(object, "Message", failure.message, "Failed"));
  bool sender_fault = false;
  auto error = object["SenderFault"].get(sender_fault);
  if (error && error != simdjson::NO_SUCH_FIELD)
    return Status::Transient(Malformed("Failed.SenderFault", error));
  failure.sender_fault = sender_fault;
  return failure;
}

// First line, cut short on a UTF-8 character boundary.
std::string ShortMessage(std::string_view text) {
  text = text.substr(0, text.find_first_of("\r\n"));
  if (text.size() > kMaxErrorMessage) {
    size_t cut = kMaxErrorMessage;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    return std::string(text.substr(0, cut)) + "...";
  }
  return std::string(text);
}

// "com.amazonaws.sqs#QueueDoesNotExist" or "QueueDoesNotExist:http://..." -> "QueueDoesNotExist".
std::string CodeFromType(std::string_view type) {
  size_t hash = type.rfind('#');
  if (hash != std::string_view::npos) type.remove_prefix(hash + 1);
  return std::string(type.substr(0, type.find(':')));
}

// "AWS.SimpleQueueService.NonExistentQueue" -> "NonExistentQueue", for classification.
std::string_view BareCode(std::string_view code) {
  constexpr std::string_view kLegacyPrefix = "AWS.SimpleQueueService.";
  if (code.starts_with(kLegacyPrefix)) code.remove_prefix(kLegacyPrefix.size());
  return code;
}

bool IsInvalidInputCode(std::string_view code) {
  static constexpr std::array<std::string_view, 22> kCodes = {
      "InvalidParameterValue",  "InvalidParameterCombination",
      "MissingParameter",       "MissingRequiredParameter",
      "ValidationError",        "ValidationException",
      "InvalidAddress",         "InvalidAttributeName",
      "InvalidAttributeValue",  "InvalidMessageContents",
      "InvalidBatchEntryId",    "BatchEntryIdsNotDistinct",
      "EmptyBatchRequest",      "TooManyEntriesInBatchRequest",
      "BatchRequestTooLong",    "UnsupportedOperation",
      "ReceiptHandleIsInvalid", "InvalidIdFormat",
      "MessageNotInflight",     "QueueNameExists",
      "QueueAlreadyExists",     "InvalidQueryParameter"};
  code = BareCode(code);
  return std::find(kCodes.begin(), kCodes.end(), code) != kCodes.end();
}

}  // namespace

std::span<const std::string_view> ReceiveAttributeNames() { return kReceiveAttributes; }

void ApplyMessageAttributes(const std::map<std::string, std::string>& attributes, SqsMessage& message) {
  std::string_view view;
  ApplyAttributes(
      [&](std::string_view name) -> const std::string_view* {
        auto it = attributes.find(std::string(name));
        if (it == attributes.end()) return nullptr;
        view = it->second;
        return &view;
      },
      message);
}

Result<HttpRequest> BuildSignedRequest(const Endpoint& endpoint, std::string_view operation, std::string body,
                                       const Credentials& credentials, const std::string& region,
                                       std::chrono::system_clock::time_point now) {
  HttpRequest request;
  request.url = endpoint.request_url;
  request.body = std::move(body);
  request.headers = {{"Host", endpoint.host},
                     {"Content-Type", "application/x-amz-json-1.0"},
                     {"X-Amz-Target", "AmazonSQS." + std::string(operation)}};
  aws::SigningRequest to_sign{"POST", endpoint.path, "", request.headers, request.body};
  ASSIGN_OR_RETURN(std::vector<HttpHeader> added,
                   aws::SignRequest(to_sign, credentials, {region, "sqs"}, now));
  for (HttpHeader& h : added) request.headers.push_back(std::move(h));
  return request;
}

std::string GetQueueUrlBody(std::string_view queue_name) {
  std::string out = "{";
  StringField(out, "QueueName", queue_name);
  out.push_back('}');
  return out;
}

std::string CreateQueueBody(std::string_view queue_name,
                            const std::map<std::string, std::string>& attributes) {
  std::string out = "{";
  StringField(out, "QueueName", queue_name);
  if (!attributes.empty()) {
    Key(out, "Attributes");
    out.push_back('{');
    for (const auto& [name, value] : attributes) StringField(out, name, value);
    out.push_back('}');
  }
  out.push_back('}');
  return out;
}

std::string ReceiveMessageBody(std::string_view queue_url, int max_messages, int wait_time_seconds,
                               std::optional<int> visibility_timeout_seconds, bool message_attributes) {
  std::string out = "{";
  StringField(out, "QueueUrl", queue_url);
  IntField(out, "MaxNumberOfMessages", max_messages);
  IntField(out, "WaitTimeSeconds", wait_time_seconds);
  if (visibility_timeout_seconds) IntField(out, "VisibilityTimeout", *visibility_timeout_seconds);
  // AttributeNames is deprecated but is all that older servers and emulators read.
  StringArrayField(out, "AttributeNames", kReceiveAttributes);
  StringArrayField(out, "MessageSystemAttributeNames", kReceiveAttributes);
  if (message_attributes) {
    constexpr std::string_view kAll[] = {"All"};
    StringArrayField(out, "MessageAttributeNames", kAll);
  }
  out.push_back('}');
  return out;
}

std::string DeleteMessageBatchBody(std::string_view queue_url, std::span<const DeleteEntry> entries) {
  std::string out = "{";
  StringField(out, "QueueUrl", queue_url);
  Key(out, "Entries");
  out.push_back('[');
  for (size_t i = 0; i < entries.size(); ++i) {
    out += i == 0 ? "{" : ",{";
    StringField(out, "Id", entries[i].id);
    StringField(out, "ReceiptHandle", entries[i].receipt_handle);
    out.push_back('}');
  }
  out += "]}";
  return out;
}

Result<std::string> SendMessageBatchBody(std::string_view queue_url, std::span<const SendEntry> entries) {
  std::string out = "{";
  StringField(out, "QueueUrl", queue_url);
  Key(out, "Entries");
  out.push_back('[');
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!simdjson::validate_utf8(entries[i].body.data(), entries[i].body.size())) {
      return Status::InvalidInput("SendMessageBatch entry " + entries[i].id + ": body is not valid UTF-8");
    }
    out += i == 0 ? "{" : ",{";
    StringField(out, "Id", entries[i].id);
    StringField(out, "MessageBody", entries[i].body);
    if (!entries[i].message_group_id.empty()) StringField(out, "MessageGroupId", entries[i].message_group_id);
    if (!entries[i].deduplication_id.empty())
      StringField(out, "MessageDeduplicationId", entries[i].deduplication_id);
    if (!entries[i].attributes.empty()) {
      Key(out, "MessageAttributes");
      out.push_back('{');
      for (size_t a = 0; a < entries[i].attributes.size(); ++a) {
        if (a > 0) out.push_back(',');
        AppendJsonString(out, entries[i].attributes[a].first);
        out += R"(:{"DataType":"String","StringValue":)";
        AppendJsonString(out, entries[i].attributes[a].second);
        out.push_back('}');
      }
      out.push_back('}');
    }
    out.push_back('}');
  }
  out += "]}";
  return out;
}

std::string ChangeMessageVisibilityBatchBody(std::string_view queue_url,
                                             std::span<const VisibilityEntry> entries) {
  std::string out = "{";
  StringField(out, "QueueUrl", queue_url);
  Key(out, "Entries");
  out.push_back('[');
  for (size_t i = 0; i < entries.size(); ++i) {
    out += i == 0 ? "{" : ",{";
    StringField(out, "Id", entries[i].id);
    StringField(out, "ReceiptHandle", entries[i].receipt_handle);
    IntField(out, "VisibilityTimeout", entries[i].visibility_timeout_seconds);
    out.push_back('}');
  }
  out += "]}";
  return out;
}

std::string GetQueueAttributesBody(std::string_view queue_url, const std::vector<std::string>& names) {
  std::string out = "{";
  StringField(out, "QueueUrl", queue_url);
  StringArrayField(out, "AttributeNames", names);
  out.push_back('}');
  return out;
}

Result<std::string> ParseQueueUrlResponse(std::string_view body) {
  ASSIGN_OR_RETURN(dom::object object, ParseObject(body, "QueueUrl"));
  std::string url;
  RETURN_IF_ERROR(RequiredString(object, "QueueUrl", url, "response"));
  return url;
}

Result<std::vector<SqsMessage>> ParseReceiveMessageResponse(std::string_view body) {
  ASSIGN_OR_RETURN(dom::object object, ParseObject(body, "ReceiveMessage"));
  std::vector<SqsMessage> messages;
  messages.reserve(10);  // what a receive asks for at most
  RETURN_IF_ERROR(ForEachIn(object, "Messages", [&](dom::element element) -> Status {
    ASSIGN_OR_RETURN(SqsMessage message, ParseMessage(element));
    messages.push_back(std::move(message));
    return Status::Ok();
  }));
  return messages;
}

Result<BatchResponse> ParseBatchResponse(std::string_view body) {
  ASSIGN_OR_RETURN(dom::object object, ParseObject(body, "batch"));
  BatchResponse response;
  RETURN_IF_ERROR(ForEachIn(object, "Successful", [&](dom::element element) -> Status {
    dom::object entry;
    if (auto error = element.get(entry)) return Status::Transient(Malformed("Successful[]", error));
    std::string id, md5;
    RETURN_IF_ERROR(RequiredString(entry, "Id", id, "Successful"));
    RETURN_IF_ERROR(OptionalString(entry, "MD5OfMessageBody", md5, "Successful"));
    if (!md5.empty()) response.body_md5[id] = md5;
    response.successful_ids.push_back(std::move(id));
    return Status::Ok();
  }));
  RETURN_IF_ERROR(ForEachIn(object, "Failed", [&](dom::element element) -> Status {
    ASSIGN_OR_RETURN(BatchEntryFailure failure, ParseFailure(element));
    response.failed.push_back(std::move(failure));
    return Status::Ok();
  }));
  return response;
}

Result<std::map<std::string, std::string>> ParseGetQueueAttributesResponse(std::string_view body) {
  ASSIGN_OR_RETURN(dom::object object, ParseObject(body, "GetQueueAttributes"));
  return StringMap(object, "Attributes", "response");
}

AwsError ParseError(const HttpResponse& response) {
  AwsError error;
  error.http_status = response.status;
  dom::parser parser;
  dom::object object;
  if (!parser.parse(response.body.data(), response.body.size()).get(object)) {
    std::string_view text;
    if (!object["__type"].get(text)) error.code = CodeFromType(text);
    if (!object["message"].get(text) || !object["Message"].get(text)) error.message = ShortMessage(text);
  } else if (std::optional<aws::XmlError> xml = aws::ParseXmlError(response.body)) {
    // The Query protocol's answer, and what sits in front of SQS (IAM authentication) sends.
    error.code = std::move(xml->code);
    error.message = ShortMessage(xml->message);
  } else {
    error.message = ShortMessage(response.body);
  }
  if (const std::string* query_error = response.Header("x-amzn-query-error");
      query_error && error.code.empty()) {
    error.code = query_error->substr(0, query_error->find(';'));
  }
  return error;
}

bool IsThrottlingCode(std::string_view code) {
  static constexpr std::array<std::string_view, 11> kCodes = {"ThrottlingException",
                                                              "Throttling",
                                                              "ThrottledException",
                                                              "RequestThrottled",
                                                              "RequestThrottledException",
                                                              "TooManyRequestsException",
                                                              "SlowDown",
                                                              "RequestLimitExceeded",
                                                              "KmsThrottled",
                                                              "KMS.ThrottlingException",
                                                              "PriorRequestNotComplete"};
  code = BareCode(code);
  return std::find(kCodes.begin(), kCodes.end(), code) != kCodes.end();
}

bool IsQueueDoesNotExist(std::string_view code) {
  code = BareCode(code);
  return code == "QueueDoesNotExist" || code == "NonExistentQueue";
}

bool IsRetryable(const AwsError& error) {
  // 408: a proxy or load balancer gave up waiting; the call may be sent again.
  return error.http_status == 408 || error.http_status == 429 || error.http_status >= 500 ||
         IsThrottlingCode(error.code);
}

std::string_view QueueNameOf(std::string_view queue_url_or_name) {
  while (queue_url_or_name.ends_with('/')) queue_url_or_name.remove_suffix(1);
  size_t slash = queue_url_or_name.rfind('/');
  return slash == std::string_view::npos ? queue_url_or_name : queue_url_or_name.substr(slash + 1);
}

Status ErrorStatus(const AwsError& error, std::string_view operation, std::string_view queue,
                   std::string_view endpoint_url, std::string_view credential_source) {
  std::string_view queue_name = QueueNameOf(queue);
  if (IsQueueDoesNotExist(error.code)) {
    return Status::NotFound("queue " + std::string(queue_name) + " does not exist at " +
                            std::string(endpoint_url));
  }
  std::string message = "SQS " + std::string(operation);
  if (!queue_name.empty()) message += " on queue " + std::string(queue_name);
  message += ": " + (error.code.empty() ? std::string("error") : error.code);
  message += " (HTTP " + std::to_string(error.http_status) + ")";
  if (aws::IsCredentialErrorCode(error.code)) {
    // Wrong credentials or permissions are a configuration error: exit 2, and say what to fix.
    message +=
        ": " + aws::CredentialErrorHint(error.code, credential_source, "sqs:" + std::string(operation));
    if (!error.message.empty()) message += " (AWS says: " + error.message + ")";
    return Status::InvalidInput(std::move(message));
  }
  if (!error.message.empty()) message += ": " + error.message;
  if (IsRetryable(error)) return Status::Transient(std::move(message));
  if (IsInvalidInputCode(error.code)) return Status::InvalidInput(std::move(message));
  return Status::Permanent(std::move(message));
}

// Replaces every occurrence of each secret, so an echoing server cannot leak one into a log.
std::string RedactSecrets(std::string text, const Credentials& credentials) {
  constexpr std::string_view kMark = "[redacted]";
  for (const std::string& secret : {credentials.secret_access_key, credentials.session_token}) {
    if (secret.empty()) continue;
    // The search resumes after the mark: a secret that occurs in the mark itself ("d", "act")
    // looped forever (found by fuzz_sqs_response).
    for (size_t pos = text.find(secret); pos != std::string::npos;
         pos = text.find(secret, pos + kMark.size())) {
      text.replace(pos, secret.size(), kMark);
    }
  }
  return text;
}

}  // namespace sqs2pg::sqs
