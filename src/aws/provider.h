#pragma once
// What a credential provider is: the interface every provider implements, what it hands out, and
// the settings the providers share. The chain (credential_provider.h) and the providers built on
// STS (sts.h) both include this header and not each other's, so the dependency runs one way:
// credential_provider -> sts -> provider. Credentials never appear in a Status message or a log line.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "aws/credentials.h"
#include "common/result.h"

namespace sqs2pg::aws {

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

// "2024-05-01T12:00:00Z", with optional fractional seconds and a Z or ±hh:mm offset.
std::optional<std::chrono::system_clock::time_point> ParseIso8601(std::string_view text);

}  // namespace sqs2pg::aws
