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
// returns the exit code. A command-line error is printed with every argument that may hold a
// secret (a conninfo's password, a key's hex) left out: CLI11 would echo it.
int Main(App& app, int argc, const char* const* argv);

// A CLI11 error message with the arguments of argv that may hold a secret replaced, and for
// "arguments were not expected" only plain flag names shown.
std::string SanitizedParseError(const CLI::ParseError& e, int argc, const char* const* argv);

// Makes this process's memory stay out of core dumps (and out of reach of ptrace by other
// processes of its user): keys and plaintext ip/device_id live in it. Call first thing in main.
void HardenProcess();

// Runs body; an exception that escapes it ends the process with kExitSoftware (70) and a generic
// message. Its text is not printed: it may quote data (a value, a conninfo), and an uncaught
// exception would abort() with the keys and plaintext in memory.
inline constexpr int kExitSoftware = 70;
int GuardedMain(int (*body)(int, const char* const*), int argc, const char* const* argv) noexcept;

}  // namespace sqs2pg::cli
