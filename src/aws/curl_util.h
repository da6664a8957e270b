#pragma once
// libcurl pieces shared by the blocking transport (one request at a time) and the multi
// transport (many requests in flight on one event loop). Internal to src/aws.

#include <curl/curl.h>

#include <chrono>
#include <memory>

#include "aws/http.h"
#include "aws/transport_options.h"
#include "common/result.h"

namespace sqs2pg::aws {

struct CurlEasyCloser {
  void operator()(CURL* h) const noexcept { curl_easy_cleanup(h); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyCloser>;

struct CurlSlistFreer {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistFreer>;

// A handle set up for our POSTs: keep-alive, no signals, timeouts, TLS verified against the
// options' CA file (or the system's store), and the body and headers collected into *response.
// error must hold CURL_ERROR_SIZE bytes; both must outlive the handle.
Result<CurlEasy> NewPostHandle(const TransportOptions& options, char* error, HttpResponse* response);

struct CurlUrlFreer {
  void operator()(CURLU* u) const noexcept { curl_url_cleanup(u); }
};
using CurlUrl = std::unique_ptr<CURLU, CurlUrlFreer>;

// request.url parsed once, for a transport that sends many requests to one URL: handed to
// SetRequest, it spares curl parsing the URL text again for every request.
Result<CurlUrl> ParseCurlUrl(const std::string& url);

// Points the handle at request (URL, body, headers, timeout). The request and the returned list
// must outlive the transfer. `parsed`, when given, is request.url already parsed (ParseCurlUrl) and
// must outlive the transfer too.
CurlSlist SetRequest(CURL* h, const HttpRequest& request, CURLU* parsed = nullptr);

// The response of a finished transfer, or a Status saying whether trying again may help.
Result<HttpResponse> FinishResponse(CURL* h, CURLcode rc, const char* error, HttpResponse& response);

}  // namespace sqs2pg::aws
