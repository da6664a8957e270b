#pragma once
// One HTTP/1.1 connection's worth of libcurl: an easy handle reused for every request, so the
// connection is kept alive between them. Not thread-safe. The curl headers stay in the .cc.

#include <chrono>
#include <memory>

#include "aws/http.h"
#include "aws/transport_options.h"
#include "common/result.h"

namespace sqs2pg::aws {

class HttpTransport {
 public:
  static Result<std::unique_ptr<HttpTransport>> Create(const TransportOptions& options);
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // POSTs request.body to request.url with exactly request.headers. Any HTTP status is a
  // response. Errors: Transient for failures another attempt may fix (refused, reset, timed out,
  // DNS); Permanent for the rest (bad URL, TLS verification). The message is curl's.
  Result<HttpResponse> Post(const HttpRequest& request);

 private:
  struct Impl;
  explicit HttpTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sqs2pg::aws
