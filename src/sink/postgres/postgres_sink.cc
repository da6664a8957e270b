#include "sink/postgres/postgres_sink.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
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

// Data errors can quote the offending value after a colon ("invalid input syntax for type
// integer: \"...\""); a reject reason keeps only the part before it.
std::string SafeDatabaseReason(const std::string& message) {
  size_t colon = message.find(": \"");
  return colon == std::string::npos ? message : message.substr(0, colon) + " (value omitted)";
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
  std::string copy_rows_sql, copy_rejects_sql, merge_sql;

  Status Exec(const std::string& sql, ExecStatusType expected = PGRES_COMMAND_OK);
  Result<PgResult> Query(const std::string& sql, const std::vector<std::string>& params = {});
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

Result<PgResult> PostgresSink::Impl::Query(const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PgResult res(PQexecParams(conn.get(), sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                            nullptr, nullptr, 0));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return PgError(conn.get(), res.get(), "query catalog");
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
           "reason text, body text, body_encrypted boolean) ON COMMIT DELETE ROWS"));
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
      "COPY pg_temp.sqs2pg_stage_rejects (message_id, received_at, reason, body, body_encrypted) FROM STDIN";
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
      " INSERT INTO {rejects} (message_id, received_at, reason, body, body_encrypted)"
      " SELECT DISTINCT ON (r.message_id) r.message_id, r.received_at, r.reason, r.body, r.body_encrypted"
      " FROM pg_temp.sqs2pg_stage_rejects r"
      " JOIN fresh f ON f.message_id = r.message_id AND f.outcome = 'rejected'"
      " ORDER BY r.message_id RETURNING 1)"
      " SELECT (SELECT count(*) FROM loaded), (SELECT count(*) FROM rejected)",
      fmt::arg("ledger", names.Quoted("_ledger")), fmt::arg("table", names.Quoted()),
      fmt::arg("rejects", names.Quoted("_rejects")), fmt::arg("columns", columns),
      fmt::arg("selected", selected));
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
  summary.rows_loaded = std::stoul(PQgetvalue(merged.get(), 0, 0));
  summary.rejects_stored = std::stoul(PQgetvalue(merged.get(), 0, 1));
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
  ProcessedMessage reject{
      message.message_id, message.received_at_ms,
      Rejection{"database refused the row: " + SafeDatabaseReason(why.message()), RowAsJson(*row), false}};
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
  PQsetNoticeProcessor(impl->conn.get(), [](void*, const char*) {}, nullptr);
  return std::unique_ptr<PostgresSink>(new PostgresSink(std::move(impl)));
}

std::string PostgresSink::ServerName() const {
  return fmt::format("{}:{}", PQhost(impl_->conn.get()), PQport(impl_->conn.get()));
}

Result<TableShape> PostgresSink::Prepare() {
  Impl& d = *impl_;
  std::string table = d.names.Quoted();
  std::string ddl = fmt::format(
      "BEGIN;"
      "SELECT pg_advisory_xact_lock({lock});"
      "CREATE TABLE IF NOT EXISTS {table} (user_id varchar(128), device_type varchar(32), masked_ip "
      "varchar(256),"
      " masked_device_id varchar(256), locale varchar(32), app_version varchar(15), create_date date);"
      "CREATE TABLE IF NOT EXISTS {ledger} (message_id text PRIMARY KEY,"
      " outcome text NOT NULL CHECK (outcome IN ('loaded', 'rejected')),"
      " processed_at timestamptz NOT NULL DEFAULT now());"
      "COMMENT ON TABLE {ledger} IS 'SQS MessageIds sqs2pg has committed: a redelivered message is not "
      "loaded again';"
      "CREATE TABLE IF NOT EXISTS {rejects} (message_id text PRIMARY KEY, received_at timestamptz NOT NULL,"
      " rejected_at timestamptz NOT NULL DEFAULT now(), reason text NOT NULL, body text NOT NULL,"
      " body_encrypted boolean NOT NULL);"
      "COMMENT ON TABLE {rejects} IS 'Messages sqs2pg refused, with why; ip/device_id masked, or the whole "
      "body "
      "encrypted when body_encrypted (recover with sqs2pg unmask)';"
      "COMMIT",
      fmt::arg("lock", kSchemaLockId), fmt::arg("table", table),
      fmt::arg("ledger", d.names.Quoted("_ledger")), fmt::arg("rejects", d.names.Quoted("_rejects")));
  if (Status st = d.Exec(ddl); !st.ok()) {
    d.Exec("ROLLBACK").ok();
    return st.Annotate(fmt::format("create table {}", table));
  }

  ASSIGN_OR_RETURN(PgResult cols,
                   d.Query("SELECT a.attname, t.typname, a.atttypmod, format_type(a.atttypid, a.atttypmod)"
                           " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
                           " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                           {table}));
  TableShape shape;
  d.column_types.assign(kRowColumns.size(), "");
  for (int i = 0; i < PQntuples(cols.get()); ++i) {
    std::string name = PQgetvalue(cols.get(), i, 0);
    std::string typname = PQgetvalue(cols.get(), i, 1);
    int typmod = std::atoi(PQgetvalue(cols.get(), i, 2));
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
  d.BuildStatements();
  d.staging_ready = false;
  RETURN_IF_ERROR(d.CreateStaging());
  return shape;
}

Result<LoadSummary> PostgresSink::Load(std::span<const ProcessedMessage> batch) {
  if (batch.empty()) return LoadSummary{};
  RETURN_IF_ERROR(impl_->EnsureConnected());
  RETURN_IF_ERROR(impl_->CreateStaging());
  return impl_->LoadSplitting(batch);
}

}  // namespace sqs2pg::sink
