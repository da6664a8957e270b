// sqs2pg schema: the SQL a DBA applies once so that sqs2pg runs under a role without DDL rights.

#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "sink/postgres/postgres_sink.h"

namespace sqs2pg::cli {
namespace {

struct SchemaOptions {
  std::string table = "user_logins";
  std::string role;
};

int Schema(const SchemaOptions& o) {
  auto script = sink::SchemaScript(o.table, o.role);
  if (!script.ok()) return Fail(script.status());
  std::cout << *script << std::flush;
  return kExitOk;
}

}  // namespace

Command AddSchemaCommand(CLI::App& app) {
  auto o = std::make_shared<SchemaOptions>();
  CLI::App* cmd = app.add_subcommand(
      "schema",
      "Print the DDL (and with --role the GRANTs) for a DBA to apply; sqs2pg then needs no DDL rights");
  AddOption(*cmd, "table", o->table);
  AddOption(*cmd, "role", o->role);
  return {cmd, [o]() { return Schema(*o); }};
}

}  // namespace sqs2pg::cli
