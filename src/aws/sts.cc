#include "aws/sts.h"

#include <pugixml.hpp>

#include <fstream>
#include <sstream>
#include <thread>

#include "aws/aws_error.h"
#include "aws/http_fetch.h"
#include "aws/sigv4.h"
#include "common/encoding.h"

namespace sqs2pg::aws {
namespace {

constexpr char kStsVersion[] = "2011-06-15";
constexpr int kStsAttempts = 3;

// RFC 3986 unreserved characters stay; everything else is %XX, as the Query protocol expects.
std::string FormEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string Form(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
  std::string out;
  for (const auto& [key, value] : fields) {
    if (value.empty()) continue;
    if (!out.empty()) out += '&';
    out += FormEncode(key) + "=" + FormEncode(value);
  }
  return out;
}

std::string SessionName(const std::string& configured) {
  if (!configured.empty()) return configured;
  using namespace std::chrono;
  return "sqs2pg-" +
         std::to_string(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

// One STS call with retries for what another attempt may fix; the response body of a 2xx.
Result<std::string> Call(const std::string& endpoint_url, std::string_view action, HttpRequest request,
                         std::string_view identity) {
  Status last;
  for (int attempt = 1; attempt <= kStsAttempts; ++attempt) {
    if (attempt > 1) std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt * attempt));
    Result<HttpResponse> response = Fetch(request, {.method = "POST"});
    if (!response.ok()) {
      last = response.status().Annotate("STS " + std::string(action) + " at " + endpoint_url);
      if (response.status().IsTransient()) continue;
      return last;
    }
    if (response->status >= 200 && response->status < 300) return std::move(response->body);
    std::optional<XmlError> xml = ParseXmlError(response->body);
    std::string code = xml ? xml->code : "HTTP " + std::to_string(response->status);
    std::string aws_says = xml ? xml->message.substr(0, 300) : "";
    std::string message = "STS " + std::string(action) + " at " + endpoint_url + ": " + code;
    if (IsCredentialErrorCode(code)) {
      message += ": " + CredentialErrorHint(code, identity, "sts:" + std::string(action));
      if (!aws_says.empty()) message += " (AWS says: " + aws_says + ")";
    } else if (!aws_says.empty()) {
      message += ": " + aws_says;
    }
    bool retry = response->status >= 500 || response->status == 429 || code == "Throttling" ||
                 code == "IDPCommunicationError";
    last = retry ? Status::Transient(std::move(message)) : Status::InvalidInput(std::move(message));
    if (!retry) return last;
  }
  return last;
}

HttpRequest FormRequest(const std::string& endpoint_url, std::string body,
                        std::chrono::milliseconds timeout) {
  HttpRequest request;
  request.url = endpoint_url;
  if (!request.url.ends_with('/')) request.url += '/';
  request.body = std::move(body);
  request.timeout = timeout;
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  return request;
}

class AssumeRoleProviderImpl : public CredentialProvider {
 public:
  AssumeRoleProviderImpl(std::unique_ptr<CredentialProvider> base, AssumeRoleParams params,
                         std::string endpoint_url, std::string region, std::string origin,
                         std::chrono::milliseconds timeout)
      : base_(std::move(base)),
        params_(std::move(params)),
        endpoint_url_(std::move(endpoint_url)),
        region_(std::move(region)),
        origin_(std::move(origin)),
        timeout_(timeout) {}

  Result<std::optional<LoadedCredentials>> Load() override {
    ASSIGN_OR_RETURN(std::optional<LoadedCredentials> base, base_->Load());
    if (!base) {
      return Status::InvalidInput("cannot assume role " + params_.role_arn + ": no credentials from " +
                                  base_->Name() + " (" + base_->why_not() + ")");
    }
    ASSIGN_OR_RETURN(LoadedCredentials assumed,
                     AssumeRole(endpoint_url_, region_, base->credentials, params_, timeout_));
    return std::optional<LoadedCredentials>(std::move(assumed));
  }
  std::string Name() const override {
    return origin_ + ": role " + params_.role_arn + " assumed with " + base_->Name() + " (STS " +
           endpoint_url_ + ")";
  }

 private:
  std::unique_ptr<CredentialProvider> base_;
  AssumeRoleParams params_;
  std::string endpoint_url_, region_, origin_;
  std::chrono::milliseconds timeout_;
};

class WebIdentityProviderImpl : public CredentialProvider {
 public:
  WebIdentityProviderImpl(AssumeRoleParams params, std::string token_file, std::string endpoint_url,
                          std::string origin, std::chrono::milliseconds timeout)
      : params_(std::move(params)),
        token_file_(std::move(token_file)),
        endpoint_url_(std::move(endpoint_url)),
        origin_(std::move(origin)),
        timeout_(timeout) {}

  Result<std::optional<LoadedCredentials>> Load() override {
    std::ifstream in(token_file_);
    if (!in) return Status::InvalidInput("cannot read the web identity token file " + token_file_);
    std::stringstream text;
    text << in.rdbuf();
    std::string token = text.str();
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
      token.pop_back();
    if (token.empty())
      return Status::InvalidInput("the web identity token file " + token_file_ + " is empty");
    ASSIGN_OR_RETURN(LoadedCredentials assumed,
                     AssumeRoleWithWebIdentity(endpoint_url_, params_, token, timeout_));
    return std::optional<LoadedCredentials>(std::move(assumed));
  }
  std::string Name() const override {
    return origin_ + ": web identity token " + token_file_ + " for role " + params_.role_arn + " (STS " +
           endpoint_url_ + ")";
  }

 private:
  AssumeRoleParams params_;
  std::string token_file_, endpoint_url_, origin_;
  std::chrono::milliseconds timeout_;
};

class NoWebIdentity : public CredentialProvider {
 public:
  Result<std::optional<LoadedCredentials>> Load() override { return std::optional<LoadedCredentials>(); }
  std::string Name() const override { return "web identity"; }
  std::string why_not() const override {
    return "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not both set";
  }
};

}  // namespace

std::string StsEndpointUrl(const Environment& env, const std::string& region) {
  for (const char* name : {"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"}) {
    std::string url = EnvValue(env, name);
    while (url.ends_with('/')) url.pop_back();
    if (!url.empty()) return url;
  }
  return "https://sts." + region + ".amazonaws.com";
}

Result<LoadedCredentials> ParseStsCredentials(std::string_view xml, std::string_view action) {
  pugi::xml_document doc;
  auto malformed = [&](const std::string& what) {
    return Status::Transient("malformed STS " + std::string(action) + " response: " + what);
  };
  if (!doc.load_buffer(xml.data(), xml.size())) return malformed("not XML");
  pugi::xml_node node = doc.select_node("//Credentials").node();
  if (!node) return malformed("no <Credentials>");
  LoadedCredentials out;
  out.credentials.access_key_id = node.child("AccessKeyId").text().as_string();
  out.credentials.secret_access_key = node.child("SecretAccessKey").text().as_string();
  out.credentials.session_token = node.child("SessionToken").text().as_string();
  if (out.credentials.access_key_id.empty() || out.credentials.secret_access_key.empty()) {
    return malformed("no AccessKeyId or SecretAccessKey");
  }
  std::string expiration = node.child("Expiration").text().as_string();
  out.expiration = ParseIso8601(expiration);
  if (!out.expiration) return malformed("Expiration '" + expiration + "' is not an ISO 8601 time");
  return out;
}

namespace {

// A Query-protocol request to STS, signed with `credentials`; the 2xx body.
Result<std::string> SignedCall(const std::string& endpoint_url, const std::string& region,
                               const Credentials& credentials, std::string_view action, std::string form,
                               std::chrono::milliseconds timeout, std::string_view identity) {
  ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(endpoint_url));
  HttpRequest request = FormRequest(endpoint.request_url, std::move(form), timeout);
  request.url = endpoint.request_url;  // exactly the path that is signed
  request.headers.insert(request.headers.begin(), {"Host", endpoint.host});
  ASSIGN_OR_RETURN(std::vector<HttpHeader> added,
                   SignRequest({"POST", endpoint.path, "", request.headers, request.body}, credentials,
                               {region, "sts"}, std::chrono::system_clock::now()));
  request.headers.insert(request.headers.end(), added.begin(), added.end());
  return Call(endpoint.url, action, std::move(request), identity);
}

}  // namespace

Result<CallerIdentity> GetCallerIdentity(const std::string& endpoint_url, const std::string& region,
                                         const Credentials& credentials, std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(std::string body,
                   SignedCall(endpoint_url, region, credentials, "GetCallerIdentity",
                              Form({{"Action", "GetCallerIdentity"}, {"Version", kStsVersion}}), timeout,
                              "the credentials"));
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) {
    return Status::Transient("malformed STS GetCallerIdentity response: not XML");
  }
  pugi::xml_node result = doc.select_node("//GetCallerIdentityResult").node();
  CallerIdentity identity{result.child("Account").text().as_string(), result.child("Arn").text().as_string()};
  if (identity.arn.empty()) return Status::Transient("malformed STS GetCallerIdentity response: no <Arn>");
  return identity;
}

Result<LoadedCredentials> AssumeRole(const std::string& endpoint_url, const std::string& region,
                                     const Credentials& base, const AssumeRoleParams& params,
                                     std::chrono::milliseconds timeout) {
  std::string duration = params.duration_seconds ? std::to_string(*params.duration_seconds) : "";
  std::string session = SessionName(params.session_name);
  ASSIGN_OR_RETURN(std::string body, SignedCall(endpoint_url, region, base, "AssumeRole",
                                                Form({{"Action", "AssumeRole"},
                                                      {"Version", kStsVersion},
                                                      {"RoleArn", params.role_arn},
                                                      {"RoleSessionName", session},
                                                      {"ExternalId", params.external_id},
                                                      {"DurationSeconds", duration}}),
                                                timeout, "the source profile of role " + params.role_arn));
  return ParseStsCredentials(body, "AssumeRole");
}

Result<LoadedCredentials> AssumeRoleWithWebIdentity(const std::string& endpoint_url,
                                                    const AssumeRoleParams& params, const std::string& token,
                                                    std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(endpoint_url));
  std::string duration = params.duration_seconds ? std::to_string(*params.duration_seconds) : "";
  std::string session = SessionName(params.session_name);
  // Unsigned: the token is the proof of identity, and there are no credentials yet to sign with.
  HttpRequest request = FormRequest(endpoint.request_url,
                                    Form({{"Action", "AssumeRoleWithWebIdentity"},
                                          {"Version", kStsVersion},
                                          {"RoleArn", params.role_arn},
                                          {"RoleSessionName", session},
                                          {"WebIdentityToken", token},
                                          {"DurationSeconds", duration}}),
                                    timeout);
  request.url = endpoint.request_url;
  ASSIGN_OR_RETURN(std::string body, Call(endpoint.url, "AssumeRoleWithWebIdentity", std::move(request),
                                          "the web identity token for role " + params.role_arn));
  return ParseStsCredentials(body, "AssumeRoleWithWebIdentity");
}

std::unique_ptr<CredentialProvider> AssumeRoleProvider(std::unique_ptr<CredentialProvider> base,
                                                       AssumeRoleParams params, std::string endpoint_url,
                                                       std::string region, std::string origin,
                                                       std::chrono::milliseconds timeout) {
  return std::make_unique<AssumeRoleProviderImpl>(std::move(base), std::move(params), std::move(endpoint_url),
                                                  std::move(region), std::move(origin), timeout);
}

std::unique_ptr<CredentialProvider> WebIdentityTokenFileProvider(AssumeRoleParams params,
                                                                 std::string token_file,
                                                                 std::string endpoint_url, std::string origin,
                                                                 std::chrono::milliseconds timeout) {
  return std::make_unique<WebIdentityProviderImpl>(std::move(params), std::move(token_file),
                                                   std::move(endpoint_url), std::move(origin), timeout);
}

std::unique_ptr<CredentialProvider> WebIdentityProvider(const Environment& env,
                                                        const ProviderSettings& settings) {
  std::string role_arn = EnvValue(env, "AWS_ROLE_ARN");
  std::string token_file = EnvValue(env, "AWS_WEB_IDENTITY_TOKEN_FILE");
  if (role_arn.empty() || token_file.empty()) return std::make_unique<NoWebIdentity>();
  AssumeRoleParams params;
  params.role_arn = role_arn;
  params.session_name = EnvValue(env, "AWS_ROLE_SESSION_NAME");
  return WebIdentityTokenFileProvider(std::move(params), token_file, StsEndpointUrl(env, settings.region),
                                      "web identity", settings.sts_timeout);
}

}  // namespace sqs2pg::aws
