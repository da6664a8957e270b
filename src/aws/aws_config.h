#pragma once
// Resolves the AWS region, the SQS endpoint and the profile the way the AWS CLI and SDKs do, from
// an environment passed in (so tests need not touch the process environment) and the shared
// credentials and config files. Credentials come from the provider chain in
// credential_provider.h, which reads the same files through AwsConfig.

#include <map>
#include <optional>
#include <string>

#include "common/result.h"

namespace sqs2pg::aws {

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

// One [section] of an AWS file: key -> value, keys lower-cased.
using IniSection = std::map<std::string, std::string>;

// ~/.aws/credentials and ~/.aws/config (or where AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE
// point), parsed. A missing file is an empty one, as for the AWS CLI.
struct AwsFiles {
  std::string credentials_path;  // for messages; "~/.aws/credentials (HOME is not set)" when unknown
  std::string config_path;
  std::map<std::string, IniSection> credentials;
  std::map<std::string, IniSection> config;

  // [name] in the credentials file; nullptr when absent.
  const IniSection* CredentialsSection(const std::string& profile) const;
  // [profile name] in the config file, or [default] for "default"; nullptr when absent.
  const IniSection* ConfigSection(const std::string& profile) const;
  // The profile's setting: the credentials file's, else the config file's, else "".
  std::string Setting(const std::string& profile, const std::string& key) const;
  bool HasProfile(const std::string& profile) const;
};

struct AwsConfig {
  std::string region;
  std::string endpoint_url;         // scheme://host[:port][/path], no trailing '/'
  std::string profile = "default";  // AWS_PROFILE, AWS_DEFAULT_PROFILE, else "default"
  bool explicit_profile = false;    // named by the environment, so it must exist
  AwsFiles files;
  std::string ca_file;  // PEM CA bundle trusted for TLS; empty: the system's store
};

// Region: overrides > AWS_REGION > AWS_DEFAULT_REGION > the profile's region in the config file.
// Endpoint: overrides > AWS_ENDPOINT_URL_SQS > AWS_ENDPOINT_URL > https://sqs.<region>.amazonaws.com.
// CA bundle: overrides > AWS_CA_BUNDLE > the profile's ca_bundle in the config file (as the AWS CLI);
// it must be a readable file (InvalidInput naming where the path came from otherwise).
// Errors are InvalidInput.
Result<AwsConfig> ResolveAwsConfig(const Environment& env, const AwsOverrides& overrides = {});

// The environment's value of `name`, or "".
std::string EnvValue(const Environment& env, const std::string& name);

}  // namespace sqs2pg::aws
