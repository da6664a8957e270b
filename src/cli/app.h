#pragma once
// The whole command line: the global options, every subcommand, and `config`, whose own
// subcommands repeat the others' options so that `sqs2pg config run ...` accepts exactly what
// `sqs2pg run ...` does. main() is Main(); the tests build the same App.

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/config.h"

namespace sqs2pg::cli {

struct App {
  App();
  CLI::App cli;
  std::string config_file;
  std::string log_level = "info";
  std::string log_format = "text";
  std::vector<Command> commands;
  CLI::App* views = nullptr;           // `config`
  std::vector<Command> view_commands;  // never run: they own the variables the views' options write
  bool markdown = false;
  Provenance provenance;
};

// Parses argv, applies the configuration layers, sets up logging and runs the subcommand given;
// returns the exit code.
int Main(App& app, int argc, const char* const* argv);

}  // namespace sqs2pg::cli
