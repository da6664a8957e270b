#include "aws/aws_config.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <utility>

extern char** environ;

namespace sqs2pg::aws {
namespace {

// section -> key -> value, keys lower-cased.
using Ini = std::map<std::string, IniSection>;

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

const IniSection* Section(const std::map<std::string, IniSection>& ini, const std::string& name) {
  auto it = ini.find(name);
  return it == ini.end() ? nullptr : &it->second;
}

bool IsRegionName(std::string_view region) {
  return !region.empty() && std::all_of(region.begin(), region.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

Result<std::string> ResolveRegion(const Environment& env, const AwsOverrides& overrides,
                                  const AwsFiles& files, const std::string& profile) {
  std::string region = overrides.region.value_or("");
  if (region.empty()) region = FirstSet(env, {"AWS_REGION", "AWS_DEFAULT_REGION"});
  if (region.empty()) region = files.Setting(profile, "region");
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
Result<std::string> ResolveCaFile(const Environment& env, const AwsOverrides& overrides,
                                  const AwsFiles& files, const std::string& profile) {
  std::string path = overrides.ca_file.value_or("");
  std::string origin = "--ca-file";
  if (path.empty()) {
    path = Get(env, "AWS_CA_BUNDLE");
    origin = "AWS_CA_BUNDLE";
  }
  if (path.empty()) {
    path = files.Setting(profile, "ca_bundle");
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

const IniSection* AwsFiles::CredentialsSection(const std::string& profile) const {
  return Section(credentials, profile);
}

const IniSection* AwsFiles::ConfigSection(const std::string& profile) const {
  const IniSection* section = Section(config, "profile " + profile);
  if (section == nullptr && profile == "default") section = Section(config, "default");
  return section;
}

std::string AwsFiles::Setting(const std::string& profile, const std::string& key) const {
  for (const IniSection* section : {CredentialsSection(profile), ConfigSection(profile)}) {
    if (section == nullptr) continue;
    auto it = section->find(key);
    if (it != section->end() && !it->second.empty()) return it->second;
  }
  return "";
}

bool AwsFiles::HasProfile(const std::string& profile) const {
  return CredentialsSection(profile) != nullptr || ConfigSection(profile) != nullptr;
}

std::string EnvValue(const Environment& env, const std::string& name) { return Get(env, name); }

Result<AwsConfig> ResolveAwsConfig(const Environment& env, const AwsOverrides& overrides) {
  AwsConfig config;
  config.profile = FirstSet(env, {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"});
  config.explicit_profile = !config.profile.empty();
  if (!config.explicit_profile) config.profile = "default";

  std::string credentials_path = FilePath(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
  std::string config_path = FilePath(env, "AWS_CONFIG_FILE", "config");
  ASSIGN_OR_RETURN(config.files.credentials, LoadIni(credentials_path));
  ASSIGN_OR_RETURN(config.files.config, LoadIni(config_path));
  config.files.credentials_path = Shown(credentials_path, "credentials");
  config.files.config_path = Shown(config_path, "config");

  ASSIGN_OR_RETURN(config.region, ResolveRegion(env, overrides, config.files, config.profile));
  ASSIGN_OR_RETURN(config.endpoint_url, ResolveEndpoint(env, overrides, config.region));
  ASSIGN_OR_RETURN(config.ca_file, ResolveCaFile(env, overrides, config.files, config.profile));
  return config;
}

}  // namespace sqs2pg::aws
