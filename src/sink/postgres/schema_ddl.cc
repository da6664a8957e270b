#include "sink/postgres/schema_ddl.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>

#include "sink/postgres/ledger_partitions.h"
#include "sink/postgres/postgres_sink_impl.h"
#include "sink/postgres/sqlstate.h"

namespace sqs2pg::sink {
namespace {

size_t CharLimit(const std::string& typname, int typmod) {
  if ((typname == "varchar" || typname == "bpchar") && typmod > 4) return static_cast<size_t>(typmod - 4);
  return TableShape::kUnlimited;
}

}  // namespace

std::string LedgerDdl(const TableNames& names) {
  std::string ledger = names.Quoted("_ledger");
  std::string base = names.base + "_ledger";
  return fmt::format(
      "CREATE TABLE IF NOT EXISTS {ledger} (message_id text NOT NULL, sent_at timestamptz NOT NULL, outcome "
      "text NOT NULL CHECK (outcome IN ('loaded', 'rejected')), processed_at timestamptz NOT NULL DEFAULT "
      "now(), message_group_id text, sequence_number numeric, CONSTRAINT {key} PRIMARY KEY (message_id, "
      "sent_at)) PARTITION BY RANGE (sent_at);\n"
      "CREATE TABLE IF NOT EXISTS {prefix}{default_partition} PARTITION OF {ledger} DEFAULT",
      fmt::arg("ledger", ledger), fmt::arg("key", QuoteIdentifier(FitIdentifier(base, "_key"))),
      fmt::arg("prefix", names.schema_prefix),
      fmt::arg("default_partition", QuoteIdentifier(DefaultPartitionName(base))));
}

std::vector<TableDdl> SchemaDdl(const TableNames& names, std::string_view partition_by,
                                std::span<const TableColumn> columns) {
  std::string table = names.Quoted(), ledger = names.Quoted("_ledger"), rejects = names.Quoted("_rejects");
  TableDdl target{
      "",
      fmt::format("CREATE TABLE IF NOT EXISTS {} (user_id varchar(128), device_type varchar(32), "
                  "masked_ip varchar(256), masked_device_id varchar(256), locale varchar(32), "
                  "app_version varchar(15), create_date date, masked_ip_key_id text){}",
                  table, partition_by.empty() ? "" : " PARTITION BY RANGE (create_date)"),
      fmt::format("COMMENT ON COLUMN {}.masked_ip_key_id IS 'The id of the key that masked masked_ip: an "
                  "address-valued mask (ipcrypt-*, cryptopan) carries none of its own. sqs2pg rekey uses it'",
                  table)};
  if (!columns.empty()) {
    // A mapping's table: its columns as the mapping types them, each commented with where its
    // value comes from and how it is masked (the statements run together, as the table's owner).
    target.create = fmt::format("CREATE TABLE IF NOT EXISTS {} (", table);
    target.comment.clear();
    for (size_t i = 0; i < columns.size(); ++i) {
      target.create +=
          fmt::format("{}{} {}", i ? ", " : "", QuoteIdentifier(columns[i].name), columns[i].type);
      if (columns[i].comment.empty()) continue;
      target.comment +=
          fmt::format("{}COMMENT ON COLUMN {}.{} IS {}", target.comment.empty() ? "" : ";\n", table,
                      QuoteIdentifier(columns[i].name), QuoteLiteral(columns[i].comment));
    }
    target.create += ")";
  }
  return {
      std::move(target),
      {"_ledger", LedgerDdl(names),
       fmt::format(
           "COMMENT ON TABLE {} IS 'SQS MessageIds sqs2pg has committed: a redelivered message is not "
           "loaded again. Partitioned by the day of sent_at (SQS SentTimestamp, the same at every delivery); "
           "sqs2pg drops the partitions of days whose messages SQS no longer keeps. From a FIFO queue, "
           "message_group_id and sequence_number give the order SQS delivered them in'",
           ledger)},
      {"_rejects",
       fmt::format(
           "CREATE TABLE IF NOT EXISTS {} (message_id text PRIMARY KEY, received_at timestamptz NOT NULL, "
           "rejected_at timestamptz NOT NULL DEFAULT now(), reason text NOT NULL, body text NOT NULL, "
           "body_encrypted boolean NOT NULL, body_bytes bigint, body_shape text)",
           rejects),
       fmt::format("COMMENT ON TABLE {} IS 'Messages sqs2pg refused, with why. body is the whole message "
                   "encrypted when body_encrypted (recover it with sqs2pg unmask); body_bytes and body_shape "
                   "(top-level keys and their JSON types) are in clear'",
                   rejects)},
  };
}

std::string MigrateRejectsSql(const TableNames& names) {
  return fmt::format(
      "ALTER TABLE {} ADD COLUMN IF NOT EXISTS body_bytes bigint, ADD COLUMN IF NOT EXISTS body_shape text",
      names.Quoted("_rejects"));
}

std::string MigrateKeyIdSql(const TableNames& names) {
  return fmt::format("ALTER TABLE {} ADD COLUMN IF NOT EXISTS masked_ip_key_id text", names.Quoted());
}

std::string MigrateLedgerSql(const TableNames& names) {
  return fmt::format(
      "ALTER TABLE {} ADD COLUMN IF NOT EXISTS message_group_id text, ADD COLUMN IF NOT EXISTS "
      "sequence_number "
      "numeric",
      names.Quoted("_ledger"));
}

std::string RenameUnpartitionedLedgerSql(const TableNames& names, std::string_view migrated_at_ms) {
  std::string rename = fmt::format("ALTER TABLE {} RENAME TO {}", names.Quoted("_ledger"),
                                   QuoteIdentifier(names.base + "_ledger1"));
  // The migration's time, recorded on the renamed table, dates it without reading it: it takes no
  // rows after the rename, so everything it knew expires a retention after this.
  // (COMMENT takes only a literal: the statement is built in the DO block.)
  std::string comment = fmt::format(
      "{} || quote_literal('sqs2pg: the ledger from before partitioning, consulted until every message it "
      "knew has expired, then dropped; migrated_at_ms=' || {})",
      QuoteLiteral(fmt::format("COMMENT ON TABLE {}{} IS ", names.schema_prefix,
                               QuoteIdentifier(names.base + "_ledger1"))),
      migrated_at_ms);
  return fmt::format(
      "DO $sqs2pg$ BEGIN IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass({}) AND relkind = 'r') "
      "THEN "
      "EXECUTE {}; EXECUTE {}; END IF; END $sqs2pg$",
      QuoteLiteral(names.Quoted("_ledger")), QuoteLiteral(rename), comment);
}

Result<std::string> SchemaScript(std::string_view table, std::string_view role,
                                 std::span<const TableColumn> columns) {
  ASSIGN_OR_RETURN(TableNames names, ParseTableName(table));
  if (role.find('\0') != std::string_view::npos) return Status::InvalidInput("role name holds U+0000");
  std::string out = fmt::format(
      "-- sqs2pg schema for table {}: apply as the tables' owner (or a superuser), e.g. psql -f.\n"
      "-- Idempotent. With these in place sqs2pg runs no DDL at start.\n"
      "BEGIN;\n",
      names.Quoted());
  out += "-- A ledger from before partitioning is renamed <table>_ledger1; sqs2pg drops it once expired:\n" +
         RenameUnpartitionedLedgerSql(names) + ";\n";
  for (const TableDdl& t : SchemaDdl(names, "", columns)) {
    out += t.create + ";\n";
    if (!t.comment.empty()) out += t.comment + ";\n";
  }
  out += "-- Rejects tables from before sqs2pg kept body_bytes and body_shape:\n" + MigrateRejectsSql(names) +
         ";\n";
  out += "-- Ledgers from before sqs2pg kept the order of FIFO messages:\n" + MigrateLedgerSql(names) + ";\n";
  if (columns.empty()) {
    out +=
        "-- Tables from before sqs2pg recorded which key masked each ip:\n" + MigrateKeyIdSql(names) + ";\n";
  }
  if (!role.empty()) {
    std::string grantee = QuoteIdentifier(role);
    // The schema is the one the unqualified name resolves to when no schema is given.
    std::string schema =
        names.schema_prefix.empty() ? "current_schema()" : QuoteLiteral(table.substr(0, table.find('.')));
    out += fmt::format(
        "-- What role {role} needs: USAGE on the schema, TEMPORARY on the database (each batch is staged in\n"
        "-- temporary tables), SELECT and INSERT on the three tables, and nothing more.\n"
        "DO $sqs2pg$ BEGIN\n"
        "  EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', {schema}, {role_literal});\n"
        "  EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), {role_literal});\n"
        "END $sqs2pg$;\n"
        "GRANT SELECT, INSERT ON {table}, {ledger}, {rejects} TO {role};\n"
        "DO $sqs2pg$ BEGIN IF to_regclass({legacy_literal}) IS NOT NULL THEN\n"
        "  EXECUTE format('GRANT SELECT ON %s TO %I', {legacy_literal}, {role_literal});\n"
        "END IF; END $sqs2pg$;\n",
        fmt::arg("role", grantee), fmt::arg("schema", schema), fmt::arg("role_literal", QuoteLiteral(role)),
        fmt::arg("table", names.Quoted()), fmt::arg("ledger", names.Quoted("_ledger")),
        fmt::arg("rejects", names.Quoted("_rejects")),
        fmt::arg("legacy_literal", QuoteLiteral(names.Quoted("_ledger1"))));
  }
  out += "COMMIT;\n";
  return out;
}

Status PostgresSink::Impl::PrivilegeHint(Status st) const {
  if (!IsPrivilegeError(st)) return st;
  const char* user = PQuser(conn.get());
  return Status::Permanent(fmt::format(
      "{}; role {} lacks a privilege it needs: a DBA can apply the output of `sqs2pg schema --table {} "
      "--role {}`",
      st.message(), user ? user : "(unknown)", config.table, user ? user : "ROLE"));
}

Result<bool> PostgresSink::Impl::Exists(std::string_view suffix) {
  ASSIGN_OR_RETURN(PgResult res, Query("SELECT to_regclass($1) IS NOT NULL", {names.Quoted(suffix)},
                                       fmt::format("look up table {}", names.Quoted(suffix))));
  return std::string_view(PQgetvalue(res.get(), 0, 0)) == "t";
}

Status PostgresSink::Impl::CreateMissingTables() {
  std::vector<TableDdl> missing;
  for (TableDdl& t : SchemaDdl(names, config.partition_by, config.columns)) {
    ASSIGN_OR_RETURN(bool exists, Exists(t.suffix));
    if (!exists) missing.push_back(std::move(t));
  }
  if (missing.empty()) return Status::Ok();  // the least-privilege path: no DDL, no COMMENT

  // Serializes creation across concurrent sqs2pg processes: CREATE TABLE IF NOT EXISTS alone can
  // still fail with a unique violation on pg_type when two sessions race.
  RETURN_IF_ERROR(BeginLocked(kSchemaLockId));
  auto fail = [this](Status st) { return Abort(std::move(st)); };
  for (const TableDdl& t : missing) {
    // Another process may have made it while this one waited for the lock.
    auto exists = Exists(t.suffix);
    if (!exists.ok()) return fail(exists.status());
    if (*exists) continue;
    std::string name = names.Quoted(t.suffix);
    if (Status st = ExecAs(t.create, fmt::format("create table {}", name)); !st.ok()) return fail(st);
    // Only on creation: COMMENT needs ownership, which a least-privilege role does not have.
    if (!t.comment.empty()) {
      if (Status st = ExecAs(t.comment, fmt::format("comment on table {}", name)); !st.ok()) return fail(st);
    }
    if (t.suffix.empty() && !config.partition_by.empty()) {
      if (Status st = PartitionNewTable(); !st.ok()) return fail(st);
    }
  }
  if (Status st = ExecAs("COMMIT", "commit the new tables"); !st.ok()) return fail(st);
  return Status::Ok();
}

Result<bool> PostgresSink::Impl::LacksColumns(std::string_view suffix,
                                              std::span<const std::string_view> columns,
                                              const std::string& migrate_sql, std::string_view what) {
  std::string table = names.Quoted(suffix);
  std::string wanted;
  for (std::string_view c : columns) wanted += fmt::format("{}{}", wanted.empty() ? "" : ",", c);
  ASSIGN_OR_RETURN(PgResult res,
                   Query("SELECT count(*) FILTER (WHERE a.attname = ANY(string_to_array($2, ','))),"
                         " pg_has_role(c.relowner, 'USAGE')"
                         " FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                         "AND NOT a.attisdropped"
                         " WHERE c.oid = $1::regclass GROUP BY c.relowner",
                         {table, wanted}, fmt::format("read the columns of {}", table)));
  if (PQntuples(res.get()) != 1) return Status::Permanent(fmt::format("table {} vanished", table));
  if (ParseCount(PQgetvalue(res.get(), 0, 0)) == static_cast<std::int64_t>(columns.size())) return false;
  // The owner adds the columns itself; any other role keeps what fits the old ones.
  if (std::string_view(PQgetvalue(res.get(), 0, 1)) != "t") return true;
  RETURN_IF_ERROR(ExecAs(migrate_sql, fmt::format("add {} to {}", what, table)));
  return false;
}

Status PostgresSink::Impl::CheckPrivileges() {
  struct Need {
    std::string table;
    const char* privilege;
  };
  const Need needs[] = {{names.Quoted(), "INSERT"},
                        {names.Quoted("_ledger"), "SELECT"},  // INSERT ... RETURNING reads it
                        {names.Quoted("_ledger"), "INSERT"},
                        {names.Quoted("_rejects"), "INSERT"}};
  std::string sql = "SELECT has_database_privilege(current_database(), 'TEMPORARY')";
  std::vector<std::string> params;
  for (const Need& n : needs) {
    params.push_back(n.table);
    sql += fmt::format(", has_table_privilege(${}, '{}')", params.size(), n.privilege);
  }
  ASSIGN_OR_RETURN(PgResult res, Query(sql, params, "check privileges"));
  const char* user = PQuser(conn.get());
  std::string fix = fmt::format("a DBA can apply the output of `sqs2pg schema --table {} --role {}`",
                                config.table, user ? user : "ROLE");
  if (std::string_view(PQgetvalue(res.get(), 0, 0)) != "t") {
    return Status::Permanent(fmt::format(
        "role {} lacks TEMPORARY on this database (sqs2pg stages each batch in a temporary table); {}",
        user ? user : "(unknown)", fix));
  }
  for (size_t i = 0; i < std::size(needs); ++i) {
    if (std::string_view(PQgetvalue(res.get(), 0, static_cast<int>(i + 1))) != "t") {
      return Status::Permanent(fmt::format("role {} lacks {} on table {}; {}", user ? user : "(unknown)",
                                           needs[i].privilege, needs[i].table, fix));
    }
  }
  return Status::Ok();
}

// A mapping's table: every mapped column must be there; whether its type fits is the mapping's
// to say (the CLI checks TableShape::live_columns against it), the sink only stages by it.
Result<TableShape> PostgresSink::Impl::ReadMappedShape(const PGresult* cols) {
  TableShape shape;
  column_types.assign(row_columns.size(), "");
  shape.live_columns.resize(row_columns.size());
  for (int i = 0; i < PQntuples(cols); ++i) {
    std::string_view name = PQgetvalue(cols, i, 0);
    for (size_t c = 0; c < row_columns.size(); ++c) {
      if (name != row_columns[c]) continue;
      column_types[c] = PQgetvalue(cols, i, 3);
      shape.live_columns[c] = {row_columns[c], PQgetvalue(cols, i, 1),
                               static_cast<int>(ParseCount(PQgetvalue(cols, i, 2))), column_types[c]};
    }
  }
  std::string missing;
  for (size_t c = 0; c < row_columns.size(); ++c) {
    if (column_types[c].empty()) missing += fmt::format("{}{}", missing.empty() ? "" : ", ", row_columns[c]);
  }
  if (!missing.empty()) {
    return Status::Permanent(
        fmt::format("table {} lacks the mapping's columns {}: add them (`sqs2pg schema --mapping` prints the "
                    "table's DDL)",
                    names.Quoted(), missing));
  }
  return shape;
}

Result<TableShape> PostgresSink::Impl::ReadShape() {
  Impl& d = *this;
  std::string table = d.names.Quoted();
  ASSIGN_OR_RETURN(PgResult cols,
                   d.Query("SELECT a.attname, t.typname, a.atttypmod, format_type(a.atttypid, a.atttypmod)"
                           " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
                           " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                           {table}, fmt::format("read the columns of {}", table)));
  TableShape shape;
  if (d.Mapped()) return ReadMappedShape(cols.get());
  d.column_types.assign(kRowColumns.size(), "");
  for (int i = 0; i < PQntuples(cols.get()); ++i) {
    std::string name = PQgetvalue(cols.get(), i, 0);
    std::string typname = PQgetvalue(cols.get(), i, 1);
    int typmod = static_cast<int>(ParseCount(PQgetvalue(cols.get(), i, 2)));
    for (size_t c = 0; c < kRowColumns.size(); ++c) {
      if (name == kRowColumns[c]) d.column_types[c] = PQgetvalue(cols.get(), i, 3);
    }
    size_t limit = CharLimit(typname, typmod);
    bool text_like = typname == "varchar" || typname == "text" || typname == "bpchar";
    if (name == "app_version") {
      shape.app_version_is_integer = typname == "int4" || typname == "int8";
      if (!text_like && !shape.app_version_is_integer) {
        return Status::Permanent(
            fmt::format("table {}: column app_version has type {}; sqs2pg stores it as text "
                        "or as an integer (int4/int8)",
                        table, PQgetvalue(cols.get(), i, 3)));
      }
      shape.app_version_chars = limit;
    } else if (name == "create_date") {
      if (typname != "date")
        return Status::Permanent(fmt::format("table {}: column create_date must be date", table));
    } else if (name == "masked_ip" && typname == "inet") {
      // An address-valued mask's text is an inet literal; COPY parses it like any other value.
      shape.masked_ip_is_inet = true;
    } else if (std::find(kRowColumns.begin(), kRowColumns.end(), name) != kRowColumns.end()) {
      if (!text_like) {
        return Status::Permanent(fmt::format(
            "table {}: column {} has type {}, expected varchar or text (masked_ip may also be inet)", table,
            name, PQgetvalue(cols.get(), i, 3)));
      }
      if (name == "user_id") shape.user_id_chars = limit;
      if (name == "device_type") shape.device_type_chars = limit;
      if (name == "masked_ip") shape.masked_ip_chars = limit;
      if (name == "masked_device_id") shape.masked_device_id_chars = limit;
      if (name == "locale") shape.locale_chars = limit;
    }
  }
  for (size_t c = 0; c < kRowColumns.size(); ++c) {
    if (d.column_types[c].empty()) {
      return Status::Permanent(fmt::format("table {} has no column {}", table, kRowColumns[c]));
    }
  }
  return shape;
}

}  // namespace sqs2pg::sink
