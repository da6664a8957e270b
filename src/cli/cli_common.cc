#include "cli/cli_common.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <openssl/crypto.h>
#include <stdlib.h>

#include <cstdlib>
#include <cstring>
#include <iostream>

#include "aws/aws_config.h"
#include "aws/credential_cache.h"
#include "aws/credential_provider.h"
#include "cli/options.h"
#include "common/log.h"
#include "source/sqs/sqs_client.h"
#include "source/sqs/sqs_wire.h"

namespace sqs2pg::cli {

void Complain(std::string_view message) {
  if (log::CurrentFormat() == log::Format::kJson) {
    log::Error({}, "{}", message);
  } else {
    std::cerr << "sqs2pg: " << message << "\n";
  }
}

int Fail(const Status& status) {
  Complain(status.message());
  switch (status.code()) {
    case Status::Code::kInvalidInput:
    case Status::Code::kNotFound:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

void AddQueueOptions(CLI::App& app, QueueOptions& options) {
  AddOption(app, "queue-url", options.queue_url);
  AddOption(app, "queue", options.queue_name);
  AddOption(app, "endpoint-url", options.endpoint_url);
  AddOption(app, "region", options.region);
  AddOption(app, "ca-file", options.ca_file);
  AddOption(app, "sqs-protocol", options.sqs_protocol)->check(CLI::IsMember({"json", "query", "auto"}));
}

namespace {

// SQS2PG_CREDENTIAL_REFRESH_MARGIN_SECONDS (undocumented, for tests): refresh temporary
// credentials this long before they expire instead of five minutes.
aws::RefreshOptions RefreshOptionsFromEnvironment() {
  aws::RefreshOptions options;
  if (const char* margin = std::getenv("SQS2PG_CREDENTIAL_REFRESH_MARGIN_SECONDS"); margin && *margin) {
    options.margin = std::chrono::seconds(std::atoi(margin));
  }
  return options;
}

}  // namespace

Result<sqs::ClientConfig> MakeClientConfig(const QueueOptions& options) {
  aws::AwsOverrides overrides;
  if (!options.region.empty()) overrides.region = options.region;
  if (!options.endpoint_url.empty()) overrides.endpoint_url = options.endpoint_url;
  if (!options.ca_file.empty()) overrides.ca_file = options.ca_file;
  aws::Environment env = aws::ProcessEnvironment();
  ASSIGN_OR_RETURN(aws::AwsConfig aws_config, aws::ResolveAwsConfig(env, overrides));
  aws::ProviderSettings settings;
  settings.region = aws_config.region;
  ASSIGN_OR_RETURN(aws::ResolvedCredentials resolved,
                   aws::ResolveCredentials(aws::DefaultProviderChain(env, aws_config, settings)));
  sqs::ClientConfig config;
  config.endpoint_url = aws_config.endpoint_url;
  config.region = aws_config.region;
  config.ca_file = aws_config.ca_file;
  ASSIGN_OR_RETURN(config.protocol, sqs::ParseSqsProtocol(options.sqs_protocol));
  config.credential_cache = aws::CredentialCache::Create(
      std::move(resolved.provider), std::move(resolved.first), RefreshOptionsFromEnvironment());
  // Once, at start: which source, never the secret. Temporary credentials also say until when.
  std::string until;
  if (auto expiration = config.credential_cache->expiration()) {
    until = fmt::format(" (temporary, expire {:%Y-%m-%dT%H:%M:%SZ})",
                        std::chrono::time_point_cast<std::chrono::seconds>(*expiration));
  }
  log::Info({{"credential_source", config.credential_cache->source()}}, "AWS credentials from {}{}",
            config.credential_cache->source(), until);
  return config;
}

Result<std::unique_ptr<sqs::SqsClient>> MakeSqsClient(const QueueOptions& options) {
  ASSIGN_OR_RETURN(sqs::ClientConfig config, MakeClientConfig(options));
  return sqs::SqsClient::Create(std::move(config));
}

Result<std::string> ResolveQueueUrl(sqs::SqsClient& client, const QueueOptions& options) {
  if (!options.queue_url.empty()) return options.queue_url;
  return client.GetQueueUrl(options.queue_name);
}

// Takes SQS2PG_KEYS out of the environment: the value is copied, its bytes in the environment
// block wiped (which /proc/<pid>/environ shows) and the variable unset, so no child process (a
// libpq or curl helper, a shell) inherits the keys. Empty if it was not set.
std::string TakeKeysFromEnvironment() {
  char* value = std::getenv("SQS2PG_KEYS");
  if (value == nullptr) return "";
  std::string keys(value);
  OPENSSL_cleanse(value, std::strlen(value));
  unsetenv("SQS2PG_KEYS");
  return keys;
}

Result<transform::Keyring> LoadKeyring(const std::string& key_file_flag) {
  std::string keys = TakeKeysFromEnvironment();
  struct WipeOnExit {
    std::string& s;
    ~WipeOnExit() {
      if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
    }
  } wipe{keys};
  if (!key_file_flag.empty()) return transform::Keyring::LoadFile(key_file_flag);
  if (const char* path = std::getenv("SQS2PG_KEY_FILE"); path && *path)
    return transform::Keyring::LoadFile(path);
  if (!keys.empty()) return transform::Keyring::FromEnvironmentValue(keys, "SQS2PG_KEYS");
  return Status::InvalidInput(
      "no masking key: pass --key-file PATH or set SQS2PG_KEY_FILE (make a key with: sqs2pg keygen --out "
      "PATH)");
}

void AddKeyFileOption(CLI::App& app, std::string& key_file) { AddOption(app, "key-file", key_file); }

void AddMaskModeOptions(CLI::App& app, MaskModeOptions& options) {
  AddOption(app, "ip-mask", options.ip_mask)
      ->check(CLI::IsMember({"siv", "ipcrypt-deterministic", "ipcrypt-pfx", "cryptopan", "hmac"}));
  AddOption(app, "device-id-mask", options.device_id_mask)->check(CLI::IsMember({"siv", "hmac"}));
}

transform::MaskerOptions ToMaskerOptions(const MaskModeOptions& options) {
  transform::MaskerOptions out;
  if (!options.ip_mask.empty()) out.ip_mode = transform::ParseMode(options.ip_mask);
  if (!options.device_id_mask.empty()) out.device_id_mode = transform::ParseMode(options.device_id_mask);
  return out;
}

Result<transform::Masker> LoadMasker(const std::string& key_file_flag, const MaskModeOptions& modes) {
  ASSIGN_OR_RETURN(transform::Keyring keyring, LoadKeyring(key_file_flag));
  return transform::Masker::Create(keyring, ToMaskerOptions(modes));
}

}  // namespace sqs2pg::cli
