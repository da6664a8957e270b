#include "sink/postgres/postgres_sink.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <vector>

#include "common/json_writer.h"
#include "sink/postgres/copy_format.h"
#include "sink/postgres/pg_handles.h"

namespace sqs2pg::sink {
namespace {

// Serializes schema creation across concurrent sqs2pg processes: CREATE TABLE IF NOT EXISTS
// alone can still fail with a unique violation on pg_type when two sessions race.
constexpr std::int64_t kSchemaLockId = 0x5351'5332'5047;  // "SQS2PG"

constexpr std::array<const char*, 7> kRowColumns = {
    "user_id", "device_type", "masked_ip", "masked_device_id", "locale", "app_version", "create_date"};

std::string QuoteIdentifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// The quoted, possibly schema-qualified name of the target table or one of its companions.
struct TableNames {
  std::string schema_prefix;  // "\"analytics\"." or empty
  std::string base;

  std::string Quoted(std::string_view suffix = "") const {
    return schema_prefix + QuoteIdentifier(base + std::string(suffix));
  }
};

Result<TableNames> ParseTableName(std::string_view table) {
  TableNames names;
  size_t dot = table.find('.');
  if (dot != std::string_view::npos) {
    names.schema_prefix = QuoteIdentifier(table.substr(0, dot)) + ".";
    table.remove_prefix(dot + 1);
  }
  names.base = std::string(table);
  // Postgres truncates identifiers to 63 bytes; "_rejects" must still fit after the name.
  if (names.base.empty() || names.base.size() + 8 > 63 || table.find('.') != std::string_view::npos) {
    return Status::InvalidInput(fmt::format(
        "table name \"{}\" is not usable: give NAME or SCHEMA.NAME, NAME at most 55 bytes", table));
  }
  return names;
}

std::string ResultField(const PGresult* res, int field) {
  const char* v = res ? PQresultErrorField(res, field) : nullptr;
  return v ? v : "";
}

// Maps a failed statement to a Status whose code tells the caller what to do with the batch.
Status PgError(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string sqlstate = ResultField(res, PG_DIAG_SQLSTATE);
  std::string message = ResultField(res, PG_DIAG_MESSAGE_PRIMARY);
  if (message.empty()) {
    message = PQerrorMessage(conn);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  }
  std::string text = sqlstate.empty() ? fmt::format("{}: {}", what, message)
                                      : fmt::format("{}: {} (SQLSTATE {})", what, message, sqlstate);
  if (PQstatus(conn) != CONNECTION_OK || sqlstate.starts_with("08")) return Status::Transient(text);
  if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate.starts_with("53") ||
      sqlstate.starts_with("57P")) {
    return Status::Transient(text);
  }
  // A value the table will not take: the caller isolates the row and rejects it.
  if (sqlstate.starts_with("22") || sqlstate.starts_with("23")) return Status::InvalidInput(text);
  return Status::Permanent(text);
}

// A refused row's reason keeps what Postgres said, but no value: data errors quote the
// offending value ('invalid input syntax for type integer: "abc"', 'value "99999999999" is out of
// range'). Everything after ': "' is dropped, and a quoted part is kept only when it names a
// constraint, column, relation, type or encoding.
std::string SafeDatabaseReason(const std::string& message) {
  std::string text = message;
  if (size_t colon = text.find(": \""); colon != std::string::npos)
    text = text.substr(0, colon) + " (value omitted)";
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = text.find('"', pos);
    size_t close = open == std::string::npos ? open : text.find('"', open + 1);
    if (close == std::string::npos) {
      out += text.substr(pos);
      return out;
    }
    std::string before = text.substr(pos, open - pos);
    out += before;
    bool names_something = false;
    for (std::string_view word : {"constraint ", "column ", "relation ", "table ", "type ", "encoding "}) {
      std::string_view so_far = out;
      if (so_far.ends_with(word)) names_something = true;
    }
    out += names_something ? text.substr(open, close + 1 - open) : "(value omitted)";
    pos = close + 1;
  }
}

// The body_shape of a refused row's JSON (see RowAsJson).
std::string RowShape(const LoginRow& row) {
  auto type = [](const std::optional<std::string>& v) { return v ? "string" : "null"; };
  return fmt::format(
      R"({{"user_id":"string","device_type":"{}","masked_ip":"string","masked_device_id":"string",)"
      R"("locale":"{}","app_version":"{}"}})",
      type(row.device_type), type(row.locale), type(row.app_version));
}

// Parses a number Postgres returned; 0 if it is not one (it always is, but no input is trusted).
std::int64_t ParseCount(const char* text) {
  std::int64_t value = 0;
  std::string_view s = text ? text : "";
  std::from_chars(s.data(), s.data() + s.size(), value);
  return value;
}

std::string RowAsJson(const LoginRow& row) {
  std::string out = "{";
  auto field = [&out](const char* name, const std::optional<std::string>& v, bool last = false) {
    AppendJsonString(out, name);
    out.push_back(':');
    if (v)
      AppendJsonString(out, *v);
    else
      out += "null";
    if (!last) out.push_back(',');
  };
  field("user_id", row.user_id);
  field("device_type", row.device_type);
  field("masked_ip", row.masked_ip);
  field("masked_device_id", row.masked_device_id);
  field("locale", row.locale);
  field("app_version", row.app_version, true);
  out.push_back('}');
  return out;
}

size_t CharLimit(const std::string& typname, int typmod) {
  if ((typname == "varchar" || typname == "bpchar") && typmod > 4) return static_cast<size_t>(typmod - 4);
  return TableShape::kUnlimited;
}

}  // namespace

struct PostgresSink::Impl {
  PostgresSinkConfig config;
  TableNames names;
  PgConn conn;
  std::vector<std::string> column_types;  // format_type() of each kRowColumns entry, from Prepare()
  bool staging_ready = false;             // temp tables live per connection
  bool rejects_lack_shape_columns = false;
  std::string copy_rows_sql, copy_rejects_sql, merge_sql;

  Status Exec(const std::string& sql, ExecStatusType expected = PGRES_COMMAND_OK);
  // One statement; `what` names it in errors instead of the SQL text.
  Status ExecAs(const std::string& sql, std::string_view what, ExecStatusType expected = PGRES_COMMAND_OK);
  Result<PgResult> Query(const std::string& sql, const std::vector<std::string>& params = {},
                         std::string_view what = "query catalog");
  Result<bool> Exists(std::string_view suffix);
  Status CreateMissingTables();
  Result<TableShape> ReadShape();
  Result<bool> RejectsLackShapeColumns();
  Status CheckPrivileges();
  Status PrivilegeHint(Status st) const;
  Status EnsureConnected();
  Status CreateStaging();
  Status Copy(const std::string& sql, const std::string& data);
  Result<LoadSummary> LoadOnce(std::span<const ProcessedMessage> batch);
  Result<LoadSummary> LoadSplitting(std::span<const ProcessedMessage> batch);
  Result<LoadSummary> RejectRefusedRow(const ProcessedMessage& message, const Status& why);
  void BuildStatements();
};

Status PostgresSink::Impl::Exec(const std::string& sql, ExecStatusType expected) {
  PgResult res(PQexec(conn.get(), sql.c_str()));
  if (PQresultStatus(res.get()) != expected)
    return PgError(conn.get(), res.get(), sql.substr(0, sql.find(' ', 12)));
  return Status::Ok();
}

Status PostgresSink::Impl::ExecAs(const std::string& sql, std::string_view what, ExecStatusType expected) {
  PgResult res(PQexec(conn.get(), sql.c_str()));
  if (PQresultStatus(res.get()) != expected) return PgError(conn.get(), res.get(), what);
  return Status::Ok();
}

Result<PgResult> PostgresSink::Impl::Query(const std::string& sql, const std::vector<std::string>& params,
                                           std::string_view what) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PgResult res(PQexecParams(conn.get(), sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                            nullptr, nullptr, 0));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return PgError(conn.get(), res.get(), what);
  return res;
}

Status PostgresSink::Impl::EnsureConnected() {
  if (PQstatus(conn.get()) == CONNECTION_OK) return Status::Ok();
  PQreset(conn.get());
  staging_ready = false;
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::Transient(fmt::format("cannot reconnect to Postgres at {}:{}: {}", PQhost(conn.get()),
                                         PQport(conn.get()), PQerrorMessage(conn.get())));
  }
  return Status::Ok();
}

Status PostgresSink::Impl::CreateStaging() {
  if (staging_ready) return Status::Ok();
  std::string rows = "CREATE TEMP TABLE IF NOT EXISTS sqs2pg_stage (message_id text NOT NULL";
  for (size_t i = 0; i < kRowColumns.size(); ++i) {
    rows += fmt::format(", {} {}", QuoteIdentifier(kRowColumns[i]), column_types[i]);
  }
  rows += ") ON COMMIT DELETE ROWS";
  RETURN_IF_ERROR(Exec(rows));
  RETURN_IF_ERROR(
      Exec("CREATE TEMP TABLE IF NOT EXISTS sqs2pg_stage_rejects (message_id text NOT NULL, received_at "
           "timestamptz, "
           "reason text, body text, body_encrypted boolean, body_bytes bigint, body_shape text) "
           "ON COMMIT DELETE ROWS"));
  staging_ready = true;
  return Status::Ok();
}

void PostgresSink::Impl::BuildStatements() {
  std::string columns, selected;
  for (const char* c : kRowColumns) {
    columns += (columns.empty() ? "" : ", ") + QuoteIdentifier(c);
    selected += (selected.empty() ? "s." : ", s.") + QuoteIdentifier(c);
  }
  copy_rows_sql = fmt::format("COPY pg_temp.sqs2pg_stage (message_id, {}) FROM STDIN", columns);
  copy_rejects_sql =
      "COPY pg_temp.sqs2pg_stage_rejects (message_id, received_at, reason, body, body_encrypted, body_bytes, "
      "body_shape) FROM STDIN";
  // A rejects table from before body_bytes/body_shape that this role may not alter: the two go
  // into the reason, so they are still kept (see TableShape::rejects_lack_shape_columns).
  std::string reject_columns =
      "message_id, received_at, reason, body, body_encrypted, body_bytes, body_shape";
  std::string reject_values =
      "r.message_id, r.received_at, r.reason, r.body, r.body_encrypted, r.body_bytes, r.body_shape";
  if (rejects_lack_shape_columns) {
    reject_columns = "message_id, received_at, reason, body, body_encrypted";
    reject_values =
        "r.message_id, r.received_at, r.reason || ' (body ' || r.body_bytes || ' bytes, shape ' || "
        "r.body_shape "
        "|| ')', r.body, r.body_encrypted";
  }
  // One statement so the ledger decides, atomically, which staged messages are new.
  // DISTINCT ON keeps one row when a batch holds the same message twice.
  merge_sql = fmt::format(
      "WITH fresh AS ("
      " INSERT INTO {ledger} (message_id, outcome)"
      " SELECT message_id, 'loaded' FROM pg_temp.sqs2pg_stage"
      " UNION ALL SELECT message_id, 'rejected' FROM pg_temp.sqs2pg_stage_rejects"
      " ON CONFLICT (message_id) DO NOTHING RETURNING message_id, outcome),"
      " loaded AS ("
      " INSERT INTO {table} ({columns})"
      " SELECT DISTINCT ON (s.message_id) {selected} FROM pg_temp.sqs2pg_stage s"
      " JOIN fresh f ON f.message_id = s.message_id AND f.outcome = 'loaded'"
      " ORDER BY s.message_id RETURNING 1),"
      " rejected AS ("
      " INSERT INTO {rejects} ({reject_columns})"
      " SELECT DISTINCT ON (r.message_id) {reject_values}"
      " FROM pg_temp.sqs2pg_stage_rejects r"
      " JOIN fresh f ON f.message_id = r.message_id AND f.outcome = 'rejected'"
      " ORDER BY r.message_id RETURNING 1)"
      " SELECT (SELECT count(*) FROM loaded), (SELECT count(*) FROM rejected)",
      fmt::arg("ledger", names.Quoted("_ledger")), fmt::arg("table", names.Quoted()),
      fmt::arg("rejects", names.Quoted("_rejects")), fmt::arg("columns", columns),
      fmt::arg("selected", selected), fmt::arg("reject_columns", reject_columns),
      fmt::arg("reject_values", reject_values));
}

Status PostgresSink::Impl::Copy(const std::string& sql, const std::string& data) {
  PGconn* c = conn.get();
  PgResult begin(PQexec(c, sql.c_str()));
  if (PQresultStatus(begin.get()) != PGRES_COPY_IN) return PgError(c, begin.get(), sql.substr(0, 40));
  if (PQputCopyData(c, data.data(), static_cast<int>(data.size())) != 1)
    return PgError(c, nullptr, "COPY data");
  if (PQputCopyEnd(c, nullptr) != 1) return PgError(c, nullptr, "COPY end");
  PgResult end(PQgetResult(c));
  Status st = PQresultStatus(end.get()) == PGRES_COMMAND_OK ? Status::Ok() : PgError(c, end.get(), "COPY");
  while (PgResult extra{PQgetResult(c)}) {
  }  // drain to nullptr so the connection is ready for the next command
  return st;
}

Result<LoadSummary> PostgresSink::Impl::LoadOnce(std::span<const ProcessedMessage> batch) {
  std::string rows, rejects;
  size_t row_count = 0, reject_count = 0;
  for (const ProcessedMessage& m : batch) {
    if (const auto* row = std::get_if<LoginRow>(&m.record)) {
      ++row_count;
      AppendCopyRow(rows, m.message_id, *row);
    } else {
      ++reject_count;
      AppendCopyReject(rejects, m.message_id, m.received_at_ms, std::get<Rejection>(m.record));
    }
  }

  RETURN_IF_ERROR(Exec("BEGIN"));
  auto fail = [this](Status st) {
    if (PQstatus(conn.get()) == CONNECTION_OK) Exec("ROLLBACK").ok();
    return st;
  };
  if (row_count > 0) {
    if (Status st = Copy(copy_rows_sql, rows); !st.ok()) return fail(st);
  }
  if (reject_count > 0) {
    if (Status st = Copy(copy_rejects_sql, rejects); !st.ok()) return fail(st);
  }
  PgResult merged(PQexec(conn.get(), merge_sql.c_str()));
  if (PQresultStatus(merged.get()) != PGRES_TUPLES_OK) {
    return fail(PgError(conn.get(), merged.get(), fmt::format("insert into {}", names.Quoted())));
  }
  LoadSummary summary;
  summary.rows_loaded = static_cast<size_t>(ParseCount(PQgetvalue(merged.get(), 0, 0)));
  summary.rejects_stored = static_cast<size_t>(ParseCount(PQgetvalue(merged.get(), 0, 1)));
  summary.duplicates = batch.size() - summary.rows_loaded - summary.rejects_stored;
  if (Status st = Exec("COMMIT"); !st.ok()) return fail(st);
  return summary;
}

Result<LoadSummary> PostgresSink::Impl::LoadSplitting(std::span<const ProcessedMessage> batch) {
  auto result = LoadOnce(batch);
  if (result.ok() || result.status().code() != Status::Code::kInvalidInput) return result;
  if (batch.size() == 1) return RejectRefusedRow(batch.front(), result.status());
  size_t half = batch.size() / 2;
  ASSIGN_OR_RETURN(LoadSummary summary, LoadSplitting(batch.first(half)));
  ASSIGN_OR_RETURN(LoadSummary rest, LoadSplitting(batch.subspan(half)));
  summary += rest;
  return summary;
}

Result<LoadSummary> PostgresSink::Impl::RejectRefusedRow(const ProcessedMessage& message, const Status& why) {
  const auto* row = std::get_if<LoginRow>(&message.record);
  if (row == nullptr) return Status::Permanent("storing a reject failed: " + why.message());
  // Kept like every other reject body: encrypted whole, with its size and shape in clear.
  std::string json = RowAsJson(*row);
  Rejection rejection;
  rejection.reason = "database refused the row: " + SafeDatabaseReason(why.message());
  rejection.body_bytes = json.size();
  rejection.body_shape = RowShape(*row);
  if (config.seal_body) {
    auto sealed = config.seal_body(json);
    if (sealed.ok()) {
      rejection.safe_body = std::move(sealed).value();
      rejection.body_encrypted = true;
    } else {
      rejection.reason += "; the row could not be encrypted and was not kept";
    }
  }
  ProcessedMessage reject{message.message_id, message.received_at_ms, std::move(rejection)};
  auto result = LoadOnce(std::span(&reject, 1));
  if (!result.ok()) {
    return Status::Permanent(
        fmt::format("storing the reject for a refused row failed: {}; the row was refused: {}",
                    result.status().message(), why.message()));
  }
  result->refused_by_database = result->rejects_stored;
  return result;
}

PostgresSink::PostgresSink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PostgresSink::~PostgresSink() = default;

Result<std::unique_ptr<PostgresSink>> PostgresSink::Connect(const PostgresSinkConfig& config) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  ASSIGN_OR_RETURN(impl->names, ParseTableName(config.table));
  impl->conn = PgConn(PQconnectdb(config.conninfo.c_str()));
  if (!impl->conn) return Status::Transient("cannot connect to Postgres: out of memory");
  if (PQstatus(impl->conn.get()) != CONNECTION_OK) {
    std::string why = PQerrorMessage(impl->conn.get());
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    const char* host = PQhost(impl->conn.get());
    const char* port = PQport(impl->conn.get());
    return Status::Transient(fmt::format("cannot connect to Postgres at {}:{}: {}", host ? host : "(default)",
                                         port ? port : "(default)", why));
  }
  // Our COPY text and character counts are UTF-8, whatever the server's default is.
  PQsetClientEncoding(impl->conn.get(), "UTF8");
  // Notices such as "relation already exists, skipping" would go to stderr on every start.
  PQsetNoticeProcessor(
      impl->conn.get(), [](void*, const char*) {}, nullptr);
  return std::unique_ptr<PostgresSink>(new PostgresSink(std::move(impl)));
}

std::string PostgresSink::ServerName() const {
  return fmt::format("{}:{}", PQhost(impl_->conn.get()), PQport(impl_->conn.get()));
}

namespace {

// One table sqs2pg uses: its DDL, and the comment that tells a DBA what it is for.
struct TableDdl {
  std::string suffix;  // "", "_ledger" or "_rejects"
  std::string create;
  std::string comment;  // empty: none
};

std::vector<TableDdl> SchemaDdl(const TableNames& names) {
  std::string table = names.Quoted(), ledger = names.Quoted("_ledger"), rejects = names.Quoted("_rejects");
  return {
      {"",
       fmt::format("CREATE TABLE IF NOT EXISTS {} (user_id varchar(128), device_type varchar(32), "
                   "masked_ip varchar(256), masked_device_id varchar(256), locale varchar(32), "
                   "app_version varchar(15), create_date date)",
                   table),
       ""},
      {"_ledger",
       fmt::format("CREATE TABLE IF NOT EXISTS {} (message_id text PRIMARY KEY, outcome text NOT NULL CHECK "
                   "(outcome IN ('loaded', 'rejected')), processed_at timestamptz NOT NULL DEFAULT now())",
                   ledger),
       fmt::format(
           "COMMENT ON TABLE {} IS 'SQS MessageIds sqs2pg has committed: a redelivered message is not "
           "loaded again'",
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

// Rejects tables made before body_bytes and body_shape existed.
std::string MigrateRejectsSql(const TableNames& names) {
  return fmt::format(
      "ALTER TABLE {} ADD COLUMN IF NOT EXISTS body_bytes bigint, ADD COLUMN IF NOT EXISTS body_shape text",
      names.Quoted("_rejects"));
}

std::string QuoteLiteral(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  return out + "'";
}

bool IsPrivilegeError(const Status& st) { return st.message().find("SQLSTATE 42501") != std::string::npos; }

}  // namespace

Result<std::string> SchemaScript(std::string_view table, std::string_view role) {
  ASSIGN_OR_RETURN(TableNames names, ParseTableName(table));
  if (role.find('\0') != std::string_view::npos) return Status::InvalidInput("role name holds U+0000");
  std::string out = fmt::format(
      "-- sqs2pg schema for table {}: apply as the tables' owner (or a superuser), e.g. psql -f.\n"
      "-- Idempotent. With these in place sqs2pg runs no DDL at start.\n"
      "BEGIN;\n",
      names.Quoted());
  for (const TableDdl& t : SchemaDdl(names)) {
    out += t.create + ";\n";
    if (!t.comment.empty()) out += t.comment + ";\n";
  }
  out += "-- Rejects tables from before sqs2pg kept body_bytes and body_shape:\n" + MigrateRejectsSql(names) +
         ";\n";
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
        "GRANT SELECT, INSERT ON {table}, {ledger}, {rejects} TO {role};\n",
        fmt::arg("role", grantee), fmt::arg("schema", schema), fmt::arg("role_literal", QuoteLiteral(role)),
        fmt::arg("table", names.Quoted()), fmt::arg("ledger", names.Quoted("_ledger")),
        fmt::arg("rejects", names.Quoted("_rejects")));
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
  for (TableDdl& t : SchemaDdl(names)) {
    ASSIGN_OR_RETURN(bool exists, Exists(t.suffix));
    if (!exists) missing.push_back(std::move(t));
  }
  if (missing.empty()) return Status::Ok();  // the least-privilege path: no DDL, no COMMENT

  RETURN_IF_ERROR(ExecAs("BEGIN", "begin"));
  auto fail = [this](Status st) {
    if (PQstatus(conn.get()) == CONNECTION_OK) ExecAs("ROLLBACK", "rollback").ok();
    return st;
  };
  // Serializes creation across concurrent sqs2pg processes: CREATE TABLE IF NOT EXISTS alone can
  // still fail with a unique violation on pg_type when two sessions race.
  if (Status st = ExecAs(fmt::format("SELECT pg_advisory_xact_lock({})", kSchemaLockId),
                         "take the schema lock", PGRES_TUPLES_OK);
      !st.ok()) {
    return fail(st);
  }
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
  }
  if (Status st = ExecAs("COMMIT", "commit the new tables"); !st.ok()) return fail(st);
  return Status::Ok();
}

Result<bool> PostgresSink::Impl::RejectsLackShapeColumns() {
  std::string rejects = names.Quoted("_rejects");
  ASSIGN_OR_RETURN(PgResult res,
                   Query("SELECT count(*) FILTER (WHERE a.attname IN ('body_bytes', 'body_shape')),"
                         " pg_has_role(c.relowner, 'USAGE')"
                         " FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                         "AND NOT a.attisdropped"
                         " WHERE c.oid = $1::regclass GROUP BY c.relowner",
                         {rejects}, fmt::format("read the columns of {}", rejects)));
  if (PQntuples(res.get()) != 1) return Status::Permanent(fmt::format("table {} vanished", rejects));
  if (ParseCount(PQgetvalue(res.get(), 0, 0)) == 2) return false;
  // The owner adds the columns itself; any other role keeps what fits the old ones.
  if (std::string_view(PQgetvalue(res.get(), 0, 1)) != "t") return true;
  RETURN_IF_ERROR(
      ExecAs(MigrateRejectsSql(names), fmt::format("add body_bytes and body_shape to {}", rejects)));
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

Result<TableShape> PostgresSink::Impl::ReadShape() {
  Impl& d = *this;
  std::string table = d.names.Quoted();
  ASSIGN_OR_RETURN(PgResult cols,
                   d.Query("SELECT a.attname, t.typname, a.atttypmod, format_type(a.atttypid, a.atttypmod)"
                           " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
                           " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                           {table}, fmt::format("read the columns of {}", table)));
  TableShape shape;
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
    } else if (std::find(kRowColumns.begin(), kRowColumns.end(), name) != kRowColumns.end()) {
      if (!text_like) {
        return Status::Permanent(fmt::format("table {}: column {} has type {}, expected varchar or text",
                                             table, name, PQgetvalue(cols.get(), i, 3)));
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

Result<TableShape> PostgresSink::Prepare() {
  Impl& d = *impl_;
  if (Status st = d.CreateMissingTables(); !st.ok()) return d.PrivilegeHint(std::move(st));
  auto shape = d.ReadShape();
  if (!shape.ok()) return d.PrivilegeHint(shape.status());
  auto lacking = d.RejectsLackShapeColumns();
  if (!lacking.ok()) return d.PrivilegeHint(lacking.status());
  shape->rejects_lack_shape_columns = d.rejects_lack_shape_columns = *lacking;
  RETURN_IF_ERROR(d.CheckPrivileges());
  d.BuildStatements();
  d.staging_ready = false;
  if (Status st = d.CreateStaging(); !st.ok()) return d.PrivilegeHint(std::move(st));
  return shape;
}

Result<TableShape> PostgresSink::Inspect() {
  ASSIGN_OR_RETURN(bool exists, impl_->Exists(""));
  if (!exists) return Status::NotFound(fmt::format("table {} does not exist", impl_->names.Quoted()));
  return impl_->ReadShape();
}

Result<std::vector<std::string>> PostgresSink::CommittedIds(std::span<const std::string> message_ids) {
  Impl& d = *impl_;
  std::vector<std::string> committed;
  if (message_ids.empty()) return committed;
  ASSIGN_OR_RETURN(bool exists, d.Exists("_ledger"));
  if (!exists) return committed;  // nothing was ever committed
  // A text[] literal: every element double-quoted, with " and \ escaped.
  std::string array = "{";
  for (const std::string& id : message_ids) {
    if (array.size() > 1) array.push_back(',');
    array.push_back('"');
    for (char c : id) {
      if (c == '"' || c == '\\') array.push_back('\\');
      array.push_back(c);
    }
    array.push_back('"');
  }
  array.push_back('}');
  std::string ledger = d.names.Quoted("_ledger");
  ASSIGN_OR_RETURN(
      PgResult res,
      d.Query(fmt::format("SELECT message_id FROM {} WHERE message_id = ANY($1::text[])", ledger), {array},
              fmt::format("read ledger {}", ledger)));
  for (int i = 0; i < PQntuples(res.get()); ++i) committed.emplace_back(PQgetvalue(res.get(), i, 0));
  return committed;
}

Result<LoadSummary> PostgresSink::Load(std::span<const ProcessedMessage> batch) {
  if (batch.empty()) return LoadSummary{};
  RETURN_IF_ERROR(impl_->EnsureConnected());
  RETURN_IF_ERROR(impl_->CreateStaging());
  auto loaded = impl_->LoadSplitting(batch);
  if (!loaded.ok()) return impl_->PrivilegeHint(loaded.status());
  return loaded;
}

}  // namespace sqs2pg::sink
