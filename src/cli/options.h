#pragma once
// The one description of every option: its flag, TOML key, environment variables, unit, default
// and help. CLI11 (AddOption), the TOML reader and the environment layer (config.cc), `sqs2pg
// config` and the README's table (`sqs2pg config --markdown`) are all built from kOptions, so a
// name or a default cannot drift between them. A unit test fails on an option CLI11 knows that is
// not listed here, and on one listed here that no subcommand binds.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sqs2pg::cli {

enum class Kind : std::uint8_t { kString, kInteger, kBool };
enum class Unit : std::uint8_t { kNone, kSeconds, kMilliseconds, kBytes, kMessages, kCount, kBits };
// How `sqs2pg config` shows a value: as is, the password of a conninfo/URL hidden, or not at all.
enum class Secret : std::uint8_t { kNo, kConninfoPassword, kWhole };

struct OptionSpec {
  std::string_view name;        // the flag without "--", and the key in the file
  std::string_view value_name;  // in --help and the README: "N", "PATH"; "" for a switch
  Kind kind;
  Unit unit;
  std::string_view sections;  // where it is bound, by file table: "" (global), "run" (run and check), ...
  std::string_view env;       // environment variables, space-separated, the first set wins; "" none
  std::string_view default_value;  // the literal default, as it would be written in the file; "" none
  std::string_view default_note;   // when there is no literal default, what happens instead
  std::string_view help;
  Secret secret = Secret::kNo;
  bool required = false;  // checked after all layers, so a file or variable can supply it
  bool hidden = false;    // not in --help or the README (it loses data: for benchmarks only)
};

// Every option, in the README's order.
std::span<const OptionSpec> AllOptions();
// The spec named `name`; a name that is not listed is a programming error (it aborts).
const OptionSpec& Spec(std::string_view name);
// The file table a subcommand reads: `check` reads [run]; the others their own name.
std::string_view FileSection(std::string_view subcommand);
// Whether the spec is bound in `section` ("" for the global options).
bool InSection(const OptionSpec& spec, std::string_view section);
// The environment variables of a spec, in order.
std::vector<std::string> EnvNames(const OptionSpec& spec);
std::string_view UnitName(Unit unit);

// Adds the option `name` to cmd with the spec's help and value name: a flag for a bool.
template <typename T>
CLI::Option* AddOption(CLI::App& cmd, std::string_view name, T& variable) {
  const OptionSpec& spec = Spec(name);
  std::string flag = "--" + std::string(spec.name);
  std::string help(spec.help);
  CLI::Option* option;
  if constexpr (std::is_same_v<T, bool>) {
    option = cmd.add_flag(flag, variable, help);
  } else {
    option = cmd.add_option(flag, variable, help);
    if (!spec.value_name.empty()) option->type_name(std::string(spec.value_name));
    if (!spec.default_value.empty()) option->default_str(std::string(spec.default_value));
  }
  if (spec.hidden) option->group("");
  return option;
}

}  // namespace sqs2pg::cli
