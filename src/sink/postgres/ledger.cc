// The ledger's upkeep: its day partitions made ahead and dropped once SQS keeps none of their
// messages (the days themselves are ledger_partitions.h's pure functions), the migration of a
// ledger from before partitioning, and, in the same pass, the partitions of a target table
// sqs2pg partitions (--partition-by). See docs/architecture.md, "The ledger".

#include <fmt/format.h>
#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <set>

#include "sink/postgres/ledger_partitions.h"
#include "sink/postgres/postgres_sink_impl.h"
#include "sink/postgres/schema_ddl.h"

namespace sqs2pg::sink {

Result<std::string> PostgresSink::Impl::PartmanSchema() {
  ASSIGN_OR_RETURN(PgResult res, Query("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = "
                                       "e.extnamespace WHERE e.extname = 'pg_partman'",
                                       {}, "look for pg_partman"));
  return PQntuples(res.get()) == 1 ? std::string(PQgetvalue(res.get(), 0, 0)) : std::string();
}

// "schema.table" as pg_partman wants the parent table named.
static std::string QualifiedNameSql() {
  return "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
         "WHERE c.oid = $1::regclass";
}

Status PostgresSink::Impl::PartitionNewTable() {
  ASSIGN_OR_RETURN(std::string partman, PartmanSchema());
  std::string table = names.Quoted();
  if (partman.empty()) {
    // Rows no day or month partition takes (yet) are kept, not refused.
    return ExecAs(fmt::format("CREATE TABLE IF NOT EXISTS {}{} PARTITION OF {} DEFAULT", names.schema_prefix,
                              QuoteIdentifier(FitIdentifier(names.base, "_default")), table),
                  fmt::format("create the default partition of {}", table));
  }
  ASSIGN_OR_RETURN(PgResult qualified, Query(QualifiedNameSql(), {table}));
  // pg_partman 4 (Debian 12): native partitioning, four partitions made ahead, and a default one.
  return ExecAs(fmt::format("SELECT {}.create_parent(p_parent_table := {}, p_control := 'create_date', "
                            "p_type := 'native', p_interval := '{}', p_premake := 4)",
                            QuoteIdentifier(partman), QuoteLiteral(PQgetvalue(qualified.get(), 0, 0)),
                            config.partition_by == "day" ? "daily" : "monthly"),
                fmt::format("partition {} with pg_partman", table), PGRES_TUPLES_OK);
}

Status PostgresSink::Impl::PrepareTablePartitions() {
  std::string table = names.Quoted();
  ASSIGN_OR_RETURN(PgResult kind, Query("SELECT relkind FROM pg_class WHERE oid = $1::regclass", {table}));
  table_interval.clear();
  if (std::string_view(PQgetvalue(kind.get(), 0, 0)) != "p") {
    if (!config.partition_by.empty()) {
      spdlog::warn("{} exists and is not partitioned: --partition-by applies to a table sqs2pg creates",
                   table);
    }
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(std::string partman, PartmanSchema());
  if (!partman.empty()) {
    ASSIGN_OR_RETURN(PgResult qualified, Query(QualifiedNameSql(), {table}));
    ASSIGN_OR_RETURN(
        PgResult managed,
        Query(fmt::format("SELECT 1 FROM {}.part_config WHERE parent_table = $1", QuoteIdentifier(partman)),
              {PQgetvalue(qualified.get(), 0, 0)}, "read pg_partman's configuration"));
    if (PQntuples(managed.get()) == 1) {
      table_interval = "partman";
      partman_schema = partman;
      qualified_table = PQgetvalue(qualified.get(), 0, 0);
      return Status::Ok();
    }
  }
  // Ours: the interval is in the partitions' names (_pYYYYMMDD or _pYYYYMM).
  ASSIGN_OR_RETURN(PgResult parts,
                   Query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                         " WHERE i.inhparent = $1::regclass",
                         {table}));
  for (int i = 0; i < PQntuples(parts.get()) && table_interval.empty(); ++i) {
    std::string_view name = PQgetvalue(parts.get(), i, 0);
    size_t p = name.rfind("_p");
    if (p == std::string_view::npos) continue;
    std::string_view digits = name.substr(p + 2);
    if (digits.find_first_not_of("0123456789") != std::string_view::npos) continue;
    if (digits.size() == 8) table_interval = "day";
    if (digits.size() == 6) table_interval = "month";
  }
  if (table_interval.empty()) table_interval = config.partition_by;
  return Status::Ok();
}

std::vector<std::string> PostgresSink::Impl::TablePartitionStatements(
    std::int64_t now_ms, const std::set<std::string>& have) const {
  std::vector<std::string> out;
  if (table_interval == "partman") {
    // pg_partman makes them, here rather than in a background worker the server may not run.
    out.push_back(fmt::format("DO $sqs2pg$ BEGIN PERFORM {}.run_maintenance({}); END $sqs2pg$",
                              QuoteIdentifier(partman_schema), QuoteLiteral(qualified_table)));
    return out;
  }
  if (table_interval.empty()) return out;
  using namespace std::chrono;
  const std::int32_t today = DayOf(now_ms);
  auto add = [&](sys_days from, sys_days to, std::string suffix) {
    std::string name = FitIdentifier(names.base, suffix);
    if (have.contains(name)) return;
    out.push_back(
        fmt::format("CREATE TABLE IF NOT EXISTS {}{} PARTITION OF {} FOR VALUES FROM ('{}') TO ('{}')",
                    names.schema_prefix, QuoteIdentifier(name), names.Quoted(),
                    DayText(from.time_since_epoch().count()), DayText(to.time_since_epoch().count())));
  };
  if (table_interval == "day") {
    // Yesterday (a message sent before midnight, loaded after) to three days ahead.
    for (std::int32_t day = today - 1; day <= today + 3; ++day) {
      std::string text = DayText(day);
      add(sys_days{days{day}}, sys_days{days{day + 1}},
          fmt::format("_p{}{}{}", text.substr(0, 4), text.substr(5, 2), text.substr(8, 2)));
    }
  } else {
    year_month month =
        year_month_day{sys_days{days{today}}}.year() / year_month_day{sys_days{days{today}}}.month();
    month -= months{1};
    for (int i = 0; i < 4; ++i, month += months{1}) {
      year_month next = month + months{1};
      add(sys_days{month / 1}, sys_days{next / 1},
          fmt::format("_p{:04}{:02}", static_cast<int>(month.year()), static_cast<unsigned>(month.month())));
    }
  }
  return out;
}

Status PostgresSink::Impl::PrepareLedger() {
  std::string ledger = names.Quoted("_ledger");
  ASSIGN_OR_RETURN(PgResult res, Query("SELECT c.relkind, pg_has_role(c.relowner, 'USAGE')"
                                       " FROM pg_class c WHERE c.oid = $1::regclass",
                                       {ledger}, fmt::format("read table {}", ledger)));
  if (PQntuples(res.get()) != 1) return Status::Permanent(fmt::format("table {} vanished", ledger));
  owns_ledger = std::string_view(PQgetvalue(res.get(), 0, 1)) == "t";
  bool partitioned = std::string_view(PQgetvalue(res.get(), 0, 0)) == "p";
  if (!partitioned && owns_ledger) {
    RETURN_IF_ERROR(MigrateLedger());
    partitioned = true;
  } else if (!partitioned) {
    spdlog::warn(
        "{} is not partitioned (made by an earlier sqs2pg) and this role does not own it: it keeps working "
        "but "
        "grows without bound. Its owner can migrate it by applying the output of `sqs2pg schema --table {}`, "
        "or by running sqs2pg once",
        ledger, config.table);
  }
  ledger_partitioned = partitioned;
  if (!partitioned) return Status::Ok();
  {
    // Needed to load: whether the former ledger must be consulted. A failure fails Prepare.
    const LedgerRetention& keep = config.ledger_retention;
    RETURN_IF_ERROR(
        RefreshLegacyLedger(
            NowMs(),
            std::chrono::duration_cast<std::chrono::milliseconds>(keep.retention + keep.margin).count())
            .status());
  }
  // Not needed to load: a failure (a lock held too long, say) is tried again at the next batch.
  if (Status st = MaintainLedger(); !st.ok()) {
    if (PQstatus(conn.get()) != CONNECTION_OK) return st;
    spdlog::warn("ledger maintenance: {}; trying again in 5 minutes", st.message());
    next_maintenance = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  }
  return Status::Ok();
}

Status PostgresSink::Impl::MigrateLedger() {
  std::string ledger = names.Quoted("_ledger");
  // Many processes may start at once: one migrates, the others find it done.
  RETURN_IF_ERROR(BeginLocked(kSchemaLockId));
  auto fail = [this](Status st) { return Abort(std::move(st)); };
  if (Status st = ExecAs(RenameUnpartitionedLedgerSql(names, std::to_string(NowMs())),
                         fmt::format("rename {} to {}", ledger, LegacyLedger()));
      !st.ok()) {
    return fail(st);
  }
  if (Status st = ExecAs(LedgerDdl(names), fmt::format("create the partitioned {}", ledger)); !st.ok()) {
    return fail(st);
  }
  if (Status st = ExecAs("COMMIT", "commit the ledger migration"); !st.ok()) return fail(st);
  spdlog::info(
      "{} is now partitioned by day; the former ledger, {}, is still consulted and is dropped once "
      "every message it knew has expired",
      ledger, LegacyLedger());
  return Status::Ok();
}

// The ledger from before partitioning: consulted whenever it exists, until its expiry is known
// and past (fail closed: a lookup that fails keeps it consulted). The expiry is the migration's
// time, recorded in the table's comment, plus the retention; a ledger migrated by an sqs2pg
// that recorded nothing is dated by its newest row (it takes no rows after the migration).
Result<bool> PostgresSink::Impl::RefreshLegacyLedger(std::int64_t now_ms, std::int64_t keep_ms) {
  ASSIGN_OR_RETURN(PgResult legacy,
                   Query("SELECT to_regclass($1) IS NOT NULL, obj_description(to_regclass($1), "
                         "'pg_class')",
                         {LegacyLedger()}));
  bool exists = std::string_view(PQgetvalue(legacy.get(), 0, 0)) == "t";
  if (exists && legacy_ledger_expires_ms == 0) {
    std::string_view comment = PQgetvalue(legacy.get(), 0, 1);
    constexpr std::string_view kMark = "migrated_at_ms=";
    if (size_t at = comment.find(kMark); at != std::string_view::npos) {
      std::int64_t migrated = 0;
      std::string_view digits = comment.substr(at + kMark.size());
      std::from_chars(digits.data(), digits.data() + digits.size(), migrated);
      if (migrated > 0) legacy_ledger_expires_ms = migrated + keep_ms;
    }
    if (legacy_ledger_expires_ms == 0) {
      auto newest = Query(
          fmt::format("SELECT coalesce((extract(epoch FROM max(processed_at)) * 1000)::bigint, 0) FROM {}",
                      LegacyLedger()),
          {}, fmt::format("read {}", LegacyLedger()));
      if (newest.ok()) {
        legacy_ledger_expires_ms = ParseCount(PQgetvalue(newest->get(), 0, 0)) + keep_ms;
      } else {
        spdlog::warn("{} is consulted until its expiry can be read: {}", LegacyLedger(),
                     newest.status().message());
      }
    }
  }
  bool in_use = exists && (legacy_ledger_expires_ms == 0 || now_ms < legacy_ledger_expires_ms);
  if (in_use != legacy_ledger_in_use) {
    legacy_ledger_in_use = in_use;
    BuildStatements();
  }
  return exists;
}

Status PostgresSink::Impl::MaintainLedger() {
  std::string ledger = names.Quoted("_ledger");
  const std::int64_t now_ms = NowMs();
  const LedgerRetention& keep = config.ledger_retention;
  const std::int64_t keep_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(keep.retention + keep.margin).count();
  ASSIGN_OR_RETURN(bool legacy_exists, RefreshLegacyLedger(now_ms, keep_ms));
  next_maintenance = std::chrono::steady_clock::now() + std::chrono::hours(1);
  if (!owns_ledger) return Status::Ok();

  const std::int32_t today = DayOf(now_ms);
  const std::int32_t first = FirstKeptDay(today, keep);
  const std::string base = LedgerBase();
  ASSIGN_OR_RETURN(PgResult parts,
                   Query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                         " WHERE i.inhparent = $1::regclass",
                         {ledger}, fmt::format("list the partitions of {}", ledger)));
  std::set<std::int32_t> have;
  for (int i = 0; i < PQntuples(parts.get()); ++i) {
    if (auto day = PartitionDay(base, PQgetvalue(parts.get(), i, 0))) have.insert(*day);
  }
  std::vector<std::string> statements;
  for (std::int32_t day = first; day <= today + keep.days_ahead; ++day) {
    if (have.contains(day)) continue;
    statements.push_back(
        fmt::format("CREATE TABLE IF NOT EXISTS {}{} PARTITION OF {} FOR VALUES FROM ('{} 00:00:00+00') TO "
                    "('{} 00:00:00+00')",
                    names.schema_prefix, QuoteIdentifier(PartitionName(base, day)), ledger, DayText(day),
                    DayText(day + 1)));
  }
  std::vector<std::int32_t> dropped;
  for (std::int32_t day : have) {
    if (day >= first) continue;
    // DROP, never DELETE: no dead rows, no vacuum, and the space is back at once.
    statements.push_back(fmt::format("DROP TABLE IF EXISTS {}{}", names.schema_prefix,
                                     QuoteIdentifier(PartitionName(base, day))));
    dropped.push_back(day);
  }
  if (!table_interval.empty()) {
    ASSIGN_OR_RETURN(PgResult table_parts,
                     Query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                           " WHERE i.inhparent = $1::regclass",
                           {names.Quoted()}, fmt::format("list the partitions of {}", names.Quoted())));
    std::set<std::string> have_table;
    for (int i = 0; i < PQntuples(table_parts.get()); ++i)
      have_table.insert(PQgetvalue(table_parts.get(), i, 0));
    for (std::string& sql : TablePartitionStatements(now_ms, have_table))
      statements.push_back(std::move(sql));
  }
  // Dropped an hour after it stopped being consulted, so every process has noticed by then.
  bool drop_legacy =
      legacy_exists && legacy_ledger_expires_ms != 0 && now_ms >= legacy_ledger_expires_ms + 3'600'000;
  if (drop_legacy) statements.push_back(fmt::format("DROP TABLE IF EXISTS {}", LegacyLedger()));
  if (statements.empty()) return Status::Ok();

  // Creating or dropping a partition locks the whole ledger: give up rather than queue every
  // loader behind a long transaction; the next round tries again.
  RETURN_IF_ERROR(BeginLocked(kSchemaLockId + 1, "SET LOCAL lock_timeout = '2s'"));
  auto fail = [this](Status st) { return Abort(std::move(st)); };
  MaintenanceSummary done;
  for (const std::string& sql : statements) {
    // A day whose rows went to the default partition cannot get a partition of its own: it keeps
    // using the default one (still exactly once) and the others go ahead.
    if (Status st = ExecAs("SAVEPOINT day", "savepoint"); !st.ok()) return fail(st);
    if (Status st = ExecAs(sql, sql.substr(0, sql.find(" PARTITION OF"))); !st.ok()) {
      if (PQstatus(conn.get()) != CONNECTION_OK || last_failure == Failure::kRetry) return fail(st);
      spdlog::warn("ledger maintenance: {}", st.message());
      if (Status back = ExecAs("ROLLBACK TO SAVEPOINT day", "rollback to savepoint"); !back.ok())
        return fail(back);
      continue;
    }
    if (sql.starts_with("CREATE")) ++done.partitions_created;
    if (sql.starts_with("DROP")) ++done.partitions_dropped;
  }
  if (Status st = ExecAs("COMMIT", "commit ledger maintenance"); !st.ok()) return fail(st);
  maintained.partitions_created += done.partitions_created;
  maintained.partitions_dropped += done.partitions_dropped;
  if (!dropped.empty()) {
    spdlog::info(
        "ledger {}: dropped the partitions of {} day(s) up to {}, whose messages SQS no longer keeps", ledger,
        dropped.size(), DayText(dropped.back()));
  }
  if (drop_legacy) spdlog::info("dropped {}: every message it knew has expired", LegacyLedger());
  return Status::Ok();
}

}  // namespace sqs2pg::sink
