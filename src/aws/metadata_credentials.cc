// The container credentials endpoint (ECS task roles, EKS Pod Identity) and EC2 instance metadata
// (IMDSv2). Both hand out JSON {AccessKeyId, SecretAccessKey, Token, Expiration}.

#include <simdjson.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "aws/credential_provider.h"
#include "aws/http_fetch.h"

namespace sqs2pg::aws {
namespace {

constexpr char kEcsHost[] = "http://169.254.170.2";
constexpr char kImdsIpv4[] = "http://169.254.169.254";
constexpr char kImdsIpv6[] = "http://[fd00:ec2::254]";
constexpr char kImdsTokenTtlSeconds[] = "21600";
constexpr int kContainerAttempts = 3;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The credentials JSON of both endpoints; `what` names the endpoint in errors.
Result<LoadedCredentials> ParseCredentialsJson(std::string_view body, const std::string& what) {
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(body.data(), body.size()).get(object)) {
    return Status::Transient("malformed credentials from " + what + ": not a JSON object");
  }
  auto field = [&object](const char* key) {
    std::string_view value;
    return object[key].get(value) ? std::string() : std::string(value);
  };
  if (std::string code = field("Code"); !code.empty() && code != "Success") {
    return Status::InvalidInput(what + " answered Code " + code + ": " + field("Message").substr(0, 200));
  }
  LoadedCredentials out;
  out.credentials = {field("AccessKeyId"), field("SecretAccessKey"), field("Token")};
  if (out.credentials.access_key_id.empty() || out.credentials.secret_access_key.empty()) {
    return Status::Transient("malformed credentials from " + what + ": no AccessKeyId or SecretAccessKey");
  }
  if (std::string expiration = field("Expiration"); !expiration.empty()) {
    out.expiration = ParseIso8601(expiration);
    if (!out.expiration) {
      return Status::Transient("malformed credentials from " + what + ": Expiration is not an ISO 8601 time");
    }
  }
  return out;
}

// http://host[:port]... -> host, without brackets and port.
std::string HostOf(const std::string& url) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  std::string authority = url.substr(start, url.find_first_of("/?#", start) - start);
  if (authority.starts_with('[')) return Lower(authority.substr(1, authority.find(']') - 1));
  return Lower(authority.substr(
      0, authority.rfind(':') == std::string::npos ? authority.size() : authority.rfind(':')));
}

// Plain HTTP carries the authorization token and the credentials in clear, so the SDKs allow it
// only to the loopback interface and to the ECS and EKS Pod Identity agents' link-local addresses.
bool AllowedOverHttp(const std::string& host) {
  return host == "localhost" || host.starts_with("127.") || host == "::1" || host == "169.254.170.2" ||
         host == "169.254.170.23" || host == "fd00:ec2::23";
}

class ContainerProviderImpl : public CredentialProvider {
 public:
  ContainerProviderImpl(const Environment& env, const ProviderSettings& settings) : settings_(settings) {
    std::string relative = EnvValue(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    std::string full = EnvValue(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (!relative.empty()) {
      url_ = kEcsHost + (relative.starts_with('/') ? relative : "/" + relative);
    } else {
      url_ = full;
    }
    token_ = EnvValue(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    token_file_ = EnvValue(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  }

  Result<std::optional<LoadedCredentials>> Load() override {
    if (url_.empty()) return std::optional<LoadedCredentials>();
    std::string lower = Lower(url_);
    if (lower.starts_with("http://")) {
      if (!AllowedOverHttp(HostOf(url_))) {
        return Status::InvalidInput("AWS_CONTAINER_CREDENTIALS_FULL_URI " + url_ +
                                    ": plain http is allowed only to loopback, 169.254.170.2 or "
                                    "169.254.170.23; use https");
      }
    } else if (!lower.starts_with("https://")) {
      return Status::InvalidInput("container credentials URI " + url_ +
                                  " must start with http:// or https://");
    }
    HttpRequest request;
    request.url = url_;
    request.timeout = settings_.metadata_timeout;
    request.headers.push_back({"Accept", "application/json"});
    ASSIGN_OR_RETURN(std::string authorization, Authorization());
    if (!authorization.empty()) request.headers.push_back({"Authorization", authorization});
    Status last;
    for (int attempt = 1; attempt <= kContainerAttempts; ++attempt) {
      if (attempt > 1) std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
      Result<HttpResponse> response = Fetch(
          request,
          {.method = "GET", .connect_timeout = settings_.metadata_connect_timeout, .bypass_proxy = true});
      if (!response.ok()) {
        last = response.status().Annotate("container credentials endpoint " + url_);
        if (response.status().IsTransient()) continue;
        return last;
      }
      if (response->status == 200) {
        ASSIGN_OR_RETURN(LoadedCredentials loaded,
                         ParseCredentialsJson(response->body, "container credentials endpoint " + url_));
        return std::optional<LoadedCredentials>(std::move(loaded));
      }
      std::string message =
          "container credentials endpoint " + url_ + " answered HTTP " + std::to_string(response->status);
      if (response->status == 401 || response->status == 403) {
        return Status::InvalidInput(message + ": check AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)");
      }
      last = Status::Transient(message);
      if (response->status < 500 && response->status != 429) return Status::InvalidInput(last.message());
    }
    return last;
  }
  std::string Name() const override {
    return url_.empty() ? "container credentials" : "container credentials " + url_;
  }
  std::string why_not() const override {
    return "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI are not set";
  }

 private:
  // The token file wins, and is read at every load: EKS Pod Identity rotates it.
  Result<std::string> Authorization() const {
    std::string token = token_;
    if (!token_file_.empty()) {
      std::ifstream in(token_file_);
      if (!in)
        return Status::InvalidInput("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE " + token_file_);
      std::stringstream text;
      text << in.rdbuf();
      token = text.str();
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    }
    if (token.find_first_of("\r\n") != std::string::npos) {
      return Status::InvalidInput("the container authorization token holds a line break");
    }
    return token;
  }

  ProviderSettings settings_;
  std::string url_, token_, token_file_;
};

class InstanceMetadataProviderImpl : public CredentialProvider {
 public:
  InstanceMetadataProviderImpl(const Environment& env, const ProviderSettings& settings)
      : settings_(settings) {
    disabled_ = Lower(EnvValue(env, "AWS_EC2_METADATA_DISABLED")) == "true";
    endpoint_ = EnvValue(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (endpoint_.empty()) {
      endpoint_ =
          Lower(EnvValue(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")) == "ipv6" ? kImdsIpv6 : kImdsIpv4;
    }
    while (endpoint_.ends_with('/')) endpoint_.pop_back();
  }

  Result<std::optional<LoadedCredentials>> Load() override {
    if (disabled_) {
      why_not_ = "AWS_EC2_METADATA_DISABLED is true";
      return std::optional<LoadedCredentials>();
    }
    // IMDSv2 only: a session token first. Failing to reach the service means "not on EC2".
    HttpRequest put = Request("/latest/api/token");
    put.headers.push_back({"X-aws-ec2-metadata-token-ttl-seconds", kImdsTokenTtlSeconds});
    Result<HttpResponse> token = Send(put, "PUT");
    if (!token.ok()) return NotHere(token.status().message());
    if (token->status != 200 || token->body.empty()) {
      return NotHere("PUT /latest/api/token answered HTTP " + std::to_string(token->status));
    }
    const std::string session = token->body;

    HttpRequest list = Request("/latest/meta-data/iam/security-credentials/");
    list.headers.push_back({"X-aws-ec2-metadata-token", session});
    ASSIGN_OR_RETURN(HttpResponse roles, Checked(Send(list, "GET"), "the instance's IAM role"));
    if (roles.status == 404) return NotHere("no IAM role (instance profile) is attached to this instance");
    if (roles.status != 200) return Error("listing the IAM role", roles.status);
    std::string role = roles.body.substr(0, roles.body.find_first_of("\r\n"));
    if (role.empty()) return NotHere("no IAM role (instance profile) is attached to this instance");
    role_ = role;

    HttpRequest get = Request("/latest/meta-data/iam/security-credentials/" + role);
    get.headers.push_back({"X-aws-ec2-metadata-token", session});
    ASSIGN_OR_RETURN(HttpResponse creds, Checked(Send(get, "GET"), "credentials of role " + role));
    if (creds.status != 200) return Error("credentials of role " + role, creds.status);
    ASSIGN_OR_RETURN(LoadedCredentials loaded,
                     ParseCredentialsJson(creds.body, "EC2 instance metadata " + endpoint_));
    return std::optional<LoadedCredentials>(std::move(loaded));
  }
  std::string Name() const override {
    return "EC2 instance metadata (IMDSv2) " + endpoint_ + (role_.empty() ? "" : ", role " + role_);
  }
  std::string why_not() const override { return why_not_; }

 private:
  HttpRequest Request(const std::string& path) const {
    HttpRequest request;
    request.url = endpoint_ + path;
    request.timeout = settings_.metadata_timeout;
    return request;
  }
  Result<HttpResponse> Send(const HttpRequest& request, std::string_view method) const {
    return Fetch(
        request,
        {.method = method, .connect_timeout = settings_.metadata_connect_timeout, .bypass_proxy = true});
  }
  Result<HttpResponse> Checked(Result<HttpResponse> response, const std::string& what) const {
    if (!response.ok()) return response.status().Annotate("EC2 instance metadata " + endpoint_ + ": " + what);
    return response;
  }
  Result<std::optional<LoadedCredentials>> NotHere(std::string why) {
    why_not_ = std::move(why);
    return std::optional<LoadedCredentials>();
  }
  Status Error(const std::string& what, long status) const {
    std::string message =
        "EC2 instance metadata " + endpoint_ + ": " + what + " answered HTTP " + std::to_string(status);
    return status >= 500 || status == 429 ? Status::Transient(message) : Status::InvalidInput(message);
  }

  ProviderSettings settings_;
  bool disabled_ = false;
  std::string endpoint_, role_, why_not_ = "not tried";
};

}  // namespace

std::unique_ptr<CredentialProvider> ContainerProvider(const Environment& env,
                                                      const ProviderSettings& settings) {
  return std::make_unique<ContainerProviderImpl>(env, settings);
}

std::unique_ptr<CredentialProvider> InstanceMetadataProvider(const Environment& env,
                                                             const ProviderSettings& settings) {
  return std::make_unique<InstanceMetadataProviderImpl>(env, settings);
}

}  // namespace sqs2pg::aws
