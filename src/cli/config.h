#pragma once
// The configuration layers: flags > environment variables > the TOML file (--config) > defaults.
// CLI11 parses the command line; ApplyLayers then fills every option the command line left unset
// from the environment, else from the file, through the option's own CLI11 checks, and remembers
// where each value came from for `sqs2pg config`.

#include <CLI/CLI.hpp>

#include <map>
#include <string>

#include "common/status.h"

namespace sqs2pg::cli {

struct Origin {
  enum class Layer { kDefault, kFlag, kEnv, kFile };
  Layer layer = Layer::kDefault;
  std::string where;  // the variable's name, or "file.toml:12"
};

struct Provenance {
  std::string config_file;  // "" when none was given
  Origin config_file_origin;
  std::map<const CLI::Option*, Origin> origins;
};

// Fills the options of `root` (the global ones) and of its subcommands from the layers below the
// command line, after root.parse(). The file is applied to every subcommand, so a bad key or value
// anywhere in it is an error whichever subcommand runs; variables only to the subcommand that runs
// (all of `config`'s views when `config` is given without one). `views` is the subcommand whose own
// subcommands repeat the others' options (`config`). Errors are InvalidInput and name the key, the
// file and line, or the variable.
Status ApplyLayers(CLI::App& root, CLI::App* views, Provenance& provenance);

// `sqs2pg config`: the effective configuration of the view that was given (or of all), one line
// an option, TOML-shaped, each with where its value came from; secrets redacted.
std::string EffectiveConfig(CLI::App& root, CLI::App& views, const Provenance& provenance);

// The README's table of options (`sqs2pg config --markdown`).
std::string OptionsMarkdown();

}  // namespace sqs2pg::cli
