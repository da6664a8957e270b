// sqs2pg schema: the SQL a DBA applies once so that sqs2pg runs under a role without DDL rights.

#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/mapping_table.h"
#include "cli/options.h"
#include "sink/postgres/postgres_sink.h"
#include "transform/mapping/mapping.h"

namespace sqs2pg::cli {
namespace {

struct SchemaOptions {
  std::string table = "user_logins";
  bool table_given = false;
  std::string mapping;
  std::string role;
};

int Schema(const SchemaOptions& o) {
  std::vector<sink::TableColumn> columns;
  std::string table = o.table;
  if (!o.mapping.empty()) {
    auto mapping = transform::mapping::LoadMappingFile(o.mapping);
    if (!mapping.ok()) return Fail(mapping.status());
    columns = TableColumnsOf(*mapping);
    if (!o.table_given && !mapping->table.empty()) table = mapping->table;
  }
  auto script = sink::SchemaScript(table, o.role, columns);
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
  AddOption(*cmd, "mapping", o->mapping);
  AddOption(*cmd, "role", o->role);
  return {cmd, [o, cmd]() {
            o->table_given = cmd->get_option("--table")->count() > 0;
            return Schema(*o);
          }};
}

}  // namespace sqs2pg::cli
