#include "aws/http.h"

#include <algorithm>

namespace sqs2pg::aws {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return Lower(x) == Lower(y); });
}

const std::string* HttpResponse::Header(std::string_view name) const {
  for (const HttpHeader& h : headers) {
    if (EqualsIgnoreCase(h.name, name)) return &h.value;
  }
  return nullptr;
}

Result<Endpoint> ParseEndpoint(std::string_view url) {
  Endpoint endpoint;
  size_t sep = url.find("://");
  std::string scheme(url.substr(0, sep == std::string_view::npos ? 0 : sep));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), Lower);
  if (scheme != "http" && scheme != "https") {
    return Status::InvalidInput("SQS endpoint '" + std::string(url) +
                                "' must start with http:// or https://");
  }
  std::string_view rest = url.substr(sep + 3);
  size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view path = authority_end == std::string_view::npos ? "/" : rest.substr(authority_end);
  bool printable = std::all_of(url.begin(), url.end(), [](char c) { return c > ' ' && c != 0x7f; });
  if (authority.empty() || authority.find('@') != std::string_view::npos || !printable ||
      path.find_first_of("?#") != std::string_view::npos) {
    return Status::InvalidInput("SQS endpoint '" + std::string(url) +
                                "' must be scheme://host[:port][/path] without user, query or fragment");
  }
  endpoint.url = std::string(url);
  while (endpoint.url.ends_with('/')) endpoint.url.pop_back();
  endpoint.host = std::string(authority);
  endpoint.path = std::string(path);
  endpoint.request_url = scheme + "://" + endpoint.host + endpoint.path;
  return endpoint;
}

}  // namespace sqs2pg::aws
