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

#include "aws/aws_config.h"
#include "aws/credentials.h"
#include "aws/provider.h"
#include "common/result.h"

namespace sqs2pg::aws {

// The providers, each on its own; the chain below uses them. `env` as from ProcessEnvironment().
// The web identity provider is STS's: WebIdentityProvider() in sts.h.
std::unique_ptr<CredentialProvider> EnvironmentProvider(const Environment& env);
std::unique_ptr<CredentialProvider> StaticProvider(Credentials credentials, std::string name);
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

// The five providers in order: environment, web identity (sts.h), profile, container, EC2 metadata.
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

}  // namespace sqs2pg::aws
