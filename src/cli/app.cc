#include "cli/app.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <new>
#include <string_view>

#include "cli/cli_common.h"
#include "cli/options.h"
#include "common/log.h"

namespace sqs2pg::cli {
namespace {

using Adder = Command (*)(CLI::App&);
constexpr Adder kAdders[] = {AddRunCommand,    AddCheckCommand, AddSendCommand,
                             AddKeygenCommand, AddMaskCommand,  AddUnmaskCommand,
                             AddSchemaCommand, AddRekeyCommand, AddMaintainCommand};

// An argument that may carry a secret: a conninfo or URI with a password (or any other option
// libpq hides, such as sslpassword), an AWS secret, or anything named like one. Matched loosely,
// as it decides only what an error message leaves out.
bool MayHoldSecret(std::string_view arg) {
  std::string lower(arg);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::string_view word : {"password", "passwd", "secret", "token"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  // Key material given as hex (--import-hex): a run of 32 or more hex digits.
  size_t run = 0;
  for (char c : lower) {
    run = std::isxdigit(static_cast<unsigned char>(c)) ? run + 1 : 0;
    if (run >= 32) return true;
  }
  // postgresql://user:secret@host: a colon in the part before '@'.
  if (size_t scheme = lower.find("://"); scheme != std::string::npos) {
    size_t at = lower.find('@', scheme);
    if (at != std::string::npos && lower.substr(scheme + 3, at - scheme - 3).find(':') != std::string::npos)
      return true;
  }
  return false;
}

// --flag or -f: a name sqs2pg or the user chose, never data.
bool IsPlainFlag(std::string_view arg) {
  if (!arg.starts_with('-')) return false;
  arg.remove_prefix(arg.starts_with("--") ? 2 : 1);
  return !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
  });
}

void ReplaceAll(std::string& text, std::string_view what, std::string_view with) {
  if (what.empty()) return;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + with.size())) {
    text.replace(at, what.size(), with);
  }
}

}  // namespace

std::string SanitizedParseError(const CLI::ParseError& e, int argc, const char* const* argv) {
  if (const auto* extras = dynamic_cast<const CLI::ExtrasError*>(&e)) {
    (void)extras;
    // CLI11 lists the unexpected arguments verbatim; a value among them (a mistyped --db's
    // conninfo) may hold a password, so only flag names are shown.
    std::string shown;
    size_t values = 0;
    std::string message = e.what();
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (message.find(arg) == std::string::npos) continue;
      if (IsPlainFlag(arg) && !MayHoldSecret(arg)) {
        shown += (shown.empty() ? "" : " ") + std::string(arg);
      } else {
        ++values;
      }
    }
    std::string out = "Arguments were not expected here";
    if (!shown.empty()) out += ": " + shown;
    if (values > 0)
      out += fmt::format(" ({} value{} not shown: {} may hold a secret)", values, values == 1 ? "" : "s",
                         values == 1 ? "it" : "they");
    return out + ". Is a subcommand missing, or an option given to the wrong one?";
  }
  std::string message = e.what();
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.size() >= 3 && MayHoldSecret(arg)) ReplaceAll(message, arg, "[an argument not shown]");
  }
  return message;
}

void HardenProcess() {
  // Not dumpable: no core file (whatever ulimit -c or the unit says) and no ptrace attach by
  // other processes of the same user. Failure leaves the process as it was; nothing to report.
  (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int GuardedMain(int (*body)(int, const char* const*), int argc, const char* const* argv) noexcept {
  try {
    return body(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fputs("sqs2pg: out of memory\n", stderr);
  } catch (...) {
    std::fputs(
        "sqs2pg: internal error: an unexpected exception ended the command (its text is not shown: it "
        "may quote data). Please report it with the command line, secrets removed\n",
        stderr);
  }
  return kExitSoftware;
}

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
    if (e.get_exit_code() == 0) {  // --help, --version
      app.cli.exit(e);
      return kExitOk;
    }
    std::cerr << SanitizedParseError(e, argc, argv) << "\nRun with --help for more information.\n";
    return kExitUsage;
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
