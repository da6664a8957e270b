#pragma once
// HTTP requests and responses as the AWS pieces exchange them (the signer, the transports, STS,
// the credential endpoints and the SQS protocols), and the endpoint URL they go to. Plain data:
// no curl types here.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sqs2pg::aws {

struct HttpHeader {
  std::string name;
  std::string value;
};

struct HttpRequest {
  std::string url;
  std::vector<HttpHeader> headers;  // includes Host; the transport must not send another
  std::string body;
  std::chrono::milliseconds timeout{0};  // whole exchange; 0: none
};

struct HttpResponse {
  long status = 0;
  std::vector<HttpHeader> headers;
  std::string body;
  bool too_large = false;  // the transport stopped reading a body past its size limit

  // Case-insensitive; the first header of that name, or nullptr.
  const std::string* Header(std::string_view name) const;
};

struct Endpoint {
  std::string url;          // as configured, without a trailing '/': used in messages
  std::string host;         // host[:port] exactly as in the URL: the Host header that gets signed
  std::string path;         // "/" unless the URL has one
  std::string request_url;  // scheme://host[:port]/path: where every request goes
};

// "http(s)://host[:port][/path]"; no user info, query or fragment.
Result<Endpoint> ParseEndpoint(std::string_view url);

// ASCII case-insensitive equality, as HTTP compares header names.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace sqs2pg::aws
