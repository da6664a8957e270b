#include "aws/http_transport.h"

#include <curl/curl.h>

#include "aws/curl_util.h"

namespace sqs2pg::aws {

struct HttpTransport::Impl {
  CurlEasy easy;
  char error[CURL_ERROR_SIZE] = {};
  HttpResponse response;
};

HttpTransport::HttpTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpTransport::~HttpTransport() = default;

Result<std::unique_ptr<HttpTransport>> HttpTransport::Create(const TransportOptions& options) {
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->easy, NewPostHandle(options, impl->error, &impl->response));
  return std::unique_ptr<HttpTransport>(new HttpTransport(std::move(impl)));
}

Result<HttpResponse> HttpTransport::Post(const HttpRequest& request) {
  CURL* h = impl_->easy.get();
  CurlSlist headers = SetRequest(h, request);
  impl_->response = HttpResponse();
  impl_->error[0] = '\0';

  CURLcode rc = curl_easy_perform(h);
  // The list and the body die with this call; the handle must not keep pointers to them.
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, nullptr);
  return FinishResponse(h, rc, impl_->error, impl_->response);
}

}  // namespace sqs2pg::aws
