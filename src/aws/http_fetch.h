#pragma once
// One blocking HTTP exchange on a fresh libcurl handle, for the credential providers: STS,
// the container credentials endpoint and EC2 instance metadata. They are called rarely (at start
// and before credentials expire), so a handle per call costs nothing worth saving.

#include <chrono>
#include <string_view>

#include "aws/http.h"
#include "common/result.h"

namespace sqs2pg::aws {

struct FetchOptions {
  std::string_view method = "GET";  // "GET", "PUT" or "POST"
  std::chrono::milliseconds connect_timeout{2000};
  // Link-local metadata endpoints must be reached directly, never through an HTTP(S)_PROXY.
  bool bypass_proxy = false;
};

// Sends request.headers (curl adds Host unless one is given), and request.body for PUT and POST.
// request.timeout bounds the whole exchange. Any HTTP status is a response; errors are as for
// HttpTransport::Post (Transient when another attempt may help).
Result<HttpResponse> Fetch(const HttpRequest& request, const FetchOptions& options);

}  // namespace sqs2pg::aws
