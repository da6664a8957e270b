#include "cli/app.h"

#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/cli_common.h"
#include "cli/options.h"
#include "common/log.h"

namespace sqs2pg::cli {
namespace {

using Adder = Command (*)(CLI::App&);
constexpr Adder kAdders[] = {AddRunCommand,    AddCheckCommand, AddSendCommand,
                             AddKeygenCommand, AddMaskCommand,  AddUnmaskCommand,
                             AddSchemaCommand, AddRekeyCommand, AddMaintainCommand};

}  // namespace

App::App() : cli("sqs2pg: SQS login events to PostgreSQL, with keyed PII masking") {
  cli.require_subcommand(1);
  // Subcommands made after this pass the options they do not know up to their parent, so global
  // options work before and after the subcommand: `sqs2pg run --log-level debug` too.
  cli.fallthrough();
  cli.set_version_flag("--version", "sqs2pg 0.1.0");
  AddOption(cli, "config", config_file);
  AddOption(cli, "log-level", log_level)
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  AddOption(cli, "log-format", log_format)->check(CLI::IsMember({"text", "json"}));
  for (Adder add : kAdders) commands.push_back(add(cli));

  views = cli.add_subcommand(
      "config",
      "Print the effective configuration (of one subcommand, given with its flags, or of all): each value "
      "and where it came from, secrets redacted. Exit 2 if a flag, variable or the file is wrong");
  views->require_subcommand(0, 1);
  views->add_flag("--markdown", markdown, "Print the README's table of every option instead");
  for (Adder add : kAdders) {
    view_commands.push_back(add(*views));
    CLI::App* view = view_commands.back().subcommand;
    // A view shows what is set; what is missing is not an error here.
    for (CLI::Option* option : view->get_options()) option->required(false);
  }
}

int Main(App& app, int argc, const char* const* argv) {
  // Logs go to stderr; stdout carries only results (rows of mask/unmask, run's summary line).
  log::Setup(log::Format::kText, spdlog::level::info);
  try {
    app.cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.cli.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  Status layered = ApplyLayers(app.cli, app.views, app.provenance);
  // Even a configuration error is written in the format asked for, if that much was understood.
  log::Setup(app.log_format == "json" ? log::Format::kJson : log::Format::kText,
             spdlog::level::from_str(app.log_level));
  if (!layered.ok()) return Fail(layered);
  if (app.views->parsed()) {
    std::cout << (app.markdown ? OptionsMarkdown() : EffectiveConfig(app.cli, *app.views, app.provenance))
              << std::flush;
    return kExitOk;
  }
  for (const Command& c : app.commands) {
    if (c.subcommand->parsed()) return c.run();
  }
  return kExitUsage;
}

}  // namespace sqs2pg::cli
