#pragma once
// Resolves AWS credentials, region and SQS endpoint the way the AWS CLI and SDKs do, from an
// environment passed in (so tests need not touch the process environment) and the shared
// credentials and config files. Static keys only: profiles that assume a role, use SSO or run a
// credential_process are reported as unsupported.

#include <map>
#include <optional>
#include <string>

#include "common/result.h"
#include "source/sqs/credentials.h"

namespace sqs2pg::sqs {

// Variable name -> value.
using Environment = std::map<std::string, std::string>;

// The process's AWS_* variables and HOME.
Environment ProcessEnvironment();

// Values from the command line; they win over everything else.
struct AwsOverrides {
  std::optional<std::string> region;        // --region
  std::optional<std::string> endpoint_url;  // --endpoint-url, e.g. "http://127.0.0.1:4566"
  std::optional<std::string> ca_file;       // --ca-file: PEM CA bundle for https endpoints
};

struct AwsConfig {
  Credentials credentials;
  std::string region;
  std::string endpoint_url;  // scheme://host[:port][/path], no trailing '/'
  std::string ca_file;       // PEM CA bundle trusted for TLS; empty: the system's store
  // Where the credentials came from, safe to log: "environment" or "profile default
  // (/home/u/.aws/credentials)".
  std::string credentials_source;
};

// Credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); else the profile
// AWS_PROFILE (default "default") from AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials, section
// [name]) then AWS_CONFIG_FILE (~/.aws/config, section [profile name] or [default]).
// Region: overrides > AWS_REGION > AWS_DEFAULT_REGION > the profile's region in the config file.
// Endpoint: overrides > AWS_ENDPOINT_URL_SQS > AWS_ENDPOINT_URL > https://sqs.<region>.amazonaws.com.
// CA bundle: overrides > AWS_CA_BUNDLE > the profile's ca_bundle in the config file (as the AWS CLI);
// it must be a readable file (InvalidInput naming where the path came from otherwise).
// Errors are InvalidInput and never quote a key, secret or token.
Result<AwsConfig> ResolveAwsConfig(const Environment& env, const AwsOverrides& overrides = {});

}  // namespace sqs2pg::sqs
