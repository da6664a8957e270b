#include "aws/aws_config.h"

#include "aws/credential_provider.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace sqs2pg::aws {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

AwsOverrides RegionFlag(std::string region) {
  AwsOverrides flags;
  flags.region = std::move(region);
  return flags;
}

AwsOverrides EndpointFlag(std::string url) {
  AwsOverrides flags;
  flags.endpoint_url = std::move(url);
  return flags;
}

// The configuration and the credentials the default chain finds in it (instance metadata off,
// so a test never reaches the network).
struct Resolved {
  Credentials credentials;
  std::string credentials_source;
  std::string region, endpoint_url;
};

Result<Resolved> Resolve(Environment env, const AwsOverrides& overrides = {}) {
  env["AWS_EC2_METADATA_DISABLED"] = "true";
  ASSIGN_OR_RETURN(AwsConfig config, ResolveAwsConfig(env, overrides));
  ProviderSettings settings;
  settings.region = config.region;
  ASSIGN_OR_RETURN(ResolvedCredentials found,
                   ResolveCredentials(DefaultProviderChain(env, config, settings)));
  return Resolved{found.first.credentials, found.provider->Name(), config.region, config.endpoint_url};
}

class AwsConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sqs2pg_aws_config_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    home_ = tmpl;
    fs::create_directories(home_ / ".aws");
    env_["HOME"] = home_.string();
  }
  void TearDown() override { fs::remove_all(home_); }

  void Write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  void WriteCredentials(const std::string& text) { Write(home_ / ".aws" / "credentials", text); }
  void WriteConfig(const std::string& text) { Write(home_ / ".aws" / "config", text); }
  void SetEnvKeys() {
    env_["AWS_ACCESS_KEY_ID"] = "AKIDENV";
    env_["AWS_SECRET_ACCESS_KEY"] = kSecret;
  }

  fs::path home_;
  Environment env_;
};

TEST_F(AwsConfigTest, EnvironmentKeysWinOverTheProfile) {
  WriteCredentials("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = filesecret\n");
  SetEnvKeys();
  env_["AWS_SESSION_TOKEN"] = "token";
  env_["AWS_REGION"] = "eu-west-1";
  auto config = Resolve(env_);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->credentials.access_key_id, "AKIDENV");
  EXPECT_EQ(config->credentials.secret_access_key, kSecret);
  EXPECT_EQ(config->credentials.session_token, "token");
  EXPECT_EQ(config->credentials_source, "environment");
  EXPECT_EQ(config->region, "eu-west-1");
  EXPECT_EQ(config->endpoint_url, "https://sqs.eu-west-1.amazonaws.com");
}

TEST_F(AwsConfigTest, HalfSetEnvironmentKeysAreAnErrorWithoutTheSecret) {
  env_["AWS_SECRET_ACCESS_KEY"] = kSecret;
  env_["AWS_REGION"] = "eu-west-1";
  auto config = Resolve(env_);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), Status::Code::kInvalidInput);
  EXPECT_THAT(config.status().message(), HasSubstr("AWS_ACCESS_KEY_ID"));
  EXPECT_THAT(config.status().message(), Not(HasSubstr(kSecret)));
}

TEST_F(AwsConfigTest, DefaultProfileFromTheHomeDirectory) {
  WriteCredentials(
      "# comment\n[other]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=x\n\n"
      "[default]\r\n aws_access_key_id = AKIDDEFAULT \r\naws_access_key_id = AKIDDEFAULT\n"
      "aws_secret_access_key = se=cret/+\naws_session_token = tok==\n");
  WriteConfig(
      "[default]\nregion = ap-south-1\ns3 =\n  region = ignored-nested\n[profile other]\nregion = "
      "us-west-2\n");
  auto config = Resolve(env_);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->credentials.access_key_id, "AKIDDEFAULT");
  EXPECT_EQ(config->credentials.secret_access_key, "se=cret/+");
  EXPECT_EQ(config->credentials.session_token, "tok==");
  EXPECT_EQ(config->region, "ap-south-1");
  EXPECT_EQ(config->credentials_source,
            "profile default (" + (home_ / ".aws" / "credentials").string() + ")");
}

TEST_F(AwsConfigTest, NamedProfileFromFilesNamedByTheEnvironment) {
  Write(home_ / "elsewhere" / "creds",
        "[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = devsecret\n");
  Write(home_ / "elsewhere" / "conf",
        "[default]\nregion = us-east-1\n[profile dev]\nregion = eu-central-1\n");
  env_["AWS_SHARED_CREDENTIALS_FILE"] = "~/elsewhere/creds";
  env_["AWS_CONFIG_FILE"] = (home_ / "elsewhere" / "conf").string();
  env_["AWS_PROFILE"] = "dev";
  auto config = Resolve(env_);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->credentials.access_key_id, "AKIDDEV");
  EXPECT_EQ(config->region, "eu-central-1");
}

TEST_F(AwsConfigTest, KeysInTheConfigFileCountWhenTheCredentialsFileHasNone) {
  WriteConfig(
      "[profile dev]\nregion = eu-north-1\naws_access_key_id = AKIDCONF\naws_secret_access_key = s\n");
  env_["AWS_PROFILE"] = "dev";
  auto config = Resolve(env_);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->credentials.access_key_id, "AKIDCONF");
}

TEST_F(AwsConfigTest, MissingNamedProfileIsNamed) {
  WriteCredentials("[default]\naws_access_key_id = A\naws_secret_access_key = s\n");
  env_["AWS_PROFILE"] = "prod";
  env_["AWS_REGION"] = "eu-west-1";
  auto config = Resolve(env_);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("AWS profile 'prod' not found"));
}

TEST_F(AwsConfigTest, NoCredentialsAtAllSaysWhatToSet) {
  env_["AWS_REGION"] = "eu-west-1";
  auto config = Resolve(env_);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("no AWS credentials"));
}

TEST_F(AwsConfigTest, ProfileWithHalfTheKeysIsAnErrorWithoutTheSecret) {
  WriteCredentials(std::string("[default]\naws_secret_access_key = ") + kSecret + "\n");
  env_["AWS_REGION"] = "eu-west-1";
  auto config = Resolve(env_);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("aws_access_key_id"));
  EXPECT_THAT(config.status().message(), Not(HasSubstr(kSecret)));
}

TEST_F(AwsConfigTest, SsoProfilesAreReportedAsUnsupported) {
  WriteConfig("[profile admin]\nsso_session = corp\nregion = eu-west-1\n");
  env_["AWS_PROFILE"] = "admin";
  auto config = Resolve(env_);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("uses sso_session"));
}

TEST_F(AwsConfigTest, RegionPrecedence) {
  SetEnvKeys();
  WriteConfig("[default]\nregion = from-profile-1\n");
  EXPECT_EQ(Resolve(env_)->region, "from-profile-1");
  env_["AWS_DEFAULT_REGION"] = "from-default-1";
  EXPECT_EQ(Resolve(env_)->region, "from-default-1");
  env_["AWS_REGION"] = "from-region-1";
  EXPECT_EQ(Resolve(env_)->region, "from-region-1");
  EXPECT_EQ(Resolve(env_, RegionFlag("from-flag-1"))->region, "from-flag-1");
}

TEST_F(AwsConfigTest, NoRegionIsAClearError) {
  SetEnvKeys();
  auto config = Resolve(env_);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "no AWS region: pass --region or set AWS_REGION");
}

TEST_F(AwsConfigTest, RegionMustLookLikeOne) {
  SetEnvKeys();
  EXPECT_FALSE(Resolve(env_, RegionFlag("us-east-1\r\nX: y")).ok());
}

TEST_F(AwsConfigTest, EndpointPrecedence) {
  SetEnvKeys();
  env_["AWS_REGION"] = "eu-west-1";
  EXPECT_EQ(Resolve(env_)->endpoint_url, "https://sqs.eu-west-1.amazonaws.com");
  env_["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1/";
  EXPECT_EQ(Resolve(env_)->endpoint_url, "http://127.0.0.1:1");
  env_["AWS_ENDPOINT_URL_SQS"] = "http://127.0.0.1:2";
  EXPECT_EQ(Resolve(env_)->endpoint_url, "http://127.0.0.1:2");
  EXPECT_EQ(Resolve(env_, EndpointFlag("https://127.0.0.1:3"))->endpoint_url, "https://127.0.0.1:3");
  auto bad = Resolve(env_, EndpointFlag("127.0.0.1:4566"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("http://"));
}

TEST_F(AwsConfigTest, CaFilePrecedence) {
  SetEnvKeys();
  env_["AWS_REGION"] = "eu-west-1";
  for (const char* name : {"profile.pem", "env.pem", "flag.pem"}) Write(home_ / name, "PEM\n");
  EXPECT_EQ(ResolveAwsConfig(env_)->ca_file, "");  // the system's store
  WriteConfig("[default]\nca_bundle = ~/profile.pem\n");
  EXPECT_EQ(ResolveAwsConfig(env_)->ca_file, (home_ / "profile.pem").string());
  env_["AWS_CA_BUNDLE"] = (home_ / "env.pem").string();
  EXPECT_EQ(ResolveAwsConfig(env_)->ca_file, (home_ / "env.pem").string());
  AwsOverrides flags;
  flags.ca_file = (home_ / "flag.pem").string();
  EXPECT_EQ(ResolveAwsConfig(env_, flags)->ca_file, (home_ / "flag.pem").string());
}

TEST_F(AwsConfigTest, MissingCaFileIsAConfigurationErrorNamingItsOrigin) {
  SetEnvKeys();
  env_["AWS_REGION"] = "eu-west-1";
  env_["AWS_CA_BUNDLE"] = (home_ / "nope.pem").string();
  auto bad = ResolveAwsConfig(env_);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kInvalidInput);
  EXPECT_THAT(bad.status().message(), HasSubstr("nope.pem (from AWS_CA_BUNDLE)"));
  AwsOverrides flags;
  flags.ca_file = home_.string();  // a directory
  bad = ResolveAwsConfig(env_, flags);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("(from --ca-file) is not a file"));
}

TEST(ProcessEnvironmentTest, KeepsOnlyAwsVariablesAndHome) {
  setenv("AWS_SQS2PG_TEST_VARIABLE", "x", 1);
  setenv("SQS2PG_NOT_AWS", "y", 1);
  Environment env = ProcessEnvironment();
  EXPECT_EQ(env["AWS_SQS2PG_TEST_VARIABLE"], "x");
  EXPECT_EQ(env.count("SQS2PG_NOT_AWS"), 0u);
}

}  // namespace
}  // namespace sqs2pg::aws
