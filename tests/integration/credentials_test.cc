// The AWS credential chain end to end, with the real sqs2pg binary: STS from moto_server
// (AssumeRole for a role profile, AssumeRoleWithWebIdentity as on EKS), credential_process,
// container and instance-metadata endpoints written here (they refuse requests without their
// token headers), and moto_server with IAM authentication on, which checks every signature.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "harness.h"
#include "loopback.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::system_clock;

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs sqs2pg with the stack's credentials removed from its environment, so only what `env`
// sets can supply them, and with this test's own (empty) AWS files and instance metadata off
// unless `env` says otherwise.
CommandResult RunWithoutStackKeys(const std::vector<std::string>& args,
                                  std::map<std::string, std::string> env, const std::string& prefix = "") {
  LoadStackEnvironment();
  std::string dir = TestDir();
  env.try_emplace("AWS_CONFIG_FILE", dir + "/no-config");
  env.try_emplace("AWS_SHARED_CREDENTIALS_FILE", dir + "/no-credentials");
  env.try_emplace("AWS_EC2_METADATA_DISABLED", "true");
  std::string line =
      prefix + "env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE";
  for (const auto& [k, v] : env) line += fmt::format(" {}={}", k, Quote(v));
  line += " " + Quote(SQS2PG_BINARY);
  for (const auto& a : args) line += " " + Quote(a);
  return RunShell(line);
}

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = TestDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// send + run against moto with the given credential environment: the whole ETL, 99 rows.
void SendAndRunAgainstMoto(const std::map<std::string, std::string>& env, const std::string& endpoint,
                           const std::string& expect_source) {
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  CommandResult sent = RunWithoutStackKeys(
      {"send", "--endpoint-url", endpoint, "--create-queue", "--queue", queue, SampleDataPath()}, env);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  EXPECT_THAT(sent.err, HasSubstr("AWS credentials from " + expect_source));
  CommandResult r = RunWithoutStackKeys({"run", "--endpoint-url", endpoint, "--queue", queue, "--table",
                                         table, "--key-file", key, "--wait-seconds", "1"},
                                        env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("loaded 99,"));
  Db db;
  EXPECT_EQ(db.Count(table), 99);
}

std::string Iso8601(Clock::time_point t) {
  std::time_t secs = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string CredentialsJson(const std::string& id, const std::string& secret, Clock::time_point expiration,
                            const std::string& token = "tok") {
  return fmt::format(R"({{"AccessKeyId":"{}","SecretAccessKey":"{}","Token":"{}","Expiration":"{}"}})", id,
                     secret, token, Iso8601(expiration));
}

TEST(CredentialsTest, ProfileRoleAssumedThroughMotoSts) {
  std::string moto = StackVar("MOTO_ENDPOINT_URL");
  std::string config =
      WriteFile("config",
                "[profile base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = base\n"
                "[profile etl]\nrole_arn = arn:aws:iam::123456789012:role/etl\n"
                "source_profile = base\n");
  SendAndRunAgainstMoto({{"AWS_CONFIG_FILE", config}, {"AWS_PROFILE", "etl"}, {"AWS_ENDPOINT_URL_STS", moto}},
                        moto,
                        "profile etl: role arn:aws:iam::123456789012:role/etl assumed with profile base");
}

TEST(CredentialsTest, WebIdentityTokenThroughMotoSts) {
  std::string moto = StackVar("MOTO_ENDPOINT_URL");
  std::string token = WriteFile("token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.sig\n");
  SendAndRunAgainstMoto({{"AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa"},
                         {"AWS_WEB_IDENTITY_TOKEN_FILE", token},
                         {"AWS_ENDPOINT_URL_STS", moto}},
                        moto, "web identity: web identity token " + token);
}

TEST(CredentialsTest, CredentialProcessScript) {
  std::string moto = StackVar("MOTO_ENDPOINT_URL");
  std::string script =
      WriteFile("creds.sh",
                "#!/bin/sh\ncat <<'JSON'\n{\"Version\": 1, \"AccessKeyId\": \"AKIDPROCESS\", "
                "\"SecretAccessKey\": \"processsecret\", \"Expiration\": \"2099-01-01T00:00:00Z\"}\n"
                "JSON\n");
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  std::string config = WriteFile("config", "[default]\ncredential_process = " + script + "\n");
  SendAndRunAgainstMoto({{"AWS_CONFIG_FILE", config}}, moto, "profile default (credential_process)");
}

struct ContainerEndpoint {
  std::mutex mu;
  int fetches = 0, refused = 0;
  std::vector<std::pair<std::string, std::string>> keys{{"AKIDCONTAINER", "containersecret"}};
  std::chrono::seconds lifetime{3600};
  std::string session_token = "tok";  // "" for long-term keys, which carry none
};

Loopback ServeContainerCredentials(ContainerEndpoint& e) {
  return Loopback([&e](httplib::Server& server) {
    server.Get("/v2/credentials", [&e](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(e.mu);
      if (req.get_header_value("Authorization") != "Bearer pod-token") {
        ++e.refused;
        res.status = 401;
        return;
      }
      const auto& [id, secret] = e.keys[static_cast<size_t>(e.fetches) % e.keys.size()];
      ++e.fetches;
      res.set_content(CredentialsJson(id, secret, Clock::now() + e.lifetime, e.session_token),
                      "application/json");
    });
  });
}

TEST(CredentialsTest, ContainerCredentialsNeedTheAuthorizationToken) {
  std::string moto = StackVar("MOTO_ENDPOINT_URL");
  ContainerEndpoint e;
  Loopback server = ServeContainerCredentials(e);
  std::string token_file = WriteFile("pod-token", "Bearer pod-token\n");
  std::map<std::string, std::string> env = {
      {"AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url() + "/v2/credentials"}};
  CommandResult refused =
      RunWithoutStackKeys({"send", "--endpoint-url", moto, "--queue", "x", SampleDataPath()}, env);
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("HTTP 401"));
  EXPECT_EQ(e.refused, 1);
  env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = token_file;
  SendAndRunAgainstMoto(env, moto, "container credentials " + server.url());
  EXPECT_GE(e.fetches, 2);  // one per command
}

TEST(CredentialsTest, InstanceMetadataV2) {
  std::string moto = StackVar("MOTO_ENDPOINT_URL");
  std::mutex mu;
  int tokens = 0, refused = 0;
  Loopback imds([&](httplib::Server& server) {
    server.Put("/latest/api/token", [&](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      if (req.get_header_value("X-aws-ec2-metadata-token-ttl-seconds").empty()) {
        ++refused;
        res.status = 400;
        return;
      }
      ++tokens;
      res.set_content("session-" + std::to_string(tokens), "text/plain");
    });
    server.Get(R"(/latest/meta-data/iam/security-credentials/(.*))", [&](const httplib::Request& req,
                                                                         httplib::Response& res) {
      std::lock_guard lock(mu);
      if (!req.get_header_value("X-aws-ec2-metadata-token").starts_with("session-")) {
        ++refused;
        res.status = 401;
        return;
      }
      if (req.matches[1].str().empty()) {
        res.set_content("etl-role\n", "text/plain");
      } else if (req.matches[1].str() == "etl-role") {
        res.set_content(CredentialsJson("AKIDIMDS", "imdssecret", Clock::now() + std::chrono::hours(6)),
                        "application/json");
      } else {
        res.status = 404;
      }
    });
  });
  std::string queue = UniqueName("q");
  CommandResult r = RunWithoutStackKeys(
      {"send", "--endpoint-url", moto, "--create-queue", "--queue", queue, SampleDataPath()},
      {{"AWS_EC2_METADATA_DISABLED", "false"}, {"AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("EC2 instance metadata (IMDSv2) " + imds.url() + ", role etl-role"));
  EXPECT_EQ(tokens, 1);
  EXPECT_EQ(refused, 0);
}

// moto_server with IAM authentication: after the first N calls it checks each request's
// signature against the access keys its IAM knows, and each call against the user's policy.
class AuthenticatingMoto {
 public:
  AuthenticatingMoto() {
    dir_ = TestDir();
    CommandResult port = RunShell(
        "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); "
        "print(s.getsockname()[1])'");
    url_ = "http://127.0.0.1:" + port.out.substr(0, port.out.find('\n'));
    // Three unauthenticated calls: CreateUser, PutUserPolicy, CreateAccessKey.
    std::string start = fmt::format(
        "INITIAL_NO_AUTH_ACTION_COUNT=3 nohup moto_server -H 127.0.0.1 -p {} >{}/moto-auth.log 2>&1 & echo "
        "$!",
        url_.substr(url_.rfind(':') + 1), dir_);
    pid_ = std::stoi(RunShell(start).out);
    for (int i = 0; i < 150; ++i) {
      // A bare TCP connect: an HTTP request might count as one of the unauthenticated calls.
      if (RunShell("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + url_.substr(url_.rfind(':') + 1) + "'")
              .exit_code == 0) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ~AuthenticatingMoto() {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 50 && kill(pid_, 0) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (kill(pid_, 0) == 0) kill(pid_, SIGKILL);
  }
  const std::string& url() const { return url_; }

  // An IAM user allowed sqs:* and one access key for it: {id, secret}.
  std::pair<std::string, std::string> CreateUserKey() {
    std::string script = WriteFile("iam.py", R"(import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="etl")
iam.put_user_policy(UserName="etl", PolicyName="sqs", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="etl")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
)");
    CommandResult r = RunShell("python3 " + script + " " + url_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::istringstream words(r.out);
    std::string id, secret;
    words >> id >> secret;
    return {id, secret};
  }

 private:
  std::string dir_, url_;
  pid_t pid_ = 0;
};

TEST(CredentialsTest, MotoWithIamAuthenticationAcceptsTheRightKeyAndNamesTheWrongOnes) {
  AuthenticatingMoto moto;
  auto [id, secret] = moto.CreateUserKey();
  ASSERT_FALSE(id.empty());
  SendAndRunAgainstMoto(
      {{"AWS_ACCESS_KEY_ID", id}, {"AWS_SECRET_ACCESS_KEY", secret}, {"AWS_REGION", "us-east-1"}}, moto.url(),
      "environment");

  CommandResult wrong_secret =
      RunWithoutStackKeys({"send", "--endpoint-url", moto.url(), "--queue", "x", SampleDataPath()},
                          {{"AWS_ACCESS_KEY_ID", id}, {"AWS_SECRET_ACCESS_KEY", "not-the-secret"}});
  EXPECT_EQ(wrong_secret.exit_code, 2) << wrong_secret.err;
  EXPECT_THAT(wrong_secret.err, HasSubstr("SignatureDoesNotMatch"));
  EXPECT_THAT(wrong_secret.err,
              HasSubstr("secret access key does not match the access key id (credentials from "
                        "environment)"));
  EXPECT_THAT(wrong_secret.err, Not(HasSubstr("not-the-secret")));
  EXPECT_THAT(wrong_secret.err, Not(HasSubstr("<?xml")));

  CommandResult unknown_key =
      RunWithoutStackKeys({"send", "--endpoint-url", moto.url(), "--queue", "x", SampleDataPath()},
                          {{"AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000"}, {"AWS_SECRET_ACCESS_KEY", secret}});
  EXPECT_EQ(unknown_key.exit_code, 2) << unknown_key.err;
  EXPECT_THAT(unknown_key.err, HasSubstr("InvalidClientTokenId"));
  EXPECT_THAT(unknown_key.err, Not(HasSubstr(secret)));

  // The same key handed out by a container endpoint as short-lived credentials: `run --follow`
  // keeps going across several refreshes, every request still signed with a key moto accepts.
  ContainerEndpoint e;
  e.keys = {{id, secret}};
  e.lifetime = std::chrono::seconds(6);
  e.session_token = "";  // moto would look an STS session up for a token, and find none
  Loopback server = ServeContainerCredentials(e);
  std::string key = MakeKeyFile();
  std::string queue = UniqueName("q");
  std::map<std::string, std::string> env = {
      {"AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url() + "/v2/credentials"},
      {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer pod-token"},
      {"SQS2PG_CREDENTIAL_REFRESH_MARGIN_SECONDS", "3"}};
  CommandResult sent = RunWithoutStackKeys(
      {"send", "--endpoint-url", moto.url(), "--create-queue", "--queue", queue, SampleDataPath()}, env);
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  int fetches_before = e.fetches;
  CommandResult run =
      RunWithoutStackKeys({"run", "--follow", "--discard-messages", "--endpoint-url", moto.url(), "--queue",
                           queue, "--key-file", key, "--wait-seconds", "1"},
                          // --foreground: without it GNU timeout signals its whole process group
                          // as well, so sqs2pg can get SIGTERM twice, and a second signal means
                          // "exit now" (143), which made this test flaky.
                          env, "timeout --foreground --preserve-status -s TERM 11 ");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, ::testing::ContainsRegex("received 10[0-9], "));
  EXPECT_THAT(run.err, Not(HasSubstr("error")));
  std::lock_guard lock(e.mu);
  EXPECT_GE(e.fetches - fetches_before, 3) << "refreshed every ~3 s over 11 s";
}

}  // namespace
}  // namespace sqs2pg::integration
