#pragma once
// AWS STS over the Query protocol: AssumeRole (SigV4-signed, service "sts") and
// AssumeRoleWithWebIdentity (unsigned: the web identity token is the proof), and the providers
// built on them.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "aws/aws_config.h"
#include "aws/provider.h"
#include "common/result.h"

namespace sqs2pg::aws {

// AWS_ENDPOINT_URL_STS > AWS_ENDPOINT_URL > the regional https://sts.<region>.amazonaws.com.
std::string StsEndpointUrl(const Environment& env, const std::string& region);

struct AssumeRoleParams {
  std::string role_arn;
  std::string session_name;             // "" picks "sqs2pg-<unix ms>"
  std::string external_id;              // "" for none
  std::optional<int> duration_seconds;  // nullopt: the role's default (one hour)
};

Result<LoadedCredentials> AssumeRole(const std::string& endpoint_url, const std::string& region,
                                     const Credentials& base, const AssumeRoleParams& params,
                                     std::chrono::milliseconds timeout);
Result<LoadedCredentials> AssumeRoleWithWebIdentity(const std::string& endpoint_url,
                                                    const AssumeRoleParams& params, const std::string& token,
                                                    std::chrono::milliseconds timeout);

// Who the credentials are (sts:GetCallerIdentity needs no permission): for `sqs2pg check`.
struct CallerIdentity {
  std::string account;
  std::string arn;
};
Result<CallerIdentity> GetCallerIdentity(const std::string& endpoint_url, const std::string& region,
                                         const Credentials& credentials, std::chrono::milliseconds timeout);

// The <Credentials> of an AssumeRole* response.
Result<LoadedCredentials> ParseStsCredentials(std::string_view xml, std::string_view action);

// Each Load() loads the base credentials and assumes the role with them.
// `origin` names the configuration in logs, e.g. "profile dev".
std::unique_ptr<CredentialProvider> AssumeRoleProvider(std::unique_ptr<CredentialProvider> base,
                                                       AssumeRoleParams params, std::string endpoint_url,
                                                       std::string region, std::string origin,
                                                       std::chrono::milliseconds timeout);
// AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA), the chain's second provider: nullopt
// when either is unset.
std::unique_ptr<CredentialProvider> WebIdentityProvider(const Environment& env,
                                                        const ProviderSettings& settings);
// Each Load() reads the token file again: EKS rotates it.
std::unique_ptr<CredentialProvider> WebIdentityTokenFileProvider(AssumeRoleParams params,
                                                                 std::string token_file,
                                                                 std::string endpoint_url, std::string origin,
                                                                 std::chrono::milliseconds timeout);

}  // namespace sqs2pg::aws
