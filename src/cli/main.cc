// sqs2pg: moves user-login events from an SQS queue into PostgreSQL, masking ip and device_id.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <vector>

#include "cli/cli_common.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace sqs2pg::cli;
  // Logs go to stderr; stdout carries only results (rows of mask/unmask, run's summary line).
  spdlog::set_default_logger(spdlog::stderr_color_mt("sqs2pg"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  CLI::App app{"sqs2pg: SQS login events to PostgreSQL, with keyed PII masking"};
  app.require_subcommand(1);
  // Subcommands made after this pass the options they do not know up to app, so global options
  // work before and after the subcommand: `sqs2pg run --log-level debug` too.
  app.fallthrough();
  app.set_version_flag("--version", "sqs2pg 0.1.0");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  std::vector<Command> commands = {AddRunCommand(app),  AddSendCommand(app),   AddKeygenCommand(app),
                                   AddMaskCommand(app), AddUnmaskCommand(app), AddSchemaCommand(app),
                                   AddRekeyCommand(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  spdlog::set_level(spdlog::level::from_str(log_level));
  for (const Command& c : commands) {
    if (c.subcommand->parsed()) return c.run();
  }
  return kExitUsage;
}
