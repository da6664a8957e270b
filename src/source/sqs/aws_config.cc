#include "source/sqs/aws_config.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <utility>

extern char** environ;

namespace sqs2pg::sqs {
namespace {

// section -> key -> value, keys lower-cased.
using Ini = std::map<std::string, std::map<std::string, std::string>>;

std::string_view Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The subset of the AWS INI dialect that static keys and region need. Indented lines are nested
// settings (e.g. "s3 =" blocks) and are skipped rather than misread as top-level keys.
Ini ParseIni(std::istream& in) {
  Ini ini;
  std::string section;
  bool in_section = false;
  for (std::string raw; std::getline(in, raw);) {
    if (!raw.empty() && (raw[0] == ' ' || raw[0] == '\t')) continue;
    std::string_view line = Trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      size_t close = line.find(']');
      in_section = close != std::string_view::npos;
      if (in_section) section = std::string(Trim(line.substr(1, close - 1)));
      continue;
    }
    size_t eq = line.find('=');
    if (!in_section || eq == std::string_view::npos) continue;
    ini[section][Lower(Trim(line.substr(0, eq)))] = std::string(Trim(line.substr(eq + 1)));
  }
  return ini;
}

std::string Get(const Environment& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

std::string FirstSet(const Environment& env, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    std::string value = Get(env, name);
    if (!value.empty()) return value;
  }
  return "";
}

// Empty when neither the variable nor HOME says where the file is.
std::string FilePath(const Environment& env, const char* variable, const char* default_name) {
  std::string path = Get(env, variable);
  std::string home = Get(env, "HOME");
  if (path.empty()) return home.empty() ? "" : home + "/.aws/" + default_name;
  if (path.starts_with("~/") && !home.empty()) return home + path.substr(1);
  return path;
}

// For messages: where the file would be.
std::string Shown(const std::string& path, const char* default_name) {
  return path.empty() ? std::string("~/.aws/") + default_name + " (HOME is not set)" : path;
}

// A missing file is an empty one, as for the AWS CLI.
Result<Ini> LoadIni(const std::string& path) {
  if (path.empty() || !std::filesystem::exists(path)) return Ini{};
  std::ifstream in(path);
  if (!in) return Status::InvalidInput("cannot read AWS file " + path);
  return ParseIni(in);
}

struct Files {
  std::string credentials_path, config_path;
  Ini credentials, config;
};

const std::map<std::string, std::string>* Section(const Ini& ini, const std::string& name) {
  auto it = ini.find(name);
  return it == ini.end() ? nullptr : &it->second;
}

// In the config file the default profile is [default]; every other one is [profile name].
const std::map<std::string, std::string>* ConfigSection(const Files& files, const std::string& profile) {
  const auto* section = Section(files.config, "profile " + profile);
  if (section == nullptr && profile == "default") section = Section(files.config, "default");
  return section;
}

std::string Value(const std::map<std::string, std::string>* section, const std::string& key) {
  if (section == nullptr) return "";
  auto it = section->find(key);
  return it == section->end() ? "" : it->second;
}

Result<Credentials> CredentialsFromEnvironment(const Environment& env) {
  Credentials c{Get(env, "AWS_ACCESS_KEY_ID"), Get(env, "AWS_SECRET_ACCESS_KEY"),
                Get(env, "AWS_SESSION_TOKEN")};
  if (c.access_key_id.empty() != c.secret_access_key.empty()) {
    return Status::InvalidInput(c.access_key_id.empty()
                                    ? "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"
                                    : "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
  }
  return c;
}

Status UnsupportedProfileError(const std::string& profile,
                               const std::map<std::string, std::string>* section) {
  static constexpr std::array<const char*, 5> kUnsupported = {"role_arn", "credential_process", "sso_session",
                                                              "sso_start_url", "web_identity_token_file"};
  for (const char* key : kUnsupported) {
    if (!Value(section, key).empty()) {
      return Status::InvalidInput("AWS profile '" + profile + "' uses " + key +
                                  ", which sqs2pg does not support; export temporary credentials as "
                                  "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN");
    }
  }
  return Status::Ok();
}

// Static keys from one section; nullopt when the section holds none.
Result<std::optional<Credentials>> KeysIn(const std::map<std::string, std::string>* section,
                                          const std::string& profile, const std::string& path) {
  Credentials c{Value(section, "aws_access_key_id"), Value(section, "aws_secret_access_key"),
                Value(section, "aws_session_token")};
  if (c.access_key_id.empty() && c.secret_access_key.empty()) return std::optional<Credentials>();
  if (c.access_key_id.empty() || c.secret_access_key.empty()) {
    return Status::InvalidInput("AWS profile '" + profile + "' in " + path +
                                " needs both aws_access_key_id and " + "aws_secret_access_key");
  }
  return std::optional<Credentials>(std::move(c));
}

Result<Credentials> CredentialsFromProfile(const Files& files, const std::string& profile,
                                           bool explicit_profile, std::string& source) {
  const auto* cred_section = Section(files.credentials, profile);
  const auto* config_section = ConfigSection(files, profile);
  ASSIGN_OR_RETURN(std::optional<Credentials> from_credentials,
                   KeysIn(cred_section, profile, files.credentials_path));
  if (from_credentials) {
    source = "profile " + profile + " (" + files.credentials_path + ")";
    return *std::move(from_credentials);
  }
  ASSIGN_OR_RETURN(std::optional<Credentials> from_config,
                   KeysIn(config_section, profile, files.config_path));
  if (from_config) {
    source = "profile " + profile + " (" + files.config_path + ")";
    return *std::move(from_config);
  }
  RETURN_IF_ERROR(UnsupportedProfileError(profile, config_section));
  RETURN_IF_ERROR(UnsupportedProfileError(profile, cred_section));
  if (explicit_profile && cred_section == nullptr && config_section == nullptr) {
    return Status::InvalidInput("AWS profile '" + profile + "' not found in " + files.credentials_path +
                                " or " + files.config_path);
  }
  return Status::InvalidInput(
      "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile '" + profile +
      "' aws_access_key_id and aws_secret_access_key in " + files.credentials_path);
}

bool IsRegionName(std::string_view region) {
  return !region.empty() && std::all_of(region.begin(), region.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

Result<std::string> ResolveRegion(const Environment& env, const AwsOverrides& overrides, const Files& files,
                                  const std::string& profile) {
  std::string region = overrides.region.value_or("");
  if (region.empty()) region = FirstSet(env, {"AWS_REGION", "AWS_DEFAULT_REGION"});
  if (region.empty()) region = Value(ConfigSection(files, profile), "region");
  if (region.empty()) return Status::InvalidInput("no AWS region: pass --region or set AWS_REGION");
  if (!IsRegionName(region)) return Status::InvalidInput("'" + region + "' is not an AWS region name");
  return region;
}

Result<std::string> ResolveEndpoint(const Environment& env, const AwsOverrides& overrides,
                                    const std::string& region) {
  std::string url = overrides.endpoint_url.value_or("");
  if (url.empty()) url = FirstSet(env, {"AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"});
  if (url.empty()) return "https://sqs." + region + ".amazonaws.com";
  if (!url.starts_with("http://") && !url.starts_with("https://")) {
    return Status::InvalidInput("SQS endpoint URL '" + url + "' must start with http:// or https://");
  }
  while (url.ends_with('/')) url.pop_back();
  return url;
}

// A bad path is a configuration error now, not a TLS failure on the first request.
Result<std::string> ResolveCaFile(const Environment& env, const AwsOverrides& overrides, const Files& files,
                                  const std::string& profile) {
  std::string path = overrides.ca_file.value_or("");
  std::string origin = "--ca-file";
  if (path.empty()) {
    path = Get(env, "AWS_CA_BUNDLE");
    origin = "AWS_CA_BUNDLE";
  }
  if (path.empty()) {
    path = Value(ConfigSection(files, profile), "ca_bundle");
    origin = "ca_bundle of AWS profile '" + profile + "' in " + files.config_path;
  }
  if (path.empty()) return std::string();
  std::string home = Get(env, "HOME");
  if (path.starts_with("~/") && !home.empty()) path = home + path.substr(1);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::InvalidInput("CA file " + path + " (from " + origin + ") " +
                                (ec ? "cannot be read: " + ec.message() : "is not a file"));
  }
  if (!std::ifstream(path))
    return Status::InvalidInput("CA file " + path + " (from " + origin + ") cannot be read");
  return path;
}

}  // namespace

Environment ProcessEnvironment() {
  Environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    std::string name(entry.substr(0, eq));
    if (name.starts_with("AWS_") || name == "HOME") env.emplace(std::move(name), entry.substr(eq + 1));
  }
  return env;
}

Result<AwsConfig> ResolveAwsConfig(const Environment& env, const AwsOverrides& overrides) {
  std::string profile = FirstSet(env, {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"});
  bool explicit_profile = !profile.empty();
  if (!explicit_profile) profile = "default";

  Files files;
  std::string credentials_path = FilePath(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
  std::string config_path = FilePath(env, "AWS_CONFIG_FILE", "config");
  ASSIGN_OR_RETURN(files.credentials, LoadIni(credentials_path));
  ASSIGN_OR_RETURN(files.config, LoadIni(config_path));
  files.credentials_path = Shown(credentials_path, "credentials");
  files.config_path = Shown(config_path, "config");

  AwsConfig config;
  ASSIGN_OR_RETURN(config.region, ResolveRegion(env, overrides, files, profile));
  ASSIGN_OR_RETURN(config.endpoint_url, ResolveEndpoint(env, overrides, config.region));
  ASSIGN_OR_RETURN(config.ca_file, ResolveCaFile(env, overrides, files, profile));
  ASSIGN_OR_RETURN(config.credentials, CredentialsFromEnvironment(env));
  if (!config.credentials.access_key_id.empty()) {
    config.credentials_source = "environment";
    return config;
  }
  ASSIGN_OR_RETURN(config.credentials,
                   CredentialsFromProfile(files, profile, explicit_profile, config.credentials_source));
  return config;
}

}  // namespace sqs2pg::sqs
