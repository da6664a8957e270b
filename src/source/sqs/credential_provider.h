#pragma once
// The AWS SDKs' default credential provider chain, as small providers walked in order:
//   1. environment      AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
//   2. web identity     AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE: STS AssumeRoleWithWebIdentity (EKS IRSA)
//   3. profile          AWS_PROFILE from the shared files: static keys, role_arn (+ source_profile,
//                       credential_source or web_identity_token_file), credential_process
//   4. container        AWS_CONTAINER_CREDENTIALS_{FULL,RELATIVE}_URI (ECS task roles, EKS Pod Identity)
//   5. EC2 metadata     IMDSv2 (token first), unless AWS_EC2_METADATA_DISABLED=true
// A provider returns nullopt when it is not configured (the chain goes on) and an error when it is
// configured but broken (the chain stops, so a typo never silently falls through to another identity).
// Credentials and tokens never appear in a Status message or a log line.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "source/sqs/aws_config.h"
#include "source/sqs/credentials.h"

namespace sqs2pg::sqs {

// Credentials as a provider hands them out.
struct LoadedCredentials {
  Credentials credentials;
  // When they stop working; nullopt for long-term keys.
  std::optional<std::chrono::system_clock::time_point> expiration;
};

class CredentialProvider {
 public:
  virtual ~CredentialProvider() = default;
  // nullopt: not configured here, try the next provider (why_not() says why). An error: configured,
  // but broken; Transient when another attempt may succeed (network, throttling).
  virtual Result<std::optional<LoadedCredentials>> Load() = 0;
  // Where credentials come from, safe to log: "environment", "profile dev (assume role ...)".
  virtual std::string Name() const = 0;
  // After Load() returned nullopt: why, e.g. "AWS_ACCESS_KEY_ID is not set".
  virtual std::string why_not() const { return "not configured"; }
};

// Endpoints and timing the providers use; the defaults are AWS's.
struct ProviderSettings {
  std::string region;  // for the regional STS endpoint and for signing AssumeRole
  // Link-local endpoints fail fast off EC2/ECS: an unroutable address would otherwise hang.
  std::chrono::milliseconds metadata_connect_timeout{1000};
  std::chrono::milliseconds metadata_timeout{3000};
  std::chrono::milliseconds sts_timeout{10000};
  std::chrono::seconds process_timeout{60};
};

// The providers, each on its own; the chain below uses them. `env` as from ProcessEnvironment().
std::unique_ptr<CredentialProvider> EnvironmentProvider(const Environment& env);
std::unique_ptr<CredentialProvider> StaticProvider(Credentials credentials, std::string name);
std::unique_ptr<CredentialProvider> WebIdentityProvider(const Environment& env,
                                                        const ProviderSettings& settings);
std::unique_ptr<CredentialProvider> ProfileProvider(const Environment& env, const AwsConfig& config,
                                                    const ProviderSettings& settings);
std::unique_ptr<CredentialProvider> ContainerProvider(const Environment& env,
                                                      const ProviderSettings& settings);
std::unique_ptr<CredentialProvider> InstanceMetadataProvider(const Environment& env,
                                                             const ProviderSettings& settings);

// The provider for credential_process: runs `command` with /bin/sh -c and reads its JSON
// {"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"} from stdout.
std::unique_ptr<CredentialProvider> ProcessProvider(std::string command, std::string name,
                                                    std::chrono::seconds timeout);

// The five providers above, in order.
std::vector<std::unique_ptr<CredentialProvider>> DefaultProviderChain(const Environment& env,
                                                                      const AwsConfig& config,
                                                                      const ProviderSettings& settings);

struct ResolvedCredentials {
  std::unique_ptr<CredentialProvider> provider;  // the one that answered; keep it to refresh
  LoadedCredentials first;
};

// Walks the chain to the first provider with credentials. None: InvalidInput listing what was
// tried and why each was skipped. A broken provider's error stops the walk, named.
Result<ResolvedCredentials> ResolveCredentials(std::vector<std::unique_ptr<CredentialProvider>> chain);

// "2024-05-01T12:00:00Z", with optional fractional seconds and a Z or ±hh:mm offset.
std::optional<std::chrono::system_clock::time_point> ParseIso8601(std::string_view text);

}  // namespace sqs2pg::sqs
