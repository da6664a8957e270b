// Fuzz target: everything sqs2pg parses from an SQS endpoint (or a proxy in front of it). The input
// is a response body, given to each parser in turn, of both protocols (JSON, and the Query
// protocol's XML): ReceiveMessage, the batch calls, GetQueueAttributes, GetQueueUrl/CreateQueue,
// whether it shows that the server does not speak JSON, and the error path (ParseError, ErrorStatus,
// RedactSecrets); and, as a URL, to ParseEndpoint. A malformed answer must give an error, never a
// crash, a hang or an error message that is not one short line.

#include <simdjson.h>

#include "fuzz/fuzz_target.h"
#include "source/sqs/sqs_protocol.h"
#include "source/sqs/sqs_query_protocol.h"
#include "source/sqs/sqs_wire.h"

namespace sqs2pg::fuzz {

void FuzzSqsResponse(std::string_view data) {
  using namespace sqs;
  // A bad answer may be a proxy's or a cut connection's: Transient, so it is retried.
  if (auto messages = ParseReceiveMessageResponse(data); !messages.ok()) {
    FUZZ_CHECK(messages.status().IsTransient());
  }
  if (auto batch = ParseBatchResponse(data); batch.ok()) {
    FUZZ_CHECK(batch->body_md5.size() <= batch->successful_ids.size());
  } else {
    FUZZ_CHECK(batch.status().IsTransient());
  }
  if (auto attributes = ParseGetQueueAttributesResponse(data); !attributes.ok()) {
    FUZZ_CHECK(attributes.status().IsTransient());
  }
  if (auto url = ParseQueueUrlResponse(data); !url.ok()) FUZZ_CHECK(url.status().IsTransient());
  if (auto messages = query::ParseReceiveMessageResponse(data); !messages.ok()) {
    FUZZ_CHECK(messages.status().IsTransient());
  }
  if (auto batch = query::ParseBatchResponse(data); batch.ok()) {
    FUZZ_CHECK(batch->body_md5.size() <= batch->successful_ids.size());
  } else {
    FUZZ_CHECK(batch.status().IsTransient());
  }
  if (auto attributes = query::ParseGetQueueAttributesResponse(data); !attributes.ok()) {
    FUZZ_CHECK(attributes.status().IsTransient());
  }
  if (auto url = query::ParseQueueUrlResponse(data); !url.ok()) FUZZ_CHECK(url.status().IsTransient());

  // The error path, with a status and an x-amzn-query-error header taken from the input too.
  HttpResponse response;
  response.status = data.empty() ? 400 : 400 + static_cast<unsigned char>(data[0]) % 200;
  response.body = std::string(data);
  response.headers.push_back({"x-amzn-query-error", std::string(data.substr(0, 64))});
  AwsError error = ParseError(response);
  // Whatever the verdict, it must come without a crash; a JSON object never counts as XML.
  bool no_json = ShowsJsonNotUnderstood(response);
  if (!data.empty() && data.front() == '{') FUZZ_CHECK(!no_json);
  FUZZ_CHECK(error.message.size() <= 303);  // 300 bytes and "..."
  FUZZ_CHECK(error.message.find_first_of("\r\n") == std::string::npos);
  if (simdjson::validate_utf8(data.data(), data.size())) {
    FUZZ_CHECK(simdjson::validate_utf8(error.message.data(), error.message.size()));
  }
  // A secret made from the input: whatever it is, redaction must end and leave no copy of it in
  // the text between the "[redacted]" marks (a mark's own characters may join the text after it
  // into the secret, e.g. "]" + "x" for the secret "]x": that is no copy).
  Credentials credentials{"AKID", std::string(data.substr(0, data.size() % 13)), ""};
  std::string redacted = RedactSecrets(error.message, credentials);
  if (!credentials.secret_access_key.empty()) {
    constexpr std::string_view kMark = "[redacted]";
    std::string_view rest = redacted;
    while (true) {
      size_t mark = rest.find(kMark);
      FUZZ_CHECK(rest.substr(0, mark).find(credentials.secret_access_key) == std::string_view::npos);
      if (mark == std::string_view::npos) break;
      rest.remove_prefix(mark + kMark.size());
    }
  }
  Status status =
      ErrorStatus(error, "ReceiveMessage", "https://sqs.example/123/login-queue", "https://sqs.example");
  FUZZ_CHECK(!status.ok() && !status.message().empty());

  if (auto endpoint = ParseEndpoint(data); endpoint.ok()) {
    FUZZ_CHECK(!endpoint->host.empty() && endpoint->host.find('@') == std::string::npos);
    FUZZ_CHECK(endpoint->request_url.starts_with("http://") || endpoint->request_url.starts_with("https://"));
    FUZZ_CHECK(endpoint->path.starts_with('/'));
    FUZZ_CHECK(ParseEndpoint(endpoint->url).ok());  // the URL we print parses too
  }
}

}  // namespace sqs2pg::fuzz

SQS2PG_FUZZ_ENTRY(sqs2pg::fuzz::FuzzSqsResponse)
