#pragma once
// Which of SQS's two protocols a client speaks, behind one interface: the AWS JSON 1.0 protocol
// (sqs_protocol.h), which AWS and current emulators speak, and the older Query protocol
// (sqs_query_protocol.h), which is all LocalStack 0.14 speaks. SqsClient and AsyncSqsSource
// build, sign and parse every call through a Wire, so nothing else knows which one is in use.
// Internal to the SQS stage.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "source/sqs/sqs_protocol.h"
#include "source/sqs/sqs_types.h"

namespace sqs2pg::sqs {

// "json", "query", "auto".
Result<SqsProtocol> ParseSqsProtocol(std::string_view text);
std::string_view ProtocolName(SqsProtocol protocol);

// One protocol: request bodies, signing, response parsing. Errors (non-2xx answers) are read by
// ParseError, which understands both.
class Wire {
 public:
  virtual ~Wire() = default;
  virtual SqsProtocol protocol() const = 0;

  virtual Result<HttpRequest> Sign(const Endpoint& endpoint, std::string_view operation, std::string body,
                                   const Credentials& credentials, const std::string& region,
                                   std::chrono::system_clock::time_point now) const = 0;

  virtual std::string GetQueueUrlBody(std::string_view queue_name) const = 0;
  virtual std::string CreateQueueBody(std::string_view queue_name,
                                      const std::map<std::string, std::string>& attributes) const = 0;
  // message_attributes: also ask for the sender's message attributes (all of them).
  virtual std::string ReceiveMessageBody(std::string_view queue_url, int max_messages, int wait_time_seconds,
                                         std::optional<int> visibility_timeout_seconds,
                                         bool message_attributes = false) const = 0;
  virtual std::string DeleteMessageBatchBody(std::string_view queue_url,
                                             std::span<const DeleteEntry> entries) const = 0;
  virtual Result<std::string> SendMessageBatchBody(std::string_view queue_url,
                                                   std::span<const SendEntry> entries) const = 0;
  virtual std::string ChangeMessageVisibilityBatchBody(std::string_view queue_url,
                                                       std::span<const VisibilityEntry> entries) const = 0;
  virtual std::string GetQueueAttributesBody(std::string_view queue_url,
                                             const std::vector<std::string>& names) const = 0;

  virtual Result<std::string> ParseQueueUrlResponse(std::string_view body) const = 0;
  virtual Result<std::vector<SqsMessage>> ParseReceiveMessageResponse(std::string_view body) const = 0;
  virtual Result<BatchResponse> ParseBatchResponse(std::string_view body) const = 0;
  virtual Result<std::map<std::string, std::string>> ParseGetQueueAttributesResponse(
      std::string_view body) const = 0;
};

// A call's request body in a given protocol: a call is built once per protocol it is sent in.
using BodyFn = std::function<Result<std::string>(const Wire&)>;

// A 2xx answer, with the protocol to read it in.
struct Answer {
  const Wire* wire = nullptr;
  std::string body;
};

// The two protocols (kAuto is not one); both live for the whole process.
const Wire& WireFor(SqsProtocol protocol);

// An answer to a JSON-protocol request that shows the server does not speak JSON: an XML body
// (or an XML content type) where JSON was due, unless the error is one that a JSON-speaking
// server or a proxy in front of it also sends in XML (credentials, throttling, a missing queue,
// 502-504). LocalStack 0.14 answers HTTP 500 with an XML InternalError ("Missing Action in
// request for query-protocol service"); servers older still answer 400 InvalidAction, or 2xx with
// an XML result of the call.
bool ShowsJsonNotUnderstood(const HttpResponse& response);

// The protocol a client uses for one endpoint. Cheap to copy; copies for the same endpoint share
// what auto has learned, as does every client of that endpoint in this process.
class WireChoice {
 public:
  WireChoice() : WireChoice(SqsProtocol::kJson, "") {}
  WireChoice(SqsProtocol setting, std::string_view endpoint_url);
  const Wire& Current() const;
  // Under auto, for the answer to a request sent with `used`: true when the answer shows the
  // server does not understand JSON (logged once). Current() is Query from then on.
  bool FallBack(const Wire& used, const HttpResponse& response);

 private:
  SqsProtocol setting_;
  std::string endpoint_url_;
  std::shared_ptr<std::atomic<bool>> use_query_;
};

}  // namespace sqs2pg::sqs
