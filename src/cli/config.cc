#include "cli/config.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <toml++/toml.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>

#include "cli/options.h"
#include "common/json_writer.h"
#include "sink/postgres/postgres_sink.h"
#include "transform/keyring.h"
#include "transform/mapping/mapping.h"

namespace sqs2pg::cli {
namespace {

// The tables a file may have: one a subcommand (check reads [run]).
constexpr std::string_view kSections[] = {"run",    "send",   "keygen", "mask",
                                          "unmask", "schema", "rekey",  "maintain"};

bool IsSection(std::string_view name) {
  for (std::string_view s : kSections) {
    if (s == name) return true;
  }
  return false;
}

std::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date or time";
  }
}

std::string Where(const std::string& path, const toml::node& node) {
  return fmt::format("{}:{}", path, node.source().begin.line);
}

// "[run] batch-size" or "log-level" (top level).
std::string KeyName(std::string_view section, std::string_view key) {
  return section.empty() ? std::string(key) : fmt::format("[{}] {}", section, key);
}

// "[run], [send]": the tables an option may be set in.
std::string TablesOf(const OptionSpec& spec) {
  std::string tables;
  for (std::string_view section : kSections) {
    if (InSection(spec, section)) tables += (tables.empty() ? "" : ", ") + fmt::format("[{}]", section);
  }
  return tables;
}

// A key that is not an option: the closest one, if a likely slip (batch_size for batch-size).
std::string DidYouMean(std::string_view section, std::string_view key) {
  std::string dashed(key);
  for (char& c : dashed) {
    if (c == '_') c = '-';
  }
  for (const OptionSpec& spec : AllOptions()) {
    if (spec.name == dashed && spec.name != "config") {
      if (InSection(spec, section)) return fmt::format(" (did you mean {}?)", spec.name);
      return spec.sections.empty() ? fmt::format(" ({} is a top-level key)", spec.name)
                                   : fmt::format(" ({} belongs in {})", spec.name, TablesOf(spec));
    }
  }
  return "";
}

// Every key of the file names an option of its table, and every table a subcommand.
Status CheckKeys(const toml::table& top, const std::string& path) {
  for (const auto& [key, node] : top) {
    std::string_view name = key.str();
    if (node.is_table()) {
      if (!IsSection(name)) {
        return Status::InvalidInput(
            fmt::format("{}: unknown table [{}]; the tables are [run], [send], [keygen], "
                        "[mask], [unmask], [schema], [rekey] and [maintain]",
                        Where(path, node), name));
      }
      for (const auto& [inner, value] : *node.as_table()) {
        if (name == "run" && inner.str() == "mapping" && value.is_table()) continue;  // checked when loaded
        bool known = false;
        for (const OptionSpec& spec : AllOptions())
          known = known || (spec.name == inner.str() && InSection(spec, name));
        if (!known) {
          return Status::InvalidInput(fmt::format("{}: unknown key {}{}", Where(path, value),
                                                  KeyName(name, inner.str()), DidYouMean(name, inner.str())));
        }
      }
      continue;
    }
    if (name == "config") {
      return Status::InvalidInput(
          fmt::format("{}: config cannot be set in the config file itself", Where(path, node)));
    }
    bool known = false;
    for (const OptionSpec& spec : AllOptions()) known = known || (spec.name == name && spec.sections.empty());
    if (!known) {
      return Status::InvalidInput(
          fmt::format("{}: unknown key {}{}", Where(path, node), name, DidYouMean("", name)));
    }
  }
  return Status::Ok();
}

// The file's value as the text CLI11 would get on the command line, if it has the right type.
Result<std::string> FileValueText(const toml::node& node, const OptionSpec& spec) {
  switch (spec.kind) {
    case Kind::kString:
      if (auto s = node.value<std::string>(); s && node.is_string()) return *s;
      break;
    case Kind::kInteger:
      if (node.is_integer()) return std::to_string(*node.value<int64_t>());
      break;
    case Kind::kBool:
      if (node.is_boolean()) return std::string(*node.value<bool>() ? "true" : "false");
      break;
  }
  std::string_view wanted = spec.kind == Kind::kString    ? "a string"
                            : spec.kind == Kind::kInteger ? "an integer"
                                                          : "a boolean (true or false)";
  return Status::InvalidInput(fmt::format("expected {}, got {}", wanted, TypeName(node.type())));
}

// Gives the option one value and runs its CLI11 checks and callback, as the command line would.
Status SetValue(CLI::Option& option, const std::string& text) {
  try {
    option.add_result(text);
    option.run_callback();
  } catch (const CLI::Error& e) {
    return Status::InvalidInput(e.what());
  }
  return Status::Ok();
}

const char* EnvValue(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

struct Layering {
  const toml::table* file = nullptr;
  std::string path;
  Provenance& provenance;

  // One option of `cmd` (a subcommand, or root for the globals): the command line's value if it
  // had one, else the first variable set (when `use_env`), else the file's, else the default.
  Status Apply(CLI::App& cmd, const OptionSpec& spec, std::string_view section, bool use_env) {
    CLI::Option* option = cmd.get_option_no_throw("--" + std::string(spec.name));
    if (option == nullptr) return Status::Ok();  // the registry test names the mismatch
    Origin& origin = provenance.origins[option];
    if (option->count() > 0) {
      origin = {Origin::Layer::kFlag, ""};
      return Status::Ok();
    }
    if (use_env) {
      for (const std::string& var : EnvNames(spec)) {
        const char* value = EnvValue(var);
        if (value == nullptr) continue;
        origin = {Origin::Layer::kEnv, var};
        Status set = SetValue(*option, value).Annotate("environment variable " + var);
        // Key material: taken out of the environment once read, as SQS2PG_KEYS is, so no child
        // process inherits it and /proc/<pid>/environ no longer shows it.
        if (var == "SQS2PG_IMPORT_HEX") {
          OPENSSL_cleanse(const_cast<char*>(value), std::strlen(value));
          unsetenv(var.c_str());
        }
        return set;
      }
    }
    if (file == nullptr) return Status::Ok();
    // The keyring text in SQS2PG_KEYS is key-file's other environment layer: it beats the file's
    // key-file as any variable does (LoadKeyring reads it when key-file is unset).
    if (use_env && spec.name == "key-file" && EnvValue("SQS2PG_KEYS") != nullptr) {
      origin = {Origin::Layer::kEnv, "SQS2PG_KEYS"};
      return Status::Ok();
    }
    const toml::table* table = file;
    if (!section.empty()) table = (*file)[section].as_table();
    const toml::node* node = table ? table->get(spec.name) : nullptr;
    if (node == nullptr) return Status::Ok();
    origin = {Origin::Layer::kFile, Where(path, *node)};
    // [run.mapping]: the mapping inline, read by LoadMappingFile from "PATH#run.mapping".
    if (spec.name == "mapping" && section == "run" && node->is_table()) {
      return SetValue(*option, path + "#run.mapping").Annotate(origin.where);
    }
    std::string what = fmt::format("{}: {}", origin.where, KeyName(section, spec.name));
    Result<std::string> text = FileValueText(*node, spec);
    if (!text.ok()) return text.status().Annotate(what);
    return SetValue(*option, *text).Annotate(what);
  }
};

std::vector<CLI::App*> Subcommands(CLI::App& app) {
  return app.get_subcommands([](CLI::App*) { return true; });
}

}  // namespace

Status ApplyLayers(CLI::App& root, CLI::App* views, Provenance& provenance) {
  // --config first: it says where the file is.
  CLI::Option* config = root.get_option("--config");
  provenance.origins[config] = {};
  if (config->count() > 0) {
    provenance.config_file = config->as<std::string>();
    provenance.origins[config] = provenance.config_file_origin = {Origin::Layer::kFlag, ""};
  } else if (const char* env = EnvValue("SQS2PG_CONFIG")) {
    RETURN_IF_ERROR(SetValue(*config, env).Annotate("environment variable SQS2PG_CONFIG"));
    provenance.config_file = env;
    provenance.origins[config] = provenance.config_file_origin = {Origin::Layer::kEnv, "SQS2PG_CONFIG"};
  }
  std::optional<toml::table> file;
  if (!provenance.config_file.empty()) {
    try {
      file = toml::parse_file(provenance.config_file);
    } catch (const toml::parse_error& e) {
      const auto& begin = e.source().begin;
      if (begin.line == 0) {
        return Status::InvalidInput(
            fmt::format("config file {}: {}", provenance.config_file, e.description()));
      }
      return Status::InvalidInput(
          fmt::format("{}:{}:{}: {}", provenance.config_file, begin.line, begin.column, e.description()));
    }
    RETURN_IF_ERROR(CheckKeys(*file, provenance.config_file));
  }
  Layering layering{file ? &*file : nullptr, provenance.config_file, provenance};
  for (const OptionSpec& spec : AllOptions()) {
    if (spec.sections.empty() && spec.name != "config") RETURN_IF_ERROR(layering.Apply(root, spec, "", true));
  }
  // `config` alone shows every subcommand's view, so the variables apply to all of them.
  bool all_views = views != nullptr && views->parsed() && views->get_subcommands().empty();
  std::vector<CLI::App*> commands;
  for (CLI::App* sub : Subcommands(root)) {
    if (sub != views) commands.push_back(sub);
  }
  if (views != nullptr) {
    for (CLI::App* sub : Subcommands(*views)) commands.push_back(sub);
  }
  for (CLI::App* cmd : commands) {
    bool is_view = views != nullptr && cmd->get_parent() == views;
    bool use_env = cmd->parsed() || (is_view && all_views);
    std::string_view section = FileSection(cmd->get_name());
    for (const OptionSpec& spec : AllOptions()) {
      if (InSection(spec, section)) RETURN_IF_ERROR(layering.Apply(*cmd, spec, section, use_env));
    }
    // Required options are checked once every layer had its say; a view only shows them.
    if (!cmd->parsed() || is_view) continue;
    for (const OptionSpec& spec : AllOptions()) {
      if (!spec.required || !InSection(spec, section)) continue;
      CLI::Option* option = cmd->get_option_no_throw("--" + std::string(spec.name));
      if (option != nullptr && option->count() == 0) {
        return Status::InvalidInput(fmt::format("{} needs --{} (or {}, or {} in the config file)",
                                                cmd->get_name(), spec.name, spec.env,
                                                KeyName(section, spec.name)));
      }
    }
  }
  return Status::Ok();
}

namespace {

std::string Quoted(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);  // a JSON string is also a TOML basic string
  return out;
}

std::string ValueText(const CLI::Option& option, const OptionSpec& spec) {
  if (spec.kind == Kind::kBool) return option.as<bool>() ? "true" : "false";
  std::string raw = option.results().empty() ? "" : option.results().back();
  if (spec.kind == Kind::kInteger) return raw;
  switch (spec.secret) {
    case Secret::kWhole:
      return "\"[redacted]\"";
    case Secret::kConninfoPassword:
      return Quoted(sink::RedactedConninfo(raw));
    case Secret::kNo:
      break;
  }
  return Quoted(raw);
}

std::string DefaultText(const OptionSpec& spec) {
  return spec.kind == Kind::kString ? Quoted(spec.default_value) : std::string(spec.default_value);
}

std::string OriginText(const Origin& origin) {
  switch (origin.layer) {
    case Origin::Layer::kFlag:
      return "flag";
    case Origin::Layer::kEnv:
      return "env " + origin.where;
    case Origin::Layer::kFile:
      return origin.where;
    case Origin::Layer::kDefault:
      break;
  }
  return "default";
}

void AppendLines(std::string& out, CLI::App& cmd, std::string_view section, const Provenance& provenance) {
  for (const OptionSpec& spec : AllOptions()) {
    if (!InSection(spec, section) || spec.name == "config") continue;
    const CLI::Option* option = cmd.get_option_no_throw("--" + std::string(spec.name));
    if (option == nullptr) continue;
    auto it = provenance.origins.find(option);
    Origin origin = it == provenance.origins.end() ? Origin{} : it->second;
    if (origin.layer != Origin::Layer::kDefault) {
      out += fmt::format("{} = {}  # {}\n", spec.name, ValueText(*option, spec), OriginText(origin));
    } else if (!spec.default_value.empty()) {
      out += fmt::format("{} = {}  # default\n", spec.name, DefaultText(spec));
    } else {
      out += fmt::format("# {} is not set: {}  # default\n", spec.name, spec.default_note);
    }
  }
}

// Variables read below sqs2pg's own options, by the AWS credential chain and libpq: shown when set,
// because they change what a run does, with the secret ones redacted.
struct ExternalVariable {
  const char* name;
  bool secret;
};
constexpr ExternalVariable kExternalVariables[] = {
    {"SQS2PG_KEYS", true},
    {"AWS_ACCESS_KEY_ID", false},
    {"AWS_SECRET_ACCESS_KEY", true},
    {"AWS_SESSION_TOKEN", true},
    {"AWS_PROFILE", false},
    {"AWS_CONFIG_FILE", false},
    {"AWS_SHARED_CREDENTIALS_FILE", false},
    {"AWS_ROLE_ARN", false},
    {"AWS_WEB_IDENTITY_TOKEN_FILE", false},
    {"AWS_ROLE_SESSION_NAME", false},
    {"AWS_ENDPOINT_URL_STS", false},
    {"AWS_CONTAINER_CREDENTIALS_FULL_URI", false},
    {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", false},
    {"AWS_CONTAINER_AUTHORIZATION_TOKEN", true},
    {"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", false},
    {"AWS_EC2_METADATA_DISABLED", false},
    {"AWS_EC2_METADATA_SERVICE_ENDPOINT", false},
    {"PGHOST", false},
    {"PGHOSTADDR", false},
    {"PGPORT", false},
    {"PGDATABASE", false},
    {"PGUSER", false},
    {"PGPASSWORD", true},
    {"PGPASSFILE", false},
    {"PGSERVICE", false},
    {"PGSSLMODE", false},
    {"PGSSLROOTCERT", false},
    {"PGCONNECT_TIMEOUT", false},
    {"PGOPTIONS", false},
};

// The mapping in effect, column by column, as comments: what each column is filled from.
void AppendMapping(std::string& out, CLI::App& cmd) {
  const CLI::Option* option = cmd.get_option_no_throw("--mapping");
  if (option == nullptr || option->results().empty() || option->results().back().empty()) {
    out += "# the mapping in effect: the built-in login table (user_id ... create_date, masked_ip_key_id)\n";
    return;
  }
  auto mapping = transform::mapping::LoadMappingFile(option->results().back());
  if (!mapping.ok()) {
    out += fmt::format("# the mapping does not load: {}\n", mapping.status().message());
    return;
  }
  using transform::mapping::Envelope;
  const char* envelopes[] = {"none", "sns", "eventbridge", "auto"};
  const char* unknown[] = {"ignore", "reject", "keep"};
  out += fmt::format("# the mapping in effect: table {}, envelope {}, unknown_fields {}\n",
                     mapping->table.empty() ? "(--table)" : mapping->table,
                     envelopes[static_cast<int>(mapping->envelope)],
                     unknown[static_cast<int>(mapping->unknown_fields)]);
  for (const transform::mapping::ColumnSpec& c : mapping->columns) {
    std::string mask;
    if (c.mask)
      mask = fmt::format(", masked {}", c.mask->mode ? transform::ModeName(*c.mask->mode) : "keyring");
    out += fmt::format("#   {} {} <- {}{}{}\n", c.name, transform::mapping::ColumnTypeName(c.type),
                       c.from.text.empty() ? "(the whole payload)" : c.from.text,
                       c.required ? ", required" : "", mask);
  }
}

}  // namespace

std::string EffectiveConfig(CLI::App& root, CLI::App& views, const Provenance& provenance) {
  std::string out = "# sqs2pg's effective configuration: each line says where its value came from\n";
  if (provenance.config_file.empty()) {
    out += "# no config file (--config PATH or SQS2PG_CONFIG)\n";
  } else {
    out += fmt::format("# config file {}  # {}\n", provenance.config_file,
                       OriginText(provenance.config_file_origin));
  }
  AppendLines(out, root, "", provenance);
  std::vector<CLI::App*> shown = views.get_subcommands();
  if (shown.empty()) shown = Subcommands(views);
  std::set<std::string_view> sections_done;
  for (CLI::App* cmd : shown) {
    std::string_view section = FileSection(cmd->get_name());
    if (!sections_done.insert(section).second) continue;
    out += fmt::format("\n[{}]\n", section);
    AppendLines(out, *cmd, section, provenance);
    if (section == "run" || section == "schema") AppendMapping(out, *cmd);
  }
  bool header = false;
  for (const ExternalVariable& v : kExternalVariables) {
    const char* value = EnvValue(v.name);
    if (value == nullptr) continue;
    if (!header)
      out += "\n# Also read from the environment (by the AWS credential chain, libpq, the keyring):\n";
    header = true;
    out += fmt::format("# {} = {}\n", v.name, v.secret ? "[redacted]" : Quoted(value));
  }
  return out;
}

std::string OptionsMarkdown() {
  std::string out =
      "| option | environment | file key | unit | default | meaning |\n"
      "|---|---|---|---|---|---|\n";
  for (const OptionSpec& spec : AllOptions()) {
    if (spec.hidden) continue;
    std::string flag = "`--" + std::string(spec.name);
    if (!spec.value_name.empty()) flag += " " + std::string(spec.value_name);
    flag += "`";
    std::string env;
    for (const std::string& var : EnvNames(spec)) env += (env.empty() ? "`" : ", `") + var + "`";
    std::string key;
    if (spec.name == "config") {
      key = "not in the file";
    } else if (spec.sections.empty()) {
      key = fmt::format("`{}` (top level)", spec.name);
    } else {
      key = fmt::format("`{}` in {}", spec.name, TablesOf(spec));
    }
    std::string def =
        spec.default_value.empty() ? std::string(spec.default_note) : fmt::format("`{}`", spec.default_value);
    std::string help(spec.help);
    for (size_t pos = 0; (pos = help.find('|', pos)) != std::string::npos; pos += 2)
      help.replace(pos, 1, "\\|");
    out += fmt::format("| {} | {} | {} | {} | {} | {} |\n", flag, env, key, UnitName(spec.unit), def, help);
  }
  return out;
}

}  // namespace sqs2pg::cli
