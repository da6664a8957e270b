#include "aws/credential_provider.h"

#include <charconv>
#include <ctime>
#include <set>
#include <utility>

#include "aws/sts.h"

namespace sqs2pg::aws {
namespace {

class EnvProvider : public CredentialProvider {
 public:
  explicit EnvProvider(const Environment& env)
      : id_(EnvValue(env, "AWS_ACCESS_KEY_ID")),
        secret_(EnvValue(env, "AWS_SECRET_ACCESS_KEY")),
        token_(EnvValue(env, "AWS_SESSION_TOKEN")) {}

  Result<std::optional<LoadedCredentials>> Load() override {
    if (id_.empty() && secret_.empty()) return std::optional<LoadedCredentials>();
    if (id_.empty() || secret_.empty()) {
      return Status::InvalidInput(id_.empty() ? "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"
                                              : "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    }
    return std::optional<LoadedCredentials>(LoadedCredentials{{id_, secret_, token_}, std::nullopt});
  }
  std::string Name() const override { return "environment"; }
  std::string why_not() const override { return "AWS_ACCESS_KEY_ID is not set"; }

 private:
  std::string id_, secret_, token_;
};

class FixedProvider : public CredentialProvider {
 public:
  FixedProvider(Credentials credentials, std::string name)
      : credentials_(std::move(credentials)), name_(std::move(name)) {}
  Result<std::optional<LoadedCredentials>> Load() override {
    return std::optional<LoadedCredentials>(LoadedCredentials{credentials_, std::nullopt});
  }
  std::string Name() const override { return name_; }

 private:
  Credentials credentials_;
  std::string name_;
};

// A provider that is configured but cannot work: every Load() is the same error. Lets the chain
// be built without I/O and still report a broken profile when it is that profile's turn.
class BrokenProvider : public CredentialProvider {
 public:
  BrokenProvider(Status error, std::string name) : error_(std::move(error)), name_(std::move(name)) {}
  Result<std::optional<LoadedCredentials>> Load() override { return error_; }
  std::string Name() const override { return name_; }

 private:
  Status error_;
  std::string name_;
};

class AbsentProvider : public CredentialProvider {
 public:
  AbsentProvider(std::string name, std::string why) : name_(std::move(name)), why_(std::move(why)) {}
  Result<std::optional<LoadedCredentials>> Load() override { return std::optional<LoadedCredentials>(); }
  std::string Name() const override { return name_; }
  std::string why_not() const override { return why_; }

 private:
  std::string name_, why_;
};

constexpr int kMaxRoleChain = 5;

// The provider for one profile's settings; `visited` guards source_profile loops.
std::unique_ptr<CredentialProvider> ProfileChain(const Environment& env, const AwsConfig& config,
                                                 const ProviderSettings& settings, const std::string& profile,
                                                 std::set<std::string>& visited, bool must_exist) {
  const AwsFiles& files = config.files;
  const std::string where = files.credentials_path + " or " + files.config_path;
  const std::string name = "profile " + profile;
  auto broken = [&](std::string message) {
    return std::make_unique<BrokenProvider>(Status::InvalidInput("AWS profile '" + profile + "' " + message),
                                            name);
  };
  if (!files.HasProfile(profile)) {
    if (must_exist) return broken("not found in " + where);
    return std::make_unique<AbsentProvider>(name, "no [" + profile + "] section in " + where);
  }
  if (!visited.insert(profile).second || static_cast<int>(visited.size()) > kMaxRoleChain) {
    return broken("has a source_profile chain that loops or is longer than " + std::to_string(kMaxRoleChain));
  }
  auto setting = [&](const char* key) { return files.Setting(profile, key); };

  const std::string role_arn = setting("role_arn");
  if (!role_arn.empty()) {
    AssumeRoleParams params;
    params.role_arn = role_arn;
    params.session_name = setting("role_session_name");
    params.external_id = setting("external_id");
    if (std::string d = setting("duration_seconds"); !d.empty()) {
      int seconds = 0;
      auto [end, ec] = std::from_chars(d.data(), d.data() + d.size(), seconds);
      if (ec != std::errc() || end != d.data() + d.size() || seconds < 900 || seconds > 43200) {
        return broken("has duration_seconds; it must be 900 to 43200");
      }
      params.duration_seconds = seconds;
    }
    if (!setting("mfa_serial").empty()) {
      return broken(
          "has role_arn with mfa_serial, which needs an MFA code at each refresh; "
          "use a role without MFA");
    }
    const std::string sts = StsEndpointUrl(env, settings.region);
    if (std::string token_file = setting("web_identity_token_file"); !token_file.empty()) {
      return WebIdentityTokenFileProvider(std::move(params), token_file, sts, name, settings.sts_timeout);
    }
    std::unique_ptr<CredentialProvider> base;
    const std::string source_profile = setting("source_profile");
    const std::string credential_source = setting("credential_source");
    if (!source_profile.empty() && !credential_source.empty()) {
      return broken("has both source_profile and credential_source; role_arn takes one");
    }
    if (!source_profile.empty()) {
      // A source profile's own static keys win over its role_arn, as in the AWS CLI, so a
      // profile can name itself as the source of the keys that assume its role.
      std::string id = files.Setting(source_profile, "aws_access_key_id");
      std::string secret = files.Setting(source_profile, "aws_secret_access_key");
      if (!id.empty() && !secret.empty()) {
        base = StaticProvider({id, secret, files.Setting(source_profile, "aws_session_token")},
                              "profile " + source_profile);
      } else if (source_profile == profile) {
        return broken("names itself as source_profile but has no aws_access_key_id");
      } else {
        base = ProfileChain(env, config, settings, source_profile, visited, /*must_exist=*/true);
      }
    } else if (credential_source == "Environment") {
      base = EnvironmentProvider(env);
    } else if (credential_source == "EcsContainer") {
      base = ContainerProvider(env, settings);
    } else if (credential_source == "Ec2InstanceMetadata") {
      base = InstanceMetadataProvider(env, settings);
    } else if (!credential_source.empty()) {
      return broken("has credential_source '" + credential_source +
                    "' is not one of Environment, EcsContainer, Ec2InstanceMetadata");
    } else {
      return broken("has role_arn without source_profile, credential_source or web_identity_token_file");
    }
    return AssumeRoleProvider(std::move(base), std::move(params), sts, settings.region, name,
                              settings.sts_timeout);
  }

  for (const auto* section : {files.CredentialsSection(profile), files.ConfigSection(profile)}) {
    if (section == nullptr) continue;
    auto get = [section](const char* key) {
      auto it = section->find(key);
      return it == section->end() ? std::string() : it->second;
    };
    Credentials c{get("aws_access_key_id"), get("aws_secret_access_key"), get("aws_session_token")};
    const std::string& path =
        section == files.CredentialsSection(profile) ? files.credentials_path : files.config_path;
    if (c.access_key_id.empty() && c.secret_access_key.empty()) continue;
    if (c.access_key_id.empty() || c.secret_access_key.empty()) {
      return broken("in " + path + " needs both aws_access_key_id and aws_secret_access_key");
    }
    return StaticProvider(std::move(c), name + " (" + path + ")");
  }
  if (std::string command = setting("credential_process"); !command.empty()) {
    return ProcessProvider(command, name + " (credential_process)", settings.process_timeout);
  }
  for (const char* key : {"sso_session", "sso_start_url"}) {
    if (!setting(key).empty()) {
      return broken(std::string("uses ") + key +
                    ", which sqs2pg does not support; run `aws sso login` and `aws configure "
                    "export-credentials --format env`, or use a role or credential_process");
    }
  }
  if (must_exist) return broken("has no credentials (no aws_access_key_id, role_arn or credential_process)");
  return std::make_unique<AbsentProvider>(
      name, "no aws_access_key_id, role_arn or credential_process in [" + profile + "] of " + where);
}

}  // namespace

std::unique_ptr<CredentialProvider> EnvironmentProvider(const Environment& env) {
  return std::make_unique<EnvProvider>(env);
}

std::unique_ptr<CredentialProvider> StaticProvider(Credentials credentials, std::string name) {
  return std::make_unique<FixedProvider>(std::move(credentials), std::move(name));
}

std::unique_ptr<CredentialProvider> ProfileProvider(const Environment& env, const AwsConfig& config,
                                                    const ProviderSettings& settings) {
  std::set<std::string> visited;
  return ProfileChain(env, config, settings, config.profile, visited, config.explicit_profile);
}

std::vector<std::unique_ptr<CredentialProvider>> DefaultProviderChain(const Environment& env,
                                                                      const AwsConfig& config,
                                                                      const ProviderSettings& settings) {
  std::vector<std::unique_ptr<CredentialProvider>> chain;
  chain.push_back(EnvironmentProvider(env));
  chain.push_back(WebIdentityProvider(env, settings));
  chain.push_back(ProfileProvider(env, config, settings));
  chain.push_back(ContainerProvider(env, settings));
  chain.push_back(InstanceMetadataProvider(env, settings));
  return chain;
}

Result<ResolvedCredentials> ResolveCredentials(std::vector<std::unique_ptr<CredentialProvider>> chain) {
  std::string tried;
  for (auto& provider : chain) {
    Result<std::optional<LoadedCredentials>> loaded = provider->Load();
    if (!loaded.ok()) return loaded.status().Annotate("AWS credentials from " + provider->Name());
    if (loaded->has_value()) return ResolvedCredentials{std::move(provider), std::move(**loaded)};
    tried += "\n  " + provider->Name() + ": " + provider->why_not();
  }
  return Status::InvalidInput(
      "no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
      "or run where a role is attached. Tried, in order:" +
      tried);
}

}  // namespace sqs2pg::aws
