#include "aws/sigv4.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "common/digest.h"
#include "common/encoding.h"

namespace sqs2pg::aws {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view kDateHeader = "x-amz-date";
constexpr std::string_view kTokenHeader = "x-amz-security-token";

char ToLowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// SigV4's UriEncode: upper-case hex, nothing but the unreserved set left bare.
void UriEncodeTo(std::string_view in, std::string& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : in) {
    if (IsUnreserved(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0f]);
    }
  }
}

std::string UriEncode(std::string_view in) {
  std::string out;
  UriEncodeTo(in, out);
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Lenient: a '%' not followed by two hex digits stays a literal '%', as browsers and SDKs do.
std::string PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = HexDigit(in[i + 1]);
      int lo = HexDigit(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

// RFC 3986 dot-segment removal plus "//" collapse; a trailing slash survives.
std::string CanonicalPath(std::string_view path) {
  std::vector<std::string_view> segments;
  bool trailing_slash = false;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view seg = path.substr(pos, end - pos);
    bool last = end == path.size();
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segments.push_back(seg);
    }
    // "/a/." and "/a/.." name a directory, like "/a/".
    if (last) trailing_slash = seg.empty() || seg == "." || seg == "..";
    pos = end + 1;
  }
  std::string out = "/";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) out.push_back('/');
    UriEncodeTo(segments[i], out);
  }
  if (trailing_slash && !segments.empty()) out.push_back('/');
  return out;
}

std::string CanonicalQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    size_t end = query.find('&', pos);
    if (end == std::string_view::npos) end = query.size();
    std::string_view param = query.substr(pos, end - pos);
    if (!param.empty()) {
      size_t eq = param.find('=');
      std::string_view key = param.substr(0, eq);
      std::string_view value = eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
      params.emplace_back(UriEncode(PercentDecode(key)), UriEncode(PercentDecode(value)));
    }
    pos = end + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [key, value] : params) {
    if (!out.empty()) out.push_back('&');
    out += key;
    out.push_back('=');
    out += value;
  }
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Trims, and folds every run of whitespace (obs-fold line breaks included) into one space.
void AppendCanonicalHeaderValue(std::string_view value, std::string& out) {
  bool any = false;
  bool pending_space = false;
  for (char c : value) {
    if (IsSpace(c)) {
      pending_space = any;
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    any = true;
    out.push_back(c);
  }
}

std::string CanonicalHeaderValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  AppendCanonicalHeaderValue(value, out);
  return out;
}

struct CanonicalHeaders {
  std::string block;         // "name:value\n" lines
  std::string signed_names;  // "host;x-amz-date"
};

bool LessIgnoreCase(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    char x = ToLowerAscii(a[i]);
    char y = ToLowerAscii(b[i]);
    if (x != y) return static_cast<unsigned char>(x) < static_cast<unsigned char>(y);
  }
  return a.size() < b.size();
}

// Over the request's headers and then the ones signing adds, without copying either: a request
// has a handful, so an insertion sort of pointers (stable: repeated headers keep their order when
// combined) replaces a sorted copy of lowered names and values (about 20 allocations a request).
CanonicalHeaders BuildCanonicalHeaders(std::span<const HttpHeader> headers,
                                       std::span<const HttpHeader> more = {}) {
  thread_local std::vector<const HttpHeader*> sorted;
  sorted.clear();
  for (const HttpHeader& h : headers) sorted.push_back(&h);
  for (const HttpHeader& h : more) sorted.push_back(&h);
  for (size_t i = 1; i < sorted.size(); ++i) {
    const HttpHeader* h = sorted[i];
    size_t j = i;
    for (; j > 0 && LessIgnoreCase(h->name, sorted[j - 1]->name); --j) sorted[j] = sorted[j - 1];
    sorted[j] = h;
  }
  CanonicalHeaders out;
  size_t size = 0;
  for (const HttpHeader* h : sorted) size += h->name.size() + h->value.size() + 2;
  out.block.reserve(size);
  out.signed_names.reserve(size);
  for (size_t i = 0; i < sorted.size(); ++i) {
    bool repeat = i > 0 && EqualsIgnoreCase(sorted[i]->name, sorted[i - 1]->name);
    if (repeat) {
      out.block.pop_back();  // the previous line's '\n'
      out.block.push_back(',');
    } else {
      if (!out.signed_names.empty()) out.signed_names.push_back(';');
      for (char c : sorted[i]->name) {
        out.signed_names.push_back(ToLowerAscii(c));
        out.block.push_back(ToLowerAscii(c));
      }
      out.block.push_back(':');
    }
    AppendCanonicalHeaderValue(sorted[i]->value, out.block);
    out.block.push_back('\n');
  }
  return out;
}

const HttpHeader* FindHeader(std::span<const HttpHeader> headers, std::string_view name) {
  for (const HttpHeader& h : headers) {
    if (EqualsIgnoreCase(h.name, name)) return &h;
  }
  return nullptr;
}

bool IsAmzDate(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return false;
  for (size_t i = 0; i < 15; ++i) {
    if (i != 8 && (s[i] < '0' || s[i] > '9')) return false;
  }
  return true;
}

const std::string& SigningKey(const Credentials& credentials, std::string_view date,
                              const SigningScope& scope) {
  // The key changes once a day per secret and scope, but deriving it costs four HMACs, most of the
  // signing time; the last one derived on this thread is kept.
  struct Cached {
    std::string secret, date, region, service, key;
  };
  static thread_local Cached cached;
  if (cached.secret == credentials.secret_access_key && cached.date == date &&
      cached.region == scope.region && cached.service == scope.service && !cached.key.empty()) {
    return cached.key;
  }
  std::string key = HmacSha256("AWS4" + credentials.secret_access_key, date);
  key = HmacSha256(key, scope.region);
  key = HmacSha256(key, scope.service);
  key = HmacSha256(key, "aws4_request");
  cached =
      Cached{credentials.secret_access_key, std::string(date), scope.region, scope.service, std::move(key)};
  return cached.key;
}

// Works out the date and the token header the signature must cover, or why it cannot be signed.
Status PlanExtraHeaders(std::span<const HttpHeader> headers, const Credentials& credentials,
                        std::chrono::system_clock::time_point now, std::string& amz_date,
                        std::vector<HttpHeader>& added) {
  if (FindHeader(headers, "host") == nullptr)
    return Status::InvalidInput("SigV4: request has no Host header");
  if (FindHeader(headers, "authorization") != nullptr) {
    return Status::InvalidInput("SigV4: request is already signed (has an Authorization header)");
  }
  if (const HttpHeader* date = FindHeader(headers, kDateHeader)) {
    amz_date = CanonicalHeaderValue(date->value);
    if (!IsAmzDate(amz_date)) return Status::InvalidInput("SigV4: X-Amz-Date is not YYYYMMDDTHHMMSSZ");
  } else {
    amz_date = FormatAmzDate(now);
    added.push_back({"X-Amz-Date", amz_date});
  }
  const HttpHeader* token = FindHeader(headers, kTokenHeader);
  if (token != nullptr && CanonicalHeaderValue(token->value) != credentials.session_token) {
    return Status::InvalidInput(
        "SigV4: the request's X-Amz-Security-Token is not the credentials' session token");
  }
  if (token == nullptr && !credentials.session_token.empty()) {
    added.push_back({"X-Amz-Security-Token", credentials.session_token});
  }
  return Status::Ok();
}

std::string CanonicalRequestWith(const SigningRequest& request, const CanonicalHeaders& headers) {
  std::string out;
  out.reserve(256 + request.path.size() + request.query.size() + headers.block.size());
  out += request.method;
  out.push_back('\n');
  if (request.path == "/") {
    out.push_back('/');  // every SQS request's path: nothing to normalise
  } else {
    out += CanonicalPath(request.path);
  }
  out.push_back('\n');
  if (!request.query.empty()) out += CanonicalQuery(request.query);
  out.push_back('\n');
  out += headers.block;
  out.push_back('\n');
  out += headers.signed_names;
  out.push_back('\n');
  out += HexEncode(Sha256(request.body));
  return out;
}

}  // namespace

std::string FormatAmzDate(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  auto day = floor<days>(time);
  year_month_day ymd(day);
  hh_mm_ss hms(floor<seconds>(time - day));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d%02u%02uT%02d%02d%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

std::string CanonicalRequest(const SigningRequest& request) {
  return CanonicalRequestWith(request, BuildCanonicalHeaders(request.headers));
}

std::string StringToSign(std::string_view amz_date, std::string_view credential_scope,
                         std::string_view canonical_request) {
  std::string out(kAlgorithm);
  out.push_back('\n');
  out += amz_date;
  out.push_back('\n');
  out += credential_scope;
  out.push_back('\n');
  out += HexEncode(Sha256(canonical_request));
  return out;
}

Result<std::vector<HttpHeader>> SignRequest(const SigningRequest& request, const Credentials& credentials,
                                            const SigningScope& scope,
                                            std::chrono::system_clock::time_point now,
                                            const SigningOptions& options) {
  std::string amz_date;
  std::vector<HttpHeader> added;
  RETURN_IF_ERROR(PlanExtraHeaders(request.headers, credentials, now, amz_date, added));

  // The added headers are signed too (the token unless the options leave it out), after the
  // request's own; the token is the last one added.
  std::span<const HttpHeader> signed_added(added);
  if (!options.sign_security_token && !added.empty() && EqualsIgnoreCase(added.back().name, kTokenHeader)) {
    signed_added = signed_added.first(added.size() - 1);
  }
  CanonicalHeaders canonical_headers = BuildCanonicalHeaders(request.headers, signed_added);

  std::string_view date = std::string_view(amz_date).substr(0, 8);
  std::string credential_scope;
  credential_scope.reserve(date.size() + scope.region.size() + scope.service.size() + 16);
  credential_scope.append(date)
      .append("/")
      .append(scope.region)
      .append("/")
      .append(scope.service)
      .append("/aws4_request");
  std::string string_to_sign =
      StringToSign(amz_date, credential_scope, CanonicalRequestWith(request, canonical_headers));
  std::string signature = HexEncode(HmacSha256(SigningKey(credentials, date, scope), string_to_sign));

  std::string authorization;
  authorization.reserve(kAlgorithm.size() + credentials.access_key_id.size() + credential_scope.size() +
                        canonical_headers.signed_names.size() + signature.size() + 48);
  authorization.append(kAlgorithm)
      .append(" Credential=")
      .append(credentials.access_key_id)
      .append("/")
      .append(credential_scope)
      .append(", SignedHeaders=")
      .append(canonical_headers.signed_names)
      .append(", Signature=")
      .append(signature);
  added.push_back({"Authorization", std::move(authorization)});
  return added;
}

}  // namespace sqs2pg::aws
