#include "aws/http_fetch.h"

#include <curl/curl.h>

#include <string>

#include "aws/curl_util.h"

namespace sqs2pg::aws {

Result<HttpResponse> Fetch(const HttpRequest& request, const FetchOptions& options) {
  HttpResponse response;
  char error[CURL_ERROR_SIZE] = {};
  // The shared set-up keeps whatever TLS and timeout policy the SQS transports use.
  ASSIGN_OR_RETURN(CurlEasy easy,
                   NewPostHandle(TransportOptions{options.connect_timeout, {}}, error, &response));
  CURL* h = easy.get();
  CurlSlist headers = SetRequest(h, request);
  const std::string method(options.method);
  if (method == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else if (method != "POST") {
    // A POST renamed: curl still sends the (possibly empty) body with its Content-Length.
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  if (options.bypass_proxy) curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  CURLcode rc = curl_easy_perform(h);
  return FinishResponse(h, rc, error, response);
}

}  // namespace sqs2pg::aws
