#pragma once
// One function a subcommand: it adds the subcommand and its flags to the app, and returns the
// code to run once the command line has parsed (its result is the process exit code).

#include <CLI/CLI.hpp>

#include <functional>

namespace sqs2pg::cli {

struct Command {
  CLI::App* subcommand;
  std::function<int()> run;
};

Command AddRunCommand(CLI::App& app);
Command AddCheckCommand(CLI::App& app);
Command AddSendCommand(CLI::App& app);
Command AddKeygenCommand(CLI::App& app);
Command AddMaskCommand(CLI::App& app);
Command AddUnmaskCommand(CLI::App& app);
Command AddSchemaCommand(CLI::App& app);
Command AddRekeyCommand(CLI::App& app);
Command AddMaintainCommand(CLI::App& app);

}  // namespace sqs2pg::cli
