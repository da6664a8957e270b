// The credential providers against small endpoints on loopback (cpp-httplib) that check what
// the real ones check: the IMDSv2 session token, the container Authorization header, STS's form.

#include "aws/credential_provider.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "aws/aws_error.h"
#include "aws/sts.h"
#include "aws/test_endpoints.h"

namespace sqs2pg::aws {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::system_clock;

using fakes::ContainerEndpoint;
using fakes::CredentialsJson;
using fakes::FakeContainerEndpoint;
using fakes::FastSettings;
using fakes::Iso8601;
using fakes::kSecret;
using fakes::Loopback;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sqs2pg_creds_XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text,
                    fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
    fs::path p = path_ / name;
    std::ofstream(p) << text;
    fs::permissions(p, perms);
    return p.string();
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(Iso8601Test, ParsesWhatAwsSends) {
  auto t = ParseIso8601("2026-11-27T17:18:27.458236Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(Clock::to_time_t(*t), 1795799907);
  EXPECT_EQ(ParseIso8601("2026-11-27T18:18:27+01:00"), ParseIso8601("2026-11-27T17:18:27Z"));
  EXPECT_FALSE(ParseIso8601("yesterday"));
  EXPECT_FALSE(ParseIso8601("2026-13-27T17:18:27Z"));
  EXPECT_FALSE(ParseIso8601("2026-11-27T17:18:27Q"));
}

// ---- The chain -----------------------------------------------------------------------------

TEST(ChainTest, NothingConfiguredListsEveryProviderTried) {
  TempDir home;
  Environment env = {{"HOME", home.path().string()}, {"AWS_EC2_METADATA_DISABLED", "true"}};
  AwsConfig config;
  auto found = ResolveCredentials(DefaultProviderChain(env, config, FastSettings()));
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().code(), Status::Code::kInvalidInput);
  for (const char* name : {"environment", "web identity", "profile default", "container credentials",
                           "EC2 instance metadata", "AWS_EC2_METADATA_DISABLED"}) {
    EXPECT_THAT(found.status().message(), HasSubstr(name));
  }
}

TEST(ChainTest, EnvironmentComesFirst) {
  Environment env = {{"AWS_ACCESS_KEY_ID", "AKIDENV"},
                     {"AWS_SECRET_ACCESS_KEY", kSecret},
                     {"AWS_ROLE_ARN", "arn:aws:iam::1:role/r"},
                     {"AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent"},
                     {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/"}};
  AwsConfig config;
  auto found = ResolveCredentials(DefaultProviderChain(env, config, FastSettings()));
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ(found->provider->Name(), "environment");
  EXPECT_EQ(found->first.credentials.access_key_id, "AKIDENV");
  EXPECT_FALSE(found->first.expiration);
}

// ---- STS: web identity and assume role -------------------------------------------------------

struct StsSeen {
  std::mutex mu;
  std::vector<httplib::Request> requests;
};

std::string StsAnswer(const std::string& action, const std::string& id, Clock::time_point expiration) {
  return "<" + action + "Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><" + action +
         "Result><Credentials><AccessKeyId>" + id + "</AccessKeyId><SecretAccessKey>" + kSecret +
         "</SecretAccessKey><SessionToken>tok</SessionToken><Expiration>" + Iso8601(expiration) +
         "</Expiration></Credentials></" + action + "Result></" + action + "Response>";
}

Loopback FakeSts(StsSeen& seen) {
  return Loopback([&seen](httplib::Server& server) {
    server.Post("/", [&seen](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(seen.mu);
        seen.requests.push_back(req);
      }
      std::string action = req.get_param_value("Action");
      if (action == "AssumeRole" && req.get_header_value("Authorization").empty()) {
        res.status = 403;
        res.set_content(
            "<ErrorResponse><Error><Type>Sender</Type><Code>MissingAuthenticationToken</Code>"
            "<Message>Request is missing Authentication Token</Message></Error></ErrorResponse>",
            "text/xml");
        return;
      }
      if (req.get_param_value("RoleArn").ends_with("/denied")) {
        res.status = 403;
        res.set_content(
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed to "
            "assume</Message></Error></ErrorResponse>",
            "text/xml");
        return;
      }
      res.set_content(StsAnswer(action, "ASIA" + action, Clock::now() + std::chrono::hours(1)), "text/xml");
    });
  });
}

TEST(StsTest, WebIdentityFromTheEnvironmentIsUnsignedAndSendsTheToken) {
  StsSeen seen;
  Loopback sts = FakeSts(seen);
  TempDir dir;
  std::string token_file = dir.Write("token", "eyJhbGciOi.token\n");
  Environment env = {{"AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/etl"},
                     {"AWS_WEB_IDENTITY_TOKEN_FILE", token_file},
                     {"AWS_ROLE_SESSION_NAME", "pod-1"},
                     {"AWS_ENDPOINT_URL_STS", sts.url()},
                     {"AWS_EC2_METADATA_DISABLED", "true"}};
  AwsConfig config;
  auto found = ResolveCredentials(DefaultProviderChain(env, config, FastSettings()));
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ(found->first.credentials.access_key_id, "ASIAAssumeRoleWithWebIdentity");
  EXPECT_EQ(found->first.credentials.session_token, "tok");
  ASSERT_TRUE(found->first.expiration);
  EXPECT_THAT(found->provider->Name(), HasSubstr("web identity"));
  EXPECT_THAT(found->provider->Name(), HasSubstr("arn:aws:iam::123456789012:role/etl"));
  ASSERT_EQ(seen.requests.size(), 1u);
  const httplib::Request& req = seen.requests[0];
  EXPECT_EQ(req.get_param_value("Action"), "AssumeRoleWithWebIdentity");
  EXPECT_EQ(req.get_param_value("Version"), "2011-06-15");
  EXPECT_EQ(req.get_param_value("WebIdentityToken"), "eyJhbGciOi.token");
  EXPECT_EQ(req.get_param_value("RoleSessionName"), "pod-1");
  EXPECT_EQ(req.get_header_value("Authorization"), "");
}

TEST(StsTest, DefaultStsEndpointIsRegional) {
  EXPECT_EQ(ResolveCredentials({}).status().code(), Status::Code::kInvalidInput);
  // No endpoint override: the regional endpoint shows in the provider's name.
  TempDir dir;
  Environment env = {{"AWS_ROLE_ARN", "arn:aws:iam::1:role/r"},
                     {"AWS_WEB_IDENTITY_TOKEN_FILE", dir.Write("t", "x")}};
  ProviderSettings settings = FastSettings();
  settings.region = "eu-central-1";
  EXPECT_THAT(WebIdentityProvider(env, settings)->Name(),
              HasSubstr("https://sts.eu-central-1.amazonaws.com"));
}

TEST(StsTest, ProfileAssumesItsRoleSignedWithTheSourceProfilesKeys) {
  StsSeen seen;
  Loopback sts = FakeSts(seen);
  TempDir home;
  AwsConfig config;
  config.profile = "etl";
  config.explicit_profile = true;
  config.files.config["profile base"] = {{"aws_access_key_id", "AKIDBASE"},
                                         {"aws_secret_access_key", kSecret}};
  config.files.config["profile etl"] = {{"role_arn", "arn:aws:iam::123456789012:role/etl"},
                                        {"source_profile", "base"},
                                        {"external_id", "ext-1"},
                                        {"duration_seconds", "900"}};
  Environment env = {{"AWS_ENDPOINT_URL_STS", sts.url()}, {"AWS_EC2_METADATA_DISABLED", "true"}};
  auto found = ResolveCredentials(DefaultProviderChain(env, config, FastSettings()));
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ(found->first.credentials.access_key_id, "ASIAAssumeRole");
  EXPECT_THAT(found->provider->Name(), HasSubstr("profile etl"));
  EXPECT_THAT(found->provider->Name(), HasSubstr("profile base"));
  ASSERT_EQ(seen.requests.size(), 1u);
  const httplib::Request& req = seen.requests[0];
  EXPECT_EQ(req.get_param_value("RoleArn"), "arn:aws:iam::123456789012:role/etl");
  EXPECT_EQ(req.get_param_value("ExternalId"), "ext-1");
  EXPECT_EQ(req.get_param_value("DurationSeconds"), "900");
  EXPECT_THAT(req.get_param_value("RoleSessionName"), HasSubstr("sqs2pg-"));
  EXPECT_THAT(req.get_header_value("Authorization"), HasSubstr("Credential=AKIDBASE/"));
  EXPECT_THAT(req.get_header_value("Authorization"), HasSubstr("/us-east-1/sts/aws4_request"));
}

TEST(StsTest, RoleChainsThroughAnotherRoleProfile) {
  StsSeen seen;
  Loopback sts = FakeSts(seen);
  AwsConfig config;
  config.profile = "top";
  config.files.credentials["base"] = {{"aws_access_key_id", "AKIDBASE"}, {"aws_secret_access_key", kSecret}};
  config.files.config["profile middle"] = {{"role_arn", "arn:aws:iam::1:role/middle"},
                                           {"source_profile", "base"}};
  config.files.config["profile top"] = {{"role_arn", "arn:aws:iam::1:role/top"},
                                        {"source_profile", "middle"}};
  Environment env = {{"AWS_ENDPOINT_URL_STS", sts.url()}};
  auto found = ResolveCredentials(DefaultProviderChain(env, config, FastSettings()));
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_EQ(seen.requests.size(), 2u);
  EXPECT_EQ(seen.requests[0].get_param_value("RoleArn"), "arn:aws:iam::1:role/middle");
  EXPECT_EQ(seen.requests[1].get_param_value("RoleArn"), "arn:aws:iam::1:role/top");
  // The second call is signed with the first call's temporary keys.
  EXPECT_THAT(seen.requests[1].get_header_value("Authorization"), HasSubstr("Credential=ASIAAssumeRole/"));
  EXPECT_EQ(seen.requests[1].get_header_value("X-Amz-Security-Token"), "tok");
}

TEST(StsTest, LoopsAndDenialsAreNamedErrors) {
  StsSeen seen;
  Loopback sts = FakeSts(seen);
  Environment env = {{"AWS_ENDPOINT_URL_STS", sts.url()}};
  AwsConfig config;
  config.profile = "a";
  config.files.config["profile a"] = {{"role_arn", "arn:aws:iam::1:role/a"}, {"source_profile", "b"}};
  config.files.config["profile b"] = {{"role_arn", "arn:aws:iam::1:role/b"}, {"source_profile", "a"}};
  auto loop = ResolveCredentials(DefaultProviderChain(env, config, FastSettings()));
  ASSERT_FALSE(loop.ok());
  EXPECT_THAT(loop.status().message(), HasSubstr("loops"));

  config.files.config["profile a"] = {{"role_arn", "arn:aws:iam::1:role/denied"}, {"source_profile", "c"}};
  config.files.config["profile c"] = {{"aws_access_key_id", "AKIDC"}, {"aws_secret_access_key", kSecret}};
  auto denied = ResolveCredentials(DefaultProviderChain(env, config, FastSettings()));
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Status::Code::kInvalidInput);
  EXPECT_THAT(denied.status().message(), HasSubstr("AccessDenied"));
  EXPECT_THAT(denied.status().message(), HasSubstr("sts:AssumeRole"));
  EXPECT_THAT(denied.status().message(), Not(HasSubstr(kSecret)));
}

// ---- credential_process ---------------------------------------------------------------------

TEST(ProcessTest, ReadsTheJsonTheCommandPrints) {
  TempDir dir;
  std::string script = dir.Write(
      "creds.sh",
      "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC\", "
      "\"SecretAccessKey\": \"" +
          std::string(kSecret) + "\", \"SessionToken\": \"t\", \"Expiration\": \"2099-01-01T00:00:00Z\"}'\n",
      fs::perms::owner_all);
  AwsConfig config;
  config.files.config["default"] = {{"credential_process", script + " --arg 'quoted value'"}};
  auto found = ResolveCredentials(
      DefaultProviderChain({{"AWS_EC2_METADATA_DISABLED", "true"}}, config, FastSettings()));
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ(found->first.credentials.access_key_id, "AKIDPROC");
  EXPECT_EQ(found->first.credentials.secret_access_key, kSecret);
  EXPECT_EQ(found->first.credentials.session_token, "t");
  ASSERT_TRUE(found->first.expiration);
  EXPECT_EQ(*found->first.expiration, *ParseIso8601("2099-01-01T00:00:00Z"));
  EXPECT_THAT(found->provider->Name(), HasSubstr("credential_process"));
}

TEST(ProcessTest, FailuresSayWhatWentWrongWithoutTheSecret) {
  auto load = [](const std::string& command) { return ProcessProvider(command, "test", seconds(5))->Load(); };
  auto failed = load("echo 'no such role' >&2; exit 3");
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("status 3"));
  EXPECT_THAT(failed.status().message(), HasSubstr("no such role"));

  auto version = load(std::string("echo '{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"") +
                      kSecret + "\"}'");
  ASSERT_FALSE(version.ok());
  EXPECT_THAT(version.status().message(), HasSubstr("Version"));
  EXPECT_THAT(version.status().message(), Not(HasSubstr(kSecret)));

  auto not_json = load("echo hello");
  ASSERT_FALSE(not_json.ok());
  EXPECT_THAT(not_json.status().message(), HasSubstr("JSON"));

  auto slow = ProcessProvider("sleep 30", "test", seconds(1))->Load();
  ASSERT_FALSE(slow.ok());
  EXPECT_THAT(slow.status().message(), HasSubstr("killed"));
}

// ---- Container credentials -------------------------------------------------------------------

TEST(ContainerTest, SendsTheAuthorizationTokenAndIsRefusedWithoutIt) {
  ContainerEndpoint e;
  Loopback server = FakeContainerEndpoint(e, "Bearer pod-identity-token");
  Environment env = {{"AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url() + "/creds"}};
  auto refused = ContainerProvider(env, FastSettings())->Load();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kInvalidInput);
  EXPECT_THAT(refused.status().message(), HasSubstr("HTTP 401"));
  EXPECT_THAT(refused.status().message(), HasSubstr("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
  EXPECT_EQ(e.refused, 1);

  env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "Bearer pod-identity-token";
  auto loaded = ContainerProvider(env, FastSettings())->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->credentials.access_key_id, "ASIACONTAINER1");
  EXPECT_EQ((*loaded)->credentials.session_token, "session-token");
  EXPECT_TRUE((*loaded)->expiration);
}

TEST(ContainerTest, TheTokenFileWinsAndIsReadAtEachLoad) {
  ContainerEndpoint e;
  Loopback server = FakeContainerEndpoint(e, "from-file-2");
  TempDir dir;
  std::string file = dir.Write("token", "from-file-1\n");
  Environment env = {{"AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url() + "/creds"},
                     {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "from-variable"},
                     {"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", file}};
  auto provider = ContainerProvider(env, FastSettings());
  EXPECT_FALSE(provider->Load().ok());
  dir.Write("token", "from-file-2\n");  // rotated, as EKS Pod Identity does
  auto loaded = provider->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_TRUE(loaded->has_value());
}

TEST(ContainerTest, PlainHttpOnlyToLoopbackOrTheAgents) {
  Environment env = {{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://metadata.example.com/creds"}};
  auto refused = ContainerProvider(env, FastSettings())->Load();
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("https"));
  EXPECT_THAT(
      ContainerProvider({{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x"}}, FastSettings())
          ->Name(),
      HasSubstr("http://169.254.170.2/v2/credentials/x"));
}

// ---- EC2 instance metadata (IMDSv2) -----------------------------------------------------------

struct Imds {
  std::mutex mu;
  int tokens = 0, credential_fetches = 0, refused = 0;
};

Loopback FakeImds(Imds& imds) {
  return Loopback([&imds](httplib::Server& server) {
    server.Put("/latest/api/token", [&imds](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(imds.mu);
      if (req.get_header_value("X-aws-ec2-metadata-token-ttl-seconds").empty()) {
        ++imds.refused;
        res.status = 400;
        return;
      }
      ++imds.tokens;
      res.set_content("imds-session-" + std::to_string(imds.tokens), "text/plain");
    });
    auto authorized = [&imds](const httplib::Request& req, httplib::Response& res) {
      // IMDSv2 only: without the session token the metadata service answers 401.
      if (!req.get_header_value("X-aws-ec2-metadata-token").starts_with("imds-session-")) {
        ++imds.refused;
        res.status = 401;
        return false;
      }
      return true;
    };
    server.Get("/latest/meta-data/iam/security-credentials/",
               [&imds, authorized](const httplib::Request& req, httplib::Response& res) {
                 std::lock_guard lock(imds.mu);
                 if (authorized(req, res)) res.set_content("etl-instance-role", "text/plain");
               });
    server.Get("/latest/meta-data/iam/security-credentials/etl-instance-role",
               [&imds, authorized](const httplib::Request& req, httplib::Response& res) {
                 std::lock_guard lock(imds.mu);
                 if (!authorized(req, res)) return;
                 ++imds.credential_fetches;
                 res.set_content(
                     R"({"Code":"Success","Type":"AWS-HMAC",)" +
                         CredentialsJson("ASIAIMDS", Clock::now() + std::chrono::hours(6)).substr(1),
                     "application/json");
               });
  });
}

TEST(InstanceMetadataTest, GetsATokenFirstThenTheRoleAndItsCredentials) {
  Imds imds;
  Loopback server = FakeImds(imds);
  Environment env = {{"AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url() + "/"}};
  auto provider = InstanceMetadataProvider(env, FastSettings());
  auto loaded = provider->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->credentials.access_key_id, "ASIAIMDS");
  EXPECT_TRUE((*loaded)->expiration);
  EXPECT_THAT(provider->Name(), HasSubstr("etl-instance-role"));
  EXPECT_EQ(imds.tokens, 1);
  EXPECT_EQ(imds.credential_fetches, 1);
  EXPECT_EQ(imds.refused, 0);
}

TEST(InstanceMetadataTest, DisabledOrUnreachableMeansNotHereAndFailsFast) {
  Imds imds;
  Loopback server = FakeImds(imds);
  auto disabled = InstanceMetadataProvider(
      {{"AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url()}, {"AWS_EC2_METADATA_DISABLED", "true"}},
      FastSettings());
  auto none = disabled->Load();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(imds.tokens, 0);

  // A port nobody listens on (bound, never listened, closed): connection refused at once.
  int closed_port = 0;
  {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
    ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    closed_port = ntohs(addr.sin_port);
    close(fd);
  }
  auto start = std::chrono::steady_clock::now();
  auto unreachable = InstanceMetadataProvider(
      {{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:" + std::to_string(closed_port)}},
      FastSettings());
  auto missing = unreachable->Load();
  ASSERT_TRUE(missing.ok()) << missing.status().message();
  EXPECT_FALSE(missing->has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
}

// ---- AWS error answers ------------------------------------------------------------------------

TEST(AwsErrorTest, BothXmlShapesAreRead) {
  auto query = ParseXmlError(
      R"(<?xml version="1.0" encoding="utf-8"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/">)"
      R"(<Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we )"
      R"(calculated does not match</Message></Error><RequestId>r</RequestId></ErrorResponse>)");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->code, "SignatureDoesNotMatch");
  EXPECT_THAT(query->message, HasSubstr("does not match"));
  auto response = ParseXmlError(
      "<Response><Errors><Error><Code>InvalidClientTokenId</Code><Message>The security token included in "
      "the request is invalid.</Message></Error></Errors><RequestID>x</RequestID></Response>");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->code, "InvalidClientTokenId");
  EXPECT_FALSE(ParseXmlError("<html><body>502 Bad Gateway</body></html>"));
  EXPECT_FALSE(ParseXmlError("{\"__type\":\"x\"}"));
}

}  // namespace
}  // namespace sqs2pg::aws
