#include "source/sqs/sqs_query_protocol.h"

#include <curl/curl.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <memory>
#include <pugixml.hpp>

#include "aws/sigv4.h"
#include "common/digest.h"
#include "common/encoding.h"

namespace sqs2pg::sqs::query {
namespace {

struct CurlFree {
  void operator()(char* p) const noexcept { curl_free(p); }
};

// RFC 3986 percent-encoding (only A-Z a-z 0-9 - . _ ~ stay as they are), which both form
// decoding and SigV4's canonical form accept. libcurl ignores the handle argument since 7.82.
void AppendEncoded(std::string& out, std::string_view text) {
  std::unique_ptr<char, CurlFree> escaped(
      curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size())));
  if (escaped) out += escaped.get();
}

// Builds "Action=X&Version=2012-11-05&k=v&..." one parameter at a time.
class Form {
 public:
  explicit Form(std::string_view action) {
    out_ = "Action=";
    AppendEncoded(out_, action);
    Add("Version", kApiVersion);
  }
  Form& Add(std::string_view key, std::string_view value) {
    out_.push_back('&');
    AppendEncoded(out_, key);
    out_.push_back('=');
    AppendEncoded(out_, value);
    return *this;
  }
  Form& Add(std::string_view key, long long value) { return Add(key, std::to_string(value)); }
  // "<prefix>.<n>.<field>", n from 1, as the Query protocol numbers list members.
  Form& AddMember(std::string_view prefix, size_t n, std::string_view field, std::string_view value) {
    std::string key = std::string(prefix) + "." + std::to_string(n);
    if (!field.empty()) key += "." + std::string(field);
    return Add(key, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

template <typename Strings>
void AddList(Form& form, std::string_view prefix, const Strings& values) {
  size_t n = 0;
  for (std::string_view v : values) form.AddMember(prefix, ++n, "", v);
}

std::string Malformed(std::string_view what, std::string_view why) {
  return "malformed SQS response (" + std::string(what) + "): " + std::string(why);
}

// Whitespace-only text (a message body of spaces) is kept, and "\r" is not turned into "\n":
// either would change a body and fail its MD5 check.
constexpr unsigned kParseFlags = (pugi::parse_default | pugi::parse_ws_pcdata_single) & ~pugi::parse_eol;

// The <Result> element of a <Response>: <XxxResponse><XxxResult>. Servers put the 2012-11-05
// namespace on the root, which pugixml leaves out of element names.
Result<pugi::xml_node> ResultNode(pugi::xml_document& doc, std::string_view body, std::string_view action) {
  pugi::xml_parse_result parsed = doc.load_buffer(body.data(), body.size(), kParseFlags);
  if (!parsed) return Status::Transient(Malformed(action, parsed.description()));
  std::string response = std::string(action) + "Response";
  pugi::xml_node root = doc.child(response.c_str());
  if (!root) return Status::Transient(Malformed(action, "no <" + response + "> element"));
  // A result with nothing in it may be left out (an empty receive).
  return root.child((std::string(action) + "Result").c_str());
}

Status RequiredText(pugi::xml_node node, const char* name, std::string& out, std::string_view what) {
  pugi::xml_node child = node.child(name);
  if (!child) return Status::Transient(Malformed(what, std::string("no <") + name + ">"));
  out = child.text().as_string();
  return Status::Ok();
}

// <Attribute><Name>n</Name><Value>v</Value></Attribute>...
std::map<std::string, std::string> Attributes(pugi::xml_node node) {
  std::map<std::string, std::string> out;
  for (pugi::xml_node a : node.children("Attribute")) {
    out[a.child("Name").text().as_string()] = a.child("Value").text().as_string();
  }
  return out;
}

}  // namespace

Result<HttpRequest> BuildSignedRequest(const Endpoint& endpoint, std::string body,
                                       const Credentials& credentials, const std::string& region,
                                       std::chrono::system_clock::time_point now) {
  HttpRequest request;
  request.url = endpoint.request_url;
  request.body = std::move(body);
  request.headers = {{"Host", endpoint.host},
                     {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  aws::SigningRequest to_sign{"POST", endpoint.path, "", request.headers, request.body};
  ASSIGN_OR_RETURN(std::vector<HttpHeader> added,
                   aws::SignRequest(to_sign, credentials, {region, "sqs"}, now));
  for (HttpHeader& h : added) request.headers.push_back(std::move(h));
  return request;
}

std::string GetQueueUrlBody(std::string_view queue_name) {
  return Form("GetQueueUrl").Add("QueueName", queue_name).Take();
}

std::string CreateQueueBody(std::string_view queue_name,
                            const std::map<std::string, std::string>& attributes) {
  Form form("CreateQueue");
  form.Add("QueueName", queue_name);
  size_t n = 0;
  for (const auto& [name, value] : attributes) {
    ++n;
    form.AddMember("Attribute", n, "Name", name).AddMember("Attribute", n, "Value", value);
  }
  return form.Take();
}

std::string ReceiveMessageBody(std::string_view queue_url, int max_messages, int wait_time_seconds,
                               std::optional<int> visibility_timeout_seconds, bool message_attributes) {
  Form form("ReceiveMessage");
  form.Add("QueueUrl", queue_url)
      .Add("MaxNumberOfMessages", max_messages)
      .Add("WaitTimeSeconds", wait_time_seconds);
  if (visibility_timeout_seconds) form.Add("VisibilityTimeout", *visibility_timeout_seconds);
  // AttributeName.N is the form every server knows (MessageSystemAttributeName.N is newer than
  // LocalStack 0.14).
  AddList(form, "AttributeName", ReceiveAttributeNames());
  if (message_attributes) form.Add("MessageAttributeName.1", "All");
  return form.Take();
}

std::string DeleteMessageBatchBody(std::string_view queue_url, std::span<const DeleteEntry> entries) {
  Form form("DeleteMessageBatch");
  form.Add("QueueUrl", queue_url);
  constexpr std::string_view kEntry = "DeleteMessageBatchRequestEntry";
  for (size_t i = 0; i < entries.size(); ++i) {
    form.AddMember(kEntry, i + 1, "Id", entries[i].id)
        .AddMember(kEntry, i + 1, "ReceiptHandle", entries[i].receipt_handle);
  }
  return form.Take();
}

Result<std::string> SendMessageBatchBody(std::string_view queue_url, std::span<const SendEntry> entries) {
  Form form("SendMessageBatch");
  form.Add("QueueUrl", queue_url);
  constexpr std::string_view kEntry = "SendMessageBatchRequestEntry";
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!simdjson::validate_utf8(entries[i].body.data(), entries[i].body.size())) {
      return Status::InvalidInput("SendMessageBatch entry " + entries[i].id + ": body is not valid UTF-8");
    }
    form.AddMember(kEntry, i + 1, "Id", entries[i].id)
        .AddMember(kEntry, i + 1, "MessageBody", entries[i].body);
    if (!entries[i].message_group_id.empty())
      form.AddMember(kEntry, i + 1, "MessageGroupId", entries[i].message_group_id);
    if (!entries[i].deduplication_id.empty())
      form.AddMember(kEntry, i + 1, "MessageDeduplicationId", entries[i].deduplication_id);
    for (size_t a = 0; a < entries[i].attributes.size(); ++a) {
      std::string attribute = "MessageAttribute." + std::to_string(a + 1) + ".";
      form.AddMember(kEntry, i + 1, attribute + "Name", entries[i].attributes[a].first)
          .AddMember(kEntry, i + 1, attribute + "Value.DataType", "String")
          .AddMember(kEntry, i + 1, attribute + "Value.StringValue", entries[i].attributes[a].second);
    }
  }
  return form.Take();
}

std::string ChangeMessageVisibilityBatchBody(std::string_view queue_url,
                                             std::span<const VisibilityEntry> entries) {
  Form form("ChangeMessageVisibilityBatch");
  form.Add("QueueUrl", queue_url);
  constexpr std::string_view kEntry = "ChangeMessageVisibilityBatchRequestEntry";
  for (size_t i = 0; i < entries.size(); ++i) {
    form.AddMember(kEntry, i + 1, "Id", entries[i].id)
        .AddMember(kEntry, i + 1, "ReceiptHandle", entries[i].receipt_handle)
        .AddMember(kEntry, i + 1, "VisibilityTimeout", std::to_string(entries[i].visibility_timeout_seconds));
  }
  return form.Take();
}

std::string GetQueueAttributesBody(std::string_view queue_url, const std::vector<std::string>& names) {
  Form form("GetQueueAttributes");
  form.Add("QueueUrl", queue_url);
  AddList(form, "AttributeName", names);
  return form.Take();
}

Result<std::string> ParseQueueUrlResponse(std::string_view body) {
  pugi::xml_document doc;
  // GetQueueUrl and CreateQueue answer alike, each under its own name.
  pugi::xml_parse_result parsed = doc.load_buffer(body.data(), body.size(), kParseFlags);
  if (!parsed) return Status::Transient(Malformed("QueueUrl", parsed.description()));
  for (const char* action : {"GetQueueUrl", "CreateQueue"}) {
    pugi::xml_node result =
        doc.child((std::string(action) + "Response").c_str()).child((std::string(action) + "Result").c_str());
    if (result) {
      std::string url;
      RETURN_IF_ERROR(RequiredText(result, "QueueUrl", url, "QueueUrl"));
      return url;
    }
  }
  return Status::Transient(Malformed("QueueUrl", "no <GetQueueUrlResult> or <CreateQueueResult>"));
}

Result<std::vector<SqsMessage>> ParseReceiveMessageResponse(std::string_view body) {
  pugi::xml_document doc;
  ASSIGN_OR_RETURN(pugi::xml_node result, ResultNode(doc, body, "ReceiveMessage"));
  std::vector<SqsMessage> messages;
  for (pugi::xml_node node : result.children("Message")) {
    SqsMessage message;
    RETURN_IF_ERROR(RequiredText(node, "MessageId", message.message_id, "Message"));
    RETURN_IF_ERROR(RequiredText(node, "ReceiptHandle", message.receipt_handle, "Message"));
    message.body = node.child("Body").text().as_string();
    std::string_view md5 = node.child("MD5OfBody").text().as_string();
    // One damaged entry must not cost the other nine of the receive: flag it, keep parsing.
    std::string actual = HexEncode(Md5(message.body));
    message.body_corrupt = !md5.empty() && !std::equal(md5.begin(), md5.end(), actual.begin(), actual.end(),
                                                       [](char a, char b) { return std::tolower(a) == b; });
    ApplyMessageAttributes(Attributes(node), message);
    // <MessageAttribute><Name>N</Name><Value><StringValue>V</StringValue>...</Value></MessageAttribute>;
    // Binary ones are not kept.
    for (pugi::xml_node attribute : node.children("MessageAttribute")) {
      pugi::xml_node value = attribute.child("Value").child("StringValue");
      if (value)
        message.message_attributes.emplace_back(attribute.child("Name").text().as_string(),
                                                value.text().as_string());
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

Result<BatchResponse> ParseBatchResponse(std::string_view body) {
  pugi::xml_document doc;
  pugi::xml_parse_result parsed = doc.load_buffer(body.data(), body.size(), kParseFlags);
  if (!parsed) return Status::Transient(Malformed("batch", parsed.description()));
  // Any of the three batch calls: <XxxBatchResponse><XxxBatchResult>.
  pugi::xml_node root = doc.first_child();
  std::string_view root_name = root.name();
  if (!root_name.ends_with("BatchResponse"))
    return Status::Transient(Malformed("batch", "no <...BatchResponse>"));
  std::string action(root_name.substr(0, root_name.size() - std::string_view("Response").size()));
  pugi::xml_node result = root.child((action + "Result").c_str());
  BatchResponse response;
  const std::string success_name = action + "ResultEntry";
  for (pugi::xml_node entry : result.children()) {
    std::string_view name = entry.name();
    if (name == success_name) {
      std::string id;
      RETURN_IF_ERROR(RequiredText(entry, "Id", id, success_name));
      std::string md5 = entry.child("MD5OfMessageBody").text().as_string();
      if (!md5.empty()) response.body_md5[id] = md5;
      response.successful_ids.push_back(std::move(id));
    } else if (name == "BatchResultErrorEntry") {
      BatchEntryFailure failure;
      RETURN_IF_ERROR(RequiredText(entry, "Id", failure.id, "BatchResultErrorEntry"));
      failure.code = entry.child("Code").text().as_string();
      failure.message = entry.child("Message").text().as_string();
      failure.sender_fault = entry.child("SenderFault").text().as_bool();
      response.failed.push_back(std::move(failure));
    }
  }
  return response;
}

Result<std::map<std::string, std::string>> ParseGetQueueAttributesResponse(std::string_view body) {
  pugi::xml_document doc;
  ASSIGN_OR_RETURN(pugi::xml_node result, ResultNode(doc, body, "GetQueueAttributes"));
  return Attributes(result);
}

}  // namespace sqs2pg::sqs::query
