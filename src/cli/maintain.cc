// sqs2pg maintain: the ledger's upkeep, once, as the tables' owner. `run` does it itself at start
// and hourly when its role owns the ledger; under a role that only loads (`sqs2pg schema --role`),
// nothing would make the day partitions or drop expired ones, and the ledger's rows would pile up
// in its default partition. A daily job running this as the owner keeps the ledger bounded.

#include <fmt/format.h>

#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "sink/postgres/postgres_sink.h"

namespace sqs2pg::cli {
namespace {

struct MaintainOptions {
  std::string db;
  std::string table = "user_logins";
  std::string partition_by;
  int message_retention = 14 * 86'400;
};

int Maintain(const MaintainOptions& o) {
  sink::PostgresSinkConfig config{o.db, o.table};
  config.partition_by = o.partition_by;
  config.ledger_retention.retention = std::chrono::seconds(o.message_retention);
  auto sink = sink::PostgresSink::Connect(config);
  if (!sink.ok()) return Fail(sink.status());
  auto done = (*sink)->Maintain();
  if (!done.ok()) return Fail(done.status().Annotate(fmt::format("maintain table {}", o.table)));
  std::cout << fmt::format(
                   "maintained {} on {}: {} partitions created, {} dropped (ledger days kept: a message "
                   "retention of {} s plus a day)",
                   o.table, (*sink)->ServerName(), done->partitions_created, done->partitions_dropped,
                   o.message_retention)
            << std::endl;
  return kExitOk;
}

}  // namespace

Command AddMaintainCommand(CLI::App& app) {
  auto o = std::make_shared<MaintainOptions>();
  CLI::App* cmd = app.add_subcommand(
      "maintain",
      "As the tables' owner: create the ledger's coming day partitions and drop expired ones, now (for a "
      "daily job when sqs2pg runs under a role that only loads)");
  AddOption(*cmd, "db", o->db);
  AddOption(*cmd, "table", o->table);
  AddOption(*cmd, "partition-by", o->partition_by)->check(CLI::IsMember({"day", "month"}));
  AddOption(*cmd, "message-retention", o->message_retention)->check(CLI::Range(60, 14 * 86'400));
  return {cmd, [o]() { return Maintain(*o); }};
}

}  // namespace sqs2pg::cli
