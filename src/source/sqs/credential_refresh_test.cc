// The credential cache under the SQS clients: credentials replaced before they expire, an
// ExpiredToken answer that makes a client refresh and retry, and how credential errors read.
// The providers themselves are tested in src/aws/credential_provider_test.cc.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "aws/aws_error.h"
#include "aws/credential_cache.h"
#include "aws/credential_provider.h"
#include "aws/test_endpoints.h"
#include "source/sqs/async_sqs_source.h"
#include "source/sqs/sqs_client.h"
#include "source/sqs/sqs_protocol.h"

namespace sqs2pg::sqs {
namespace {

using aws::AwsConfig;
using aws::CredentialCache;
using aws::CredentialProvider;
using aws::DefaultProviderChain;
using aws::Environment;
using aws::IsCredentialErrorCode;
using aws::LoadedCredentials;
using aws::ResolveCredentials;
using aws::fakes::Clock;
using aws::fakes::ContainerEndpoint;
using aws::fakes::FakeContainerEndpoint;
using aws::fakes::FastSettings;
using aws::fakes::kSecret;
using aws::fakes::Loopback;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

// A fake SQS that accepts a key only until the expiry its issuer gave it, as AWS does.
class ExpiringSqs {
 public:
  ExpiringSqs()
      : server_([this](httplib::Server& server) {
          server.Post("/", [this](const httplib::Request& req, httplib::Response& res) {
            std::string auth = req.get_header_value("Authorization");
            size_t begin = auth.find("Credential=") + 11;
            std::string id = auth.substr(begin, auth.find('/', begin) - begin);
            std::lock_guard lock(mu_);
            ++calls_;
            auto it = valid_until_.find(id);
            if (it != valid_until_.end() && Clock::now() >= it->second) {
              ++expired_answers_;
              res.status = 400;
              res.set_content(R"({"__type":"com.amazon.coral.service#ExpiredTokenException",)"
                              R"("message":"The security token included in the request is expired"})",
                              "application/x-amz-json-1.0");
              return;
            }
            used_.insert(id);
            if (req.get_header_value("X-Amz-Target") == "AmazonSQS.ReceiveMessage") {
              res.set_content(R"({"Messages":[]})", "application/x-amz-json-1.0");
            } else {
              res.set_content(R"({"QueueUrl":"http://q/000000000000/login-queue"})",
                              "application/x-amz-json-1.0");
            }
          });
        }) {}

  void Expire(const std::string& id, Clock::time_point when) {
    std::lock_guard lock(mu_);
    valid_until_[id] = when;
  }
  std::string url() const { return server_.url(); }
  int expired_answers() {
    std::lock_guard lock(mu_);
    return expired_answers_;
  }
  std::set<std::string> used() {
    std::lock_guard lock(mu_);
    return used_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, Clock::time_point> valid_until_;
  std::set<std::string> used_;
  int calls_ = 0, expired_answers_ = 0;
  Loopback server_;  // last: stopped before the state it uses is destroyed
};

// ---- Refresh ----------------------------------------------------------------------------------

// Hands out KEY1, KEY2, ... each valid for `lifetime`; tells the fake SQS when each expires.
class RotatingProvider : public CredentialProvider {
 public:
  RotatingProvider(ExpiringSqs& sqs, Clock::duration lifetime, bool fail_after_first = false)
      : sqs_(sqs), lifetime_(lifetime), fail_after_first_(fail_after_first) {}
  Result<std::optional<LoadedCredentials>> Load() override {
    if (fail_after_first_ && loads_ > 0) return Status::InvalidInput("token endpoint says no");
    std::string id = "KEY" + std::to_string(++loads_);
    auto expiration = Clock::now() + lifetime_;
    sqs_.Expire(id, expiration);
    return std::optional<LoadedCredentials>(LoadedCredentials{{id, kSecret, "tok"}, expiration});
  }
  std::string Name() const override { return "rotating test provider"; }
  std::atomic<int> loads_{0};

 private:
  ExpiringSqs& sqs_;
  Clock::duration lifetime_;
  bool fail_after_first_;
};

std::shared_ptr<CredentialCache> CacheOver(std::unique_ptr<CredentialProvider> provider) {
  auto first = provider->Load();
  EXPECT_TRUE(first.ok() && first->has_value());
  return CredentialCache::Create(std::move(provider), **first);
}

ClientConfig ConfigWith(const std::string& url, std::shared_ptr<CredentialCache> cache) {
  ClientConfig config;
  config.endpoint_url = url;
  config.region = "us-east-1";
  config.credential_cache = std::move(cache);
  config.retry.max_attempts = 2;
  config.retry.base_delay = milliseconds(1);
  return config;
}

TEST(RefreshTest, ContainerCredentialsAreReplacedBeforeTheyExpireAndCallsKeepWorking) {
  ExpiringSqs sqs;
  ContainerEndpoint e;
  e.lifetime = seconds(3);
  e.on_issue = [&sqs](const std::string& id, Clock::time_point expiration) { sqs.Expire(id, expiration); };
  Loopback server = FakeContainerEndpoint(e, "Bearer t");
  Environment env = {{"AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url() + "/creds"},
                     {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer t"}};
  auto found = ResolveCredentials(DefaultProviderChain(env, AwsConfig{}, FastSettings()));
  ASSERT_TRUE(found.ok()) << found.status().message();
  auto cache = CredentialCache::Create(std::move(found->provider), found->first);
  auto client = SqsClient::Create(ConfigWith(sqs.url(), cache));
  ASSERT_TRUE(client.ok()) << client.status().message();
  // Half a 3 s lifetime: replaced after about 1.5 s. Call for 5 s; every call must succeed.
  auto end = std::chrono::steady_clock::now() + seconds(5);
  int calls = 0;
  while (std::chrono::steady_clock::now() < end) {
    auto url = (*client)->GetQueueUrl("login-queue");
    ASSERT_TRUE(url.ok()) << url.status().message();
    ++calls;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_GE(cache->refreshes(), 2u);
  std::lock_guard lock(e.mu);
  EXPECT_GE(e.keys_handed_out.size(), 3u);
  EXPECT_GE(sqs.used().size(), 3u);
  EXPECT_GT(calls, 20);
}

TEST(RefreshTest, ExpiredTokenMakesTheClientRefreshAndRetry) {
  ExpiringSqs sqs;
  auto provider = std::make_unique<RotatingProvider>(sqs, std::chrono::hours(1));
  RotatingProvider* p = provider.get();
  auto cache = CacheOver(std::move(provider));
  sqs.Expire("KEY1", Clock::now());  // revoked early: AWS says ExpiredToken before the stated expiry
  auto client = SqsClient::Create(ConfigWith(sqs.url(), cache));
  ASSERT_TRUE(client.ok());
  auto url = (*client)->GetQueueUrl("login-queue");
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(p->loads_, 2);
  EXPECT_EQ(sqs.expired_answers(), 1);
  EXPECT_EQ(sqs.used(), std::set<std::string>{"KEY2"});
}

TEST(RefreshTest, ExpiredTokenAfterAFailedRefreshIsACredentialError) {
  ExpiringSqs sqs;
  auto cache = CacheOver(std::make_unique<RotatingProvider>(sqs, std::chrono::hours(1), true));
  sqs.Expire("KEY1", Clock::now());
  auto client = SqsClient::Create(ConfigWith(sqs.url(), cache));
  ASSERT_TRUE(client.ok());
  auto url = (*client)->GetQueueUrl("login-queue");
  ASSERT_FALSE(url.ok());
  EXPECT_EQ(url.status().code(), Status::Code::kInvalidInput);  // exit 2
  EXPECT_THAT(url.status().message(), HasSubstr("ExpiredTokenException"));
  EXPECT_THAT(url.status().message(), HasSubstr("rotating test provider"));
  EXPECT_THAT(url.status().message(), HasSubstr("token endpoint says no"));
}

TEST(RefreshTest, TheAsyncSourceRefreshesWithoutBlockingItsLoop) {
  ExpiringSqs sqs;
  auto provider = std::make_unique<RotatingProvider>(sqs, std::chrono::hours(1));
  RotatingProvider* p = provider.get();
  auto cache = CacheOver(std::move(provider));
  sqs.Expire("KEY1", Clock::now());
  auto source = AsyncSqsSource::Create(ConfigWith(sqs.url(), cache), "http://q/000000000000/login-queue", 30);
  ASSERT_TRUE(source.ok()) << source.status().message();
  std::optional<Result<std::vector<ReceivedMessage>>> got;
  (*source)->StartReceive(10, seconds(0),
                          [&got](Result<std::vector<ReceivedMessage>> r) { got = std::move(r); });
  auto end = std::chrono::steady_clock::now() + seconds(10);
  while (!got && std::chrono::steady_clock::now() < end) (*source)->Poll(milliseconds(100));
  ASSERT_TRUE(got);
  ASSERT_TRUE(got->ok()) << got->status().message();
  EXPECT_EQ(p->loads_, 2);
  EXPECT_EQ(sqs.used(), std::set<std::string>{"KEY2"});
}

// ---- AWS error answers ------------------------------------------------------------------------

TEST(AwsErrorTest, CredentialErrorsNameTheCodeTheSourceAndAreConfigurationErrors) {
  HttpResponse response;
  response.status = 403;
  response.body =
      R"(<?xml version="1.0" encoding="utf-8"?>)"
      "\n<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we "
      "calculated does not match the signature you provided.</Message></Error></ErrorResponse>";
  AwsError error = ParseError(response);
  EXPECT_EQ(error.code, "SignatureDoesNotMatch");
  Status st = ErrorStatus(error, "GetQueueUrl", "login-queue", "http://sqs", "environment");
  EXPECT_EQ(st.code(), Status::Code::kInvalidInput);
  EXPECT_THAT(st.message(), HasSubstr("SignatureDoesNotMatch"));
  EXPECT_THAT(st.message(), HasSubstr("secret access key does not match"));
  EXPECT_THAT(st.message(), HasSubstr("environment"));

  error.code = "AccessDenied";
  st = ErrorStatus(error, "ReceiveMessage", "login-queue", "http://sqs", "profile etl");
  EXPECT_EQ(st.code(), Status::Code::kInvalidInput);
  EXPECT_THAT(st.message(), HasSubstr("sqs:ReceiveMessage"));

  for (const char* code : {"InvalidClientTokenId", "UnrecognizedClientException",
                           "MissingAuthenticationToken", "ExpiredToken", "AccessDeniedException"}) {
    EXPECT_TRUE(IsCredentialErrorCode(code)) << code;
  }
  EXPECT_FALSE(IsCredentialErrorCode("QueueDoesNotExist"));
}

}  // namespace
}  // namespace sqs2pg::sqs
