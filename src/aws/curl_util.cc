#include "aws/curl_util.h"

#include <cstdlib>
#include <new>
#include <string>

namespace sqs2pg::aws {
namespace {

// curl_global_init is not safe to race with other threads' curl use; a function-local static
// runs it once, before the first handle, whichever thread gets there first.
bool CurlGlobalInit() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  return rc == CURLE_OK;
}

// Ten messages of SQS's largest size (1 MiB), escaped as JSON, with room to spare: a server or
// proxy sending more is broken, and must not make us buffer without bound.
constexpr size_t kMaxResponseBytes = size_t{64} << 20;

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  if (response->body.size() + size * count > kMaxResponseBytes) {
    response->too_large = true;
    return 0;  // curl ends the transfer with CURLE_WRITE_ERROR
  }
  response->body.append(data, size * count);
  return size * count;
}

std::string_view TrimHeader(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  std::string_view line(data, size * count);
  // A new status line (after "100 Continue", say) starts a new set of headers.
  if (line.starts_with("HTTP/")) {
    response->headers.clear();
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    response->headers.push_back(
        {std::string(TrimHeader(line.substr(0, colon))), std::string(TrimHeader(line.substr(colon + 1)))});
  }
  return size * count;
}

bool IsRetryable(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

CurlSlist HeaderList(const std::vector<HttpHeader>& headers) {
  CurlSlist list;
  auto append = [&list](const char* line) {
    curl_slist* grown = curl_slist_append(list.get(), line);
    if (grown == nullptr) throw std::bad_alloc();
    (void)list.release();
    list.reset(grown);
  };
  // curl copies each line; one buffer per thread builds them, not two temporaries per header.
  thread_local std::string line;
  for (const HttpHeader& h : headers) {
    // curl's syntax: "Name;" sends an empty header, "Name:" removes one curl would add.
    line.assign(h.name);
    if (h.value.empty()) {
      line.push_back(';');
    } else {
      line.append(": ").append(h.value);
    }
    append(line.c_str());
  }
  append("Expect:");  // no 100-continue round trip for bodies over 1 KiB
  return list;
}

// libcurl looks for a proxy in the environment for every request: no_proxy, NO_PROXY, then
// http_proxy, or https_proxy and HTTPS_PROXY, then all_proxy and ALL_PROXY, each getenv a walk
// through the whole environment. None of them set is the common case, and the environment does
// not change while we run: a handle can then say "no proxy" once, which is what curl would find
// every time. With any of them set, curl decides for each request as always.
bool NoProxyInEnvironment() {
  static const bool none = [] {
    for (const char* name : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                             "ALL_PROXY", "no_proxy", "NO_PROXY"}) {
      if (std::getenv(name) != nullptr) return false;
    }
    return true;
  }();
  return none;
}

}  // namespace

Result<CurlUrl> ParseCurlUrl(const std::string& url) {
  CurlUrl parsed(curl_url());
  if (!parsed) throw std::bad_alloc();
  if (CURLUcode rc = curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0); rc != CURLUE_OK) {
    return Status::Permanent("cannot parse URL " + url + ": " + curl_url_strerror(rc));
  }
  return parsed;
}

Result<CurlEasy> NewPostHandle(const TransportOptions& options, char* error, HttpResponse* response) {
  if (!CurlGlobalInit()) return Status::Permanent("curl_global_init failed");
  CurlEasy easy(curl_easy_init());
  if (!easy) return Status::Permanent("curl_easy_init failed");
  CURL* h = easy.get();
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM: safe with threads
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
  // Verification is libcurl's default; set it anyway so no build or environment can lose it.
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options.ca_file.empty()) {
    // Replaces the system's store: the endpoint must chain to a CA in this file (as the AWS CLI's
    // --ca-bundle does).
    if (CURLcode rc = curl_easy_setopt(h, CURLOPT_CAINFO, options.ca_file.c_str()); rc != CURLE_OK) {
      return Status::Permanent(std::string("cannot use CA file ") + options.ca_file + ": " +
                               curl_easy_strerror(rc));
    }
  }
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");  // whatever curl can decode; big receives compress well
  curl_easy_setopt(h, CURLOPT_USERAGENT, "sqs2pg/0.1");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, response);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, response);
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  if (NoProxyInEnvironment()) {
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "");
  }
  return easy;
}

CurlSlist SetRequest(CURL* h, const HttpRequest& request, CURLU* parsed) {
  CurlSlist headers = HeaderList(request.headers);
  if (parsed != nullptr) {
    curl_easy_setopt(h, CURLOPT_CURLU, parsed);
  } else {
    curl_easy_setopt(h, CURLOPT_CURLU, nullptr);
    curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  }
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  return headers;
}

Result<HttpResponse> FinishResponse(CURL* h, CURLcode rc, const char* error, HttpResponse& response) {
  if (rc != CURLE_OK && response.too_large) {
    return Status::Transient("the response was larger than " + std::to_string(kMaxResponseBytes >> 20) +
                             " MiB: not read");
  }
  if (rc != CURLE_OK) {
    std::string message = error[0] != '\0' ? error : curl_easy_strerror(rc);
    if (rc == CURLE_PEER_FAILED_VERIFICATION) {
      // curl says what is wrong with the certificate; say what to do about it.
      message +=
          " (TLS certificate verification failed: if the endpoint's certificate comes from a private "
          "CA, pass that CA's PEM file with --ca-file or AWS_CA_BUNDLE)";
    }
    return IsRetryable(rc) ? Status::Transient(std::move(message)) : Status::Permanent(std::move(message));
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.status);
  return std::move(response);
}

}  // namespace sqs2pg::aws
