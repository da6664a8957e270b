#include "sink/postgres/postgres_sink.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <algorithm>
#include <array>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/json_writer.h"
#include "common/log.h"
#include "sink/postgres/copy_format.h"
#include "sink/postgres/ledger_partitions.h"
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

std::string QuoteLiteral(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  return out + "'";
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

// What a failed statement means for the batch.
enum class Failure {
  kRetry,    // the connection, the server or a lock: the same batch may well load later
  kData,     // a value the table will not take: isolate the row and reject it
  kConfig,   // schema, privileges, authentication: nothing loads until an operator acts
  kMessage,  // refused for another reason (a trigger's RAISE, say): isolate the message
};

Failure Classify(PGconn* conn, const std::string& sqlstate) {
  if (PQstatus(conn) != CONNECTION_OK || sqlstate.empty() || sqlstate.starts_with("08"))
    return Failure::kRetry;
  if (sqlstate == "40001" || sqlstate == "40P01" ||  // serialization failure, deadlock
      sqlstate.starts_with("53") ||                  // insufficient resources, too many connections
      sqlstate.starts_with("57") ||                  // statement timeout, admin shutdown, crash recovery
      sqlstate == "55P03" || sqlstate == "55006" ||  // lock timeout, object in use
      sqlstate == "25006" ||  // read-only transaction: connected to a node that became a standby
      sqlstate == "58000" || sqlstate == "58030") {  // system error, I/O error
    return Failure::kRetry;
  }
  if (sqlstate.starts_with("22") || sqlstate.starts_with("23")) return Failure::kData;
  if (sqlstate.starts_with("42") || sqlstate.starts_with("28") || sqlstate.starts_with("3D") ||
      sqlstate.starts_with("3F") || sqlstate == "0A000") {
    return Failure::kConfig;
  }
  return Failure::kMessage;
}

// A Status whose code tells the caller what to do with the batch, and the failure class.
std::pair<Status, Failure> PgError(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string sqlstate = ResultField(res, PG_DIAG_SQLSTATE);
  std::string message = ResultField(res, PG_DIAG_MESSAGE_PRIMARY);
  if (message.empty()) {
    message = PQerrorMessage(conn);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  }
  std::string text = sqlstate.empty() ? fmt::format("{}: {}", what, message)
                                      : fmt::format("{}: {} (SQLSTATE {})", what, message, sqlstate);
  Failure failure = Classify(conn, sqlstate);
  switch (failure) {
    case Failure::kRetry:
      return {Status::Transient(std::move(text)), failure};
    case Failure::kData:
      return {Status::InvalidInput(std::move(text)), failure};
    default:
      return {Status::Permanent(std::move(text)), failure};
  }
}

// libpq settings sqs2pg needs whatever the user gives. Later keywords win in
// PQconnectdbParams, so these come after the user's conninfo.
constexpr std::array<std::pair<const char*, const char*>, 1> kForcedConnectionSettings = {{
    {"client_encoding", "UTF8"},  // our COPY text and character counts are UTF-8; kept across PQreset
}};

// Defaults the user's conninfo (or libpq's environment variables) can override: they come
// before it. Without them a dead host blocks a loader for the kernel's two hours of keepalive.
std::vector<std::pair<const char*, const char*>> DefaultConnectionSettings() {
  std::vector<std::pair<const char*, const char*>> out = {
      {"fallback_application_name", "sqs2pg"},
      {"keepalives", "1"},
      {"keepalives_idle", "10"},
      {"keepalives_interval", "5"},
      {"keepalives_count", "3"},
      // Unacknowledged data (a COPY to a host that vanished) fails after 30 s.
      {"tcp_user_timeout", "30000"},
  };
  // A keyword given here would hide libpq's environment variable for it.
  if (std::getenv("PGCONNECT_TIMEOUT") == nullptr) out.push_back({"connect_timeout", "10"});
  return out;
}

// libpq reports a failed connection only as text. These failures are the configuration's (or
// the server's settings), not an outage: retrying would only hide them.
bool IsConfigurationConnectError(const std::string& why) {
  for (const char* marker :
       {"certificate verify failed", "password authentication failed", "no pg_hba.conf entry",
        "does not exist", "SSL error: certificate", "server does not support SSL", "root certificate file",
        "invalid connection option", "invalid sslmode"}) {
    if (why.find(marker) != std::string::npos) return true;
  }
  return false;
}

// A notice of WARNING severity during COMMIT means its outcome is not what it seems. The case
// that matters: synchronous replication, when a COMMIT's wait for the standby is cancelled (a
// cancel request, or the server shutting down for a failover), answers OK with a WARNING ("might
// not have been replicated"): the batch is committed locally only, and may not exist on the node
// that survives. That warning has no SQLSTATE of its own and its text follows the server's
// lc_messages, so only the non-localized severity is read, never the message. Servers before 9.6
// do not send that field: their (English-only, then) severity is the fallback.
bool IsWarning(const PGresult* notice) {
  std::string severity = ResultField(notice, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (severity.empty()) severity = ResultField(notice, PG_DIAG_SEVERITY);
  return severity == "WARNING";
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

// What tells messages apart for the systemic-refusal check, without their values: which
// fields are null and how long each value is. Two good messages of one producer usually differ
// in some length; a bug that refuses one kind of message repeats one shape.
std::string ShapeKey(const ProcessedMessage& m) {
  const auto* row = std::get_if<LoginRow>(&m.record);
  if (row == nullptr) return "reject";
  auto len = [](const std::optional<std::string>& v) { return v ? static_cast<long>(v->size()) : -1L; };
  return fmt::format("{}/{}/{}/{}/{}/{}", row->user_id.size(), len(row->device_type), row->masked_ip.size(),
                     row->masked_device_id.size(), len(row->locale), len(row->app_version));
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

// A conninfo value, quoted when it holds a space, a quote or a backslash, or is empty.
std::string QuoteConninfoValue(std::string_view value) {
  if (!value.empty() && value.find_first_of(" '\\") == std::string_view::npos) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

}  // namespace

struct PostgresSink::Impl {
  PostgresSinkConfig config;
  TableNames names;
  PgConn conn;
  Failure last_failure = Failure::kRetry;  // of the newest error from Fail()
  std::string last_sqlstate;               // of the newest error from Fail() ("" if none)
  bool in_commit = false;                  // a COMMIT is under way: its notices are watched
  bool commit_warned = false;              // the notice receiver saw a WARNING during COMMIT (see IsWarning)
  bool reconnect = false;                  // drop the connection before the next batch
  std::atomic<bool> interrupted{false};
  // Guards `cancel` and `socket_fd` while the loader replaces them: Interrupt() and the watchdog
  // run on other threads. Never held across a connect (PQreset) or a cancel request (PQcancel):
  // both can block for as long as an unreachable host takes to time out.
  std::mutex cancel_mu;
  std::shared_ptr<PGcancel> cancel;  // shared with a cancel request still being sent
  int socket_fd = -1;                // the connection's socket; -1 while it is being replaced
  // The statement in progress was sent at this steady-clock time (ns; 0: none). A server whose
  // connection went silent, with TCP still acknowledged (a frozen proxy), would block libpq for
  // ever; past statement_timeout plus a margin the watchdog shuts the socket down, which fails
  // the call. Per statement, not per load: isolating a refused row runs many statements, and a
  // deadline over all of them would cut a long isolation off and start it again, for ever.
  std::atomic<std::int64_t> busy_since_ns{0};
  // Marks one statement for the watchdog, from its sending to its answer.
  struct Watched {
    Impl& d;
    explicit Watched(Impl& impl) : d(impl) {
      d.busy_since_ns = std::chrono::steady_clock::now().time_since_epoch().count();
    }
    ~Watched() { d.busy_since_ns = 0; }
    Watched(const Watched&) = delete;
    Watched& operator=(const Watched&) = delete;
  };
  std::thread watchdog;
  std::mutex watchdog_mu;
  std::condition_variable watchdog_cv;
  bool closing = false;
  bool counted_up = false;  // this connection is counted in sqs2pg_postgres_connections_up

  // After each call: counts this connection up or down, by libpq's view of it.
  void UpdateUp() {
    if (config.metrics == nullptr) return;
    bool up = PQstatus(conn.get()) == CONNECTION_OK;
    if (up != counted_up) config.metrics->postgres_connections_up.Add(up ? 1 : -1);
    counted_up = up;
  }

  void StartWatchdog();
  // REQUIRES: cancel_mu held. Reads socket_fd, not PQsocket(): the loader may be inside PQreset.
  void ShutDownSocketLocked() {
    if (socket_fd >= 0) ::shutdown(socket_fd, SHUT_RDWR);
  }
  // On the loader thread, after a (re)connect: the new socket and cancel handle.
  void PublishConnection() {
    std::shared_ptr<PGcancel> fresh(PQgetCancel(conn.get()), [](PGcancel* c) { PQfreeCancel(c); });
    std::lock_guard lock(cancel_mu);
    socket_fd = PQsocket(conn.get());
    cancel = std::move(fresh);
  }
  std::vector<std::string> column_types;  // format_type() of each kRowColumns entry, from Prepare()
  bool rejects_lack_shape_columns = false;
  // The ledger predates message_group_id and sequence_number and this role may not add them:
  // FIFO order is then not kept (one warning says what to run).
  bool ledger_lacks_order_columns = false;
  bool lacks_masked_ip_key_id = false;  // see TableShape::lacks_masked_ip_key_id
  bool warned_order_not_kept = false;
  std::string copy_rows_sql, copy_rejects_sql, merge_sql;
  // For batches from a FIFO queue: their order goes into a third staging table, and the ledger
  // insert takes it from there.
  std::string copy_order_sql, merge_ordered_sql;
  // The ledger is partitioned by day (false: one made by an earlier version that this role may
  // not migrate; it keeps working, unpartitioned).
  bool ledger_partitioned = false;
  bool owns_ledger = false;  // may create and drop its partitions
  // A ledger from before partitioning, renamed to <table>_ledger1 by the migration: still
  // consulted until every message it knew has expired (Unix ms), then dropped.
  bool legacy_ledger_in_use = false;
  std::int64_t legacy_ledger_expires_ms = 0;
  std::chrono::steady_clock::time_point next_maintenance{};

  std::int64_t NowMs() const {
    if (config.clock) return config.clock();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::string LedgerBase() const { return names.base + "_ledger"; }
  std::string LegacyLedger() const { return names.Quoted("_ledger1"); }
  // Migrates an unpartitioned ledger (as its owner) or says what to run; then maintains it.
  Status PrepareLedger();
  // --partition-by for a table just created (in CreateMissingTables' transaction): pg_partman's
  // create_parent where the extension is installed, else a default partition (day or month
  // partitions are made by MaintainTable).
  Status PartitionNewTable();
  // For a target table partitioned by sqs2pg (not pg_partman): "day" or "month", read from its
  // partitions' names or the flag; "" when sqs2pg does not make its partitions.
  std::string table_interval;
  std::string partman_schema, qualified_table;  // when table_interval is "partman"
  Status PrepareTablePartitions();
  std::vector<std::string> TablePartitionStatements(std::int64_t now_ms,
                                                    const std::set<std::string>& have) const;
  // The schema pg_partman is installed in, or "" without it.
  Result<std::string> PartmanSchema();
  // BEGIN, `setting` (a SET LOCAL, if any), then the transaction-scoped advisory lock `lock_id`,
  // so concurrent sqs2pg processes take turns; Abort() rolls back and returns `st`.
  Status BeginLocked(std::int64_t lock_id, std::string_view setting = "");
  Status Abort(Status st) {
    if (PQstatus(conn.get()) == CONNECTION_OK) ExecAs("ROLLBACK", "rollback").ok();
    return st;
  }
  Status MigrateLedger();
  Result<bool> RefreshLegacyLedger(std::int64_t now_ms, std::int64_t keep_ms);
  // Creates the partitions from the first kept day to days_ahead after today, drops older ones
  // (owner only), and stops consulting the pre-partitioning ledger once it has expired.
  Status MaintainLedger();
  MaintenanceSummary maintained;  // what MaintainLedger() has changed, in all

  Status Fail(const PGresult* res, std::string_view what) {
    auto [st, failure] = PgError(conn.get(), res, what);
    last_failure = failure;
    last_sqlstate = ResultField(res, PG_DIAG_SQLSTATE);
    // A standby after a failover stays one: reconnect, so target_session_attrs finds the primary.
    if (ResultField(res, PG_DIAG_SQLSTATE) == "25006") reconnect = true;
    return st;
  }
  Status SetUpSession();
  static void OnNotice(void* self, const PGresult* notice);
  Status Exec(const std::string& sql, ExecStatusType expected = PGRES_COMMAND_OK);
  // One statement; `what` names it in errors instead of the SQL text.
  Status ExecAs(const std::string& sql, std::string_view what, ExecStatusType expected = PGRES_COMMAND_OK);
  Result<PgResult> Query(const std::string& sql, const std::vector<std::string>& params = {},
                         std::string_view what = "query catalog");
  Result<bool> Exists(std::string_view suffix);
  Status CreateMissingTables();
  Result<TableShape> ReadShape();
  // Whether the table <suffix> lacks any of `columns`. The owner adds them with `migrate_sql`
  // (and then they are not lacking); any other role gets true.
  Result<bool> LacksColumns(std::string_view suffix, std::span<const std::string_view> columns,
                            const std::string& migrate_sql, std::string_view what);
  Status CheckPrivileges();
  Status PrivilegeHint(Status st) const;
  Status EnsureConnected();
  Status CreateStaging(bool ordered);
  // COPY of `rows` rows; an error unless the server reports exactly that many.
  Status Copy(const std::string& sql, const std::string& data, size_t rows);
  Result<LoadSummary> LoadOnce(std::span<const ProcessedMessage> batch);
  // Isolating refused rows and messages: what one load found out.
  struct Isolation {
    LoadSummary summary;                           // of the parts that committed
    std::vector<const ProcessedMessage*> refused;  // refused alone (this try or an earlier one)
    std::vector<const ProcessedMessage*> untried;  // not tried: the database refuses everything
  };
  struct Refusal {
    Status why;
    Failure failure;  // kData or kMessage
    std::string sqlstate;
  };
  // Message id -> why the database refused it alone. Kept across tries of a batch, erased once
  // the message is rejected or left; cleared past kMaxRemembered (it only saves statements).
  static constexpr size_t kMaxRemembered = 100'000;
  std::unordered_map<std::string, Refusal> refusals;
  // Systemic refusals: data errors with one SQLSTATE for kSystemicShapes messages of different
  // shapes in a row (no row loaded in between) are the database's fault (no partition
  // for the date, a reference table behind), not the messages': they are left in the queue.
  static constexpr size_t kSystemicShapes = 3;
  std::string streak_sqlstate;
  std::set<std::string> streak_shapes;
  std::string systemic_sqlstate;  // non-empty while refusals with it are treated as systemic
  void NoteDataRefusal(const std::string& sqlstate, std::string shape);
  void ResetRefusalStreak();
  // Loads the batch, halving around refused rows; stores the refused as rejects (one
  // transaction), or leaves them for redelivery (see LoadSummary::left_for_redelivery).
  Result<LoadSummary> LoadIsolating(std::span<const ProcessedMessage> batch);
  Status Isolate(std::span<const ProcessedMessage> batch, Isolation& found);
  ProcessedMessage RefusedRowReject(const ProcessedMessage& message, const Status& why,
                                    std::string_view reason);
  void BuildStatements();
};

Status PostgresSink::Impl::Exec(const std::string& sql, ExecStatusType expected) {
  Watched watched(*this);
  PgResult res(PQexec(conn.get(), sql.c_str()));
  if (PQresultStatus(res.get()) != expected) return Fail(res.get(), sql.substr(0, sql.find(' ', 12)));
  return Status::Ok();
}

Status PostgresSink::Impl::ExecAs(const std::string& sql, std::string_view what, ExecStatusType expected) {
  Watched watched(*this);
  PgResult res(PQexec(conn.get(), sql.c_str()));
  if (PQresultStatus(res.get()) != expected) return Fail(res.get(), what);
  return Status::Ok();
}

Result<PgResult> PostgresSink::Impl::Query(const std::string& sql, const std::vector<std::string>& params,
                                           std::string_view what) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  Watched watched(*this);
  PgResult res(PQexecParams(conn.get(), sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                            nullptr, nullptr, 0));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return Fail(res.get(), what);
  return res;
}

void PostgresSink::Impl::OnNotice(void* self, const PGresult* notice) {
  // Runs on the loader thread, inside the PQexec that caused the notice.
  auto* impl = static_cast<Impl*>(self);
  if (impl->in_commit && IsWarning(notice)) impl->commit_warned = true;
}

Status PostgresSink::Impl::SetUpSession() {
  PQsetNoticeReceiver(conn.get(), &Impl::OnNotice, this);
  PublishConnection();
  // Our statement timeout only where nobody set one (conninfo options, PGOPTIONS, the role).
  std::string sql = fmt::format(
      "SELECT set_config('statement_timeout', '{}ms', false) WHERE current_setting('statement_timeout') = "
      "'0'",
      config.statement_timeout.count());
  Watched watched(*this);
  PgResult res(PQexec(conn.get(), sql.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return Fail(res.get(), "set statement_timeout");
  return Status::Ok();
}

Status PostgresSink::Impl::EnsureConnected() {
  if (interrupted) return Status::Transient("interrupted: shutting down");
  // `reconnect`: the server may still answer, but as a standby now, or it could not replicate.
  if (PQstatus(conn.get()) == CONNECTION_OK && !reconnect) return Status::Ok();
  reconnect = false;
  if (config.metrics != nullptr) config.metrics->postgres_reconnects.Inc();
  // PQreset reconnects with the same settings, trying every host of a multi-host conninfo again.
  {
    // The socket number changes here: nobody may shut down the old number (a new file may get
    // it). The lock is not held across the connect, which can take connect_timeout per host:
    // Interrupt() on the event loop thread must never wait for it.
    std::lock_guard lock(cancel_mu);
    socket_fd = -1;
  }
  PQreset(conn.get());
  if (PQstatus(conn.get()) == CONNECTION_OK) PublishConnection();
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn.get());
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    const char* host = PQhost(conn.get());
    const char* port = PQport(conn.get());
    return Status::Transient(fmt::format("cannot reconnect to Postgres at {}:{}: {}",
                                         host ? host : "(default)", port ? port : "(default)", why));
  }
  return SetUpSession();
}

// The staging tables live only inside each load's transaction (ON COMMIT DROP). Session-long temp
// tables are dropped when the connection ends, in a transaction of their own whose commit waits
// for a synchronous standby: during a failover that wait never ends, and the old primary cannot
// finish shutting down (seen with pg_auto_failover).
Status PostgresSink::Impl::CreateStaging(bool ordered) {
  if (ledger_partitioned) {
    RETURN_IF_ERROR(Exec(
        "CREATE TEMP TABLE sqs2pg_stage_sent (message_id text NOT NULL, sent_ms bigint NOT NULL) ON COMMIT "
        "DROP"));
  }
  std::string rows = "CREATE TEMP TABLE sqs2pg_stage (message_id text NOT NULL";
  for (size_t i = 0; i < kRowColumns.size(); ++i) {
    rows += fmt::format(", {} {}", QuoteIdentifier(kRowColumns[i]), column_types[i]);
  }
  rows += ") ON COMMIT DROP";
  RETURN_IF_ERROR(Exec(rows));
  RETURN_IF_ERROR(
      Exec("CREATE TEMP TABLE sqs2pg_stage_rejects (message_id text NOT NULL, received_at "
           "timestamptz, "
           "reason text, body text, body_encrypted boolean, body_bytes bigint, body_shape text) "
           "ON COMMIT DROP"));
  if (ordered) {
    RETURN_IF_ERROR(
        Exec("CREATE TEMP TABLE sqs2pg_stage_order (message_id text NOT NULL, message_group_id text, "
             "sequence_number numeric) ON COMMIT DROP"));
  }
  return Status::Ok();
}

void PostgresSink::Impl::BuildStatements() {
  std::string columns, selected;
  for (const char* c : kRowColumns) {
    columns += (columns.empty() ? "" : ", ") + QuoteIdentifier(c);
    selected += (selected.empty() ? "s." : ", s.") + QuoteIdentifier(c);
  }
  copy_rows_sql = fmt::format("COPY pg_temp.sqs2pg_stage (message_id, {}) FROM STDIN", columns);
  // The same for every row of this process, so it is a constant of the INSERT, not a COPY column.
  if (!lacks_masked_ip_key_id && !config.masked_ip_key_id.empty()) {
    columns += ", masked_ip_key_id";
    selected += ", " + QuoteLiteral(config.masked_ip_key_id);
  }
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
  std::string merge_rest = fmt::format(
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
      // A reject whose id the rejects table already holds (committed before a ledger migration
      // that was not consulted, or a rejects table shared by two ledgers) is a duplicate, not an
      // error that would fail its batch at every delivery.
      " ORDER BY r.message_id ON CONFLICT DO NOTHING RETURNING 1)"
      " SELECT (SELECT count(*) FROM loaded), (SELECT count(*) FROM rejected)",
      fmt::arg("table", names.Quoted()), fmt::arg("rejects", names.Quoted("_rejects")),
      fmt::arg("columns", columns), fmt::arg("selected", selected),
      fmt::arg("reject_columns", reject_columns), fmt::arg("reject_values", reject_values));
  // The ledger insert. Partitioned, its key is (message_id, sent_at): a redelivery carries the
  // same SentTimestamp, so it lands in the same day partition as its first delivery and
  // conflicts there; the ledger from before partitioning is asked too, until all it knew has
  // expired. `ordered`: a FIFO batch, whose group and sequence number the ledger keeps.
  auto fresh = [&](bool ordered) {
    std::string columns = "message_id, outcome", values = "s.message_id, s.outcome", from;
    if (ledger_partitioned) {
      columns += ", sent_at";
      values += ", timestamptz 'epoch' + t.sent_ms * interval '1 millisecond'";
      from += " JOIN pg_temp.sqs2pg_stage_sent t ON t.message_id = s.message_id";
    }
    if (ordered) {
      columns += ", message_group_id, sequence_number";
      values += ", o.message_group_id, o.sequence_number";
      from += " LEFT JOIN pg_temp.sqs2pg_stage_order o ON o.message_id = s.message_id";
    }
    if (legacy_ledger_in_use) {
      from += fmt::format(" WHERE NOT EXISTS (SELECT 1 FROM {} l WHERE l.message_id = s.message_id)",
                          LegacyLedger());
    }
    return fmt::format(
        "WITH staged AS ("
        " SELECT message_id, 'loaded' AS outcome FROM pg_temp.sqs2pg_stage"
        " UNION ALL SELECT message_id, 'rejected' FROM pg_temp.sqs2pg_stage_rejects),"
        " fresh AS ("
        " INSERT INTO {ledger} ({columns}) SELECT {values} FROM staged s{from}"
        " ON CONFLICT ({key}) DO NOTHING RETURNING message_id, outcome),",
        fmt::arg("ledger", names.Quoted("_ledger")), fmt::arg("columns", columns), fmt::arg("values", values),
        fmt::arg("from", from), fmt::arg("key", ledger_partitioned ? "message_id, sent_at" : "message_id"));
  };
  merge_sql = fresh(false) + merge_rest;
  merge_ordered_sql = fresh(true) + merge_rest;
  copy_order_sql =
      "COPY pg_temp.sqs2pg_stage_order (message_id, message_group_id, sequence_number) FROM STDIN";
}

Status PostgresSink::Impl::Copy(const std::string& sql, const std::string& data, size_t rows) {
  // PQputCopyData takes an int length: send in chunks, so no batch size can overflow it.
  constexpr size_t kChunk = size_t{1} << 20;
  PGconn* c = conn.get();
  Watched watched(*this);
  PgResult begin(PQexec(c, sql.c_str()));
  if (PQresultStatus(begin.get()) != PGRES_COPY_IN) return Fail(begin.get(), sql.substr(0, 40));
  for (size_t at = 0; at < data.size(); at += kChunk) {
    size_t n = std::min(kChunk, data.size() - at);
    if (PQputCopyData(c, data.data() + at, static_cast<int>(n)) != 1) return Fail(nullptr, "COPY data");
  }
  if (PQputCopyEnd(c, nullptr) != 1) return Fail(nullptr, "COPY end");
  PgResult end(PQgetResult(c));
  Status st = Status::Ok();
  if (PQresultStatus(end.get()) != PGRES_COMMAND_OK) {
    st = Fail(end.get(), "COPY");
  } else if (std::string copied = PQcmdTuples(end.get()); copied != std::to_string(rows)) {
    // COPY text that split or merged rows would load something else than the batch.
    last_failure = Failure::kRetry;
    st = Status::Permanent(fmt::format("COPY took {} rows where {} were sent", copied, rows));
  }
  while (PgResult extra{PQgetResult(c)}) {
  }  // drain to nullptr so the connection is ready for the next command
  return st;
}

Result<LoadSummary> PostgresSink::Impl::LoadOnce(std::span<const ProcessedMessage> batch) {
  std::string rows, rejects, order, sent;
  size_t row_count = 0, reject_count = 0, order_count = 0;
  for (const ProcessedMessage& m : batch) {
    if (!m.fifo.message_group_id.empty() && !ledger_lacks_order_columns) {
      ++order_count;
      AppendCopyText(order, m.message_id);
      order.push_back('\t');
      AppendCopyText(order, m.fifo.message_group_id);
      order.push_back('\t');
      if (m.fifo.sequence_number.empty()) {
        order += "\\N";
      } else {
        AppendCopyText(order, m.fifo.sequence_number);
      }
      order.push_back('\n');
    } else if (!m.fifo.message_group_id.empty() && !warned_order_not_kept) {
      warned_order_not_kept = true;
      spdlog::warn(
          "{} has no message_group_id and sequence_number columns and this role may not add them: FIFO order "
          "is not kept; a DBA can apply the output of `sqs2pg schema --table {}`",
          names.Quoted("_ledger"), config.table);
    }
    if (ledger_partitioned) {
      AppendCopyText(sent, m.message_id);
      sent += fmt::format("\t{}\n", m.sent_timestamp_ms);
    }
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
  if (Status st = CreateStaging(order_count > 0); !st.ok()) return fail(st);
  if (order_count > 0) {
    if (Status st = Copy(copy_order_sql, order, order_count); !st.ok()) return fail(st);
  }
  if (ledger_partitioned) {
    if (Status st =
            Copy("COPY pg_temp.sqs2pg_stage_sent (message_id, sent_ms) FROM STDIN", sent, batch.size());
        !st.ok()) {
      return fail(st);
    }
  }
  if (row_count > 0) {
    if (Status st = Copy(copy_rows_sql, rows, row_count); !st.ok()) return fail(st);
  }
  if (reject_count > 0) {
    if (Status st = Copy(copy_rejects_sql, rejects, reject_count); !st.ok()) return fail(st);
  }
  PgResult merged = [&] {
    Watched watched(*this);
    return PgResult(PQexec(conn.get(), (order_count > 0 ? merge_ordered_sql : merge_sql).c_str()));
  }();
  if (PQresultStatus(merged.get()) != PGRES_TUPLES_OK) {
    return fail(Fail(merged.get(), fmt::format("insert into {}", names.Quoted())));
  }
  LoadSummary summary;
  summary.rows_loaded = static_cast<size_t>(ParseCount(PQgetvalue(merged.get(), 0, 0)));
  summary.rejects_stored = static_cast<size_t>(ParseCount(PQgetvalue(merged.get(), 0, 1)));
  summary.duplicates = batch.size() - std::min(batch.size(), summary.rows_loaded + summary.rejects_stored);
  commit_warned = false;
  in_commit = true;
  auto commit_start = std::chrono::steady_clock::now();
  Status committed = Exec("COMMIT");
  in_commit = false;
  if (!committed.ok()) return fail(committed);
  if (config.metrics != nullptr) {
    config.metrics->postgres_commit_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_start).count());
  }
  if (commit_warned) {
    // An unknown outcome: keep the messages. They come back and the ledger on whichever node
    // survives decides whether they are loaded or skipped.
    reconnect = true;
    last_failure = Failure::kRetry;
    return Status::Transient(
        "COMMIT answered with a WARNING (e.g. a synchronous standby did not confirm it: a cancelled wait, "
        "or the server going down for a failover); its outcome is treated as unknown: the batch will be "
        "loaded again, and the ledger skips what did commit");
  }
  if (config.metrics != nullptr) config.metrics->postgres_commits.Inc();
  return summary;
}

Status PostgresSink::Impl::Isolate(std::span<const ProcessedMessage> batch, Isolation& found) {
  auto result = LoadOnce(batch);
  if (result.ok()) {
    // Rows load between the refusals: they are the messages' fault, not the database's.
    if (result->rows_loaded > 0) ResetRefusalStreak();
    found.summary += *result;
    return Status::Ok();
  }
  // One row (or message) spoils the whole COPY: halve the batch until it is found.
  bool isolate = last_failure == Failure::kData || last_failure == Failure::kMessage;
  if (!isolate) return result.status();
  if (last_failure == Failure::kData && !systemic_sqlstate.empty() && last_sqlstate == systemic_sqlstate) {
    // The database refuses everything with this SQLSTATE: halving would only turn good
    // messages into rejects, one statement each. Leave them untried.
    for (const ProcessedMessage& m : batch) found.untried.push_back(&m);
    return Status::Ok();
  }
  if (batch.size() == 1) {
    const ProcessedMessage& m = batch.front();
    // Remembered across a retry of this batch (a lost connection, a watchdog cut): isolation
    // does not start again from nothing.
    if (refusals.size() >= kMaxRemembered) refusals.clear();
    refusals[m.message_id] = Refusal{result.status(), last_failure, last_sqlstate};
    found.refused.push_back(&m);
    if (last_failure == Failure::kData) NoteDataRefusal(last_sqlstate, ShapeKey(m));
    return Status::Ok();
  }
  size_t half = batch.size() / 2;
  RETURN_IF_ERROR(Isolate(batch.first(half), found));
  return Isolate(batch.subspan(half), found);
}

void PostgresSink::Impl::NoteDataRefusal(const std::string& sqlstate, std::string shape) {
  if (sqlstate != streak_sqlstate) {
    streak_sqlstate = sqlstate;
    streak_shapes.clear();
  }
  streak_shapes.insert(std::move(shape));
  if (streak_shapes.size() >= kSystemicShapes && systemic_sqlstate != sqlstate) {
    systemic_sqlstate = sqlstate;
    log::Error(
        {{"table", config.table}, {"sqlstate", sqlstate}},
        "the database refused {} messages of different shapes in a row with SQLSTATE {}: the fault is the "
        "database's, not the messages'; they are left in the queue, not rejected, until a load succeeds",
        streak_shapes.size(), sqlstate);
  }
}

void PostgresSink::Impl::ResetRefusalStreak() {
  streak_sqlstate.clear();
  streak_shapes.clear();
  if (!systemic_sqlstate.empty()) {
    spdlog::info("{} takes rows again: the systemic refusal (SQLSTATE {}) is over", names.Quoted(),
                 systemic_sqlstate);
  }
  systemic_sqlstate.clear();
}

Result<LoadSummary> PostgresSink::Impl::LoadIsolating(std::span<const ProcessedMessage> batch) {
  Isolation found;
  // Messages an earlier try of this batch isolated and found refused are not tried again.
  std::vector<ProcessedMessage> to_try_copy;
  std::span<const ProcessedMessage> to_try = batch;
  if (!refusals.empty()) {
    bool any_known = std::any_of(batch.begin(), batch.end(), [this](const ProcessedMessage& m) {
      return refusals.contains(m.message_id);
    });
    if (any_known) {
      for (const ProcessedMessage& m : batch) {
        if (refusals.contains(m.message_id)) {
          found.refused.push_back(&m);
        } else {
          to_try_copy.push_back(m);
        }
      }
      to_try = to_try_copy;
    }
  }
  if (!to_try.empty()) RETURN_IF_ERROR(Isolate(to_try, found));
  // Pointers into to_try_copy must be read before it goes: they are, below, in this scope.
  LoadSummary& summary = found.summary;
  if (found.refused.empty() && found.untried.empty()) return std::move(summary);
  std::vector<ProcessedMessage> rejects;
  std::vector<std::string> decided;
  auto leave = [&](const ProcessedMessage& m) {
    summary.left_for_redelivery.push_back(m.message_id);
    decided.push_back(m.message_id);
  };
  for (const ProcessedMessage* m : found.untried) leave(*m);
  for (const ProcessedMessage* m : found.refused) {
    auto known = refusals.find(m->message_id);
    if (known == refusals.end()) {  // forgotten (kMaxRemembered): tried again at its next delivery
      leave(*m);
      continue;
    }
    const Refusal& r = known->second;
    if (r.failure == Failure::kData) {
      if (!systemic_sqlstate.empty() && r.sqlstate == systemic_sqlstate) {
        leave(*m);
        continue;
      }
      if (!std::holds_alternative<LoginRow>(m->record)) {
        // The rejects table itself refused a reject: a schema matter for an operator.
        return Status::Permanent("storing a reject failed: " + r.why.message());
      }
      rejects.push_back(RefusedRowReject(*m, r.why, "database refused the row"));
      decided.push_back(m->message_id);
      continue;
    }
    // Not its data as such: maybe a passing condition of a trigger. SQS delivers it again, and
    // only after max_receives deliveries does it become a reject.
    if (config.max_receives <= 0 || m->receive_count < config.max_receives ||
        !std::holds_alternative<LoginRow>(m->record)) {
      log::Warn({{"message_id", m->message_id},
                 {"table", config.table},
                 {"attempt", m->receive_count},
                 {"sqlstate", r.sqlstate}},
                "message {} was refused by the database (delivery {}), left for SQS to deliver again: {}",
                m->message_id, m->receive_count, r.why.message());
      leave(*m);
      continue;
    }
    rejects.push_back(RefusedRowReject(
        *m, r.why, fmt::format("database refused the message at each of {} deliveries", m->receive_count)));
    decided.push_back(m->message_id);
  }
  if (!systemic_sqlstate.empty() && !summary.left_for_redelivery.empty()) {
    summary.systemic_refusal = fmt::format(
        "the database refuses messages of different shapes with SQLSTATE {} (a fault of the database, e.g. "
        "no "
        "partition for their date, or a reference table behind): {} messages left in the queue, not rejected",
        systemic_sqlstate, summary.left_for_redelivery.size());
  }
  if (!rejects.empty()) {
    // All of this batch's refused rows in one transaction.
    auto stored = LoadOnce(rejects);
    if (!stored.ok()) {
      // A deadlock, a lost connection or an unreplicated COMMIT while storing them is passing:
      // the batch is tried again (what committed is skipped by the ledger, what was refused is
      // remembered). Anything else is for an operator.
      std::string why = fmt::format("storing {} rejects for rows the database refused failed: {}",
                                    rejects.size(), stored.status().message());
      return last_failure == Failure::kRetry ? Status::Transient(std::move(why))
                                             : Status::Permanent(std::move(why));
    }
    stored->refused_by_database = stored->rejects_stored;
    summary += *stored;
  }
  for (const std::string& id : decided) refusals.erase(id);
  return std::move(summary);
}

ProcessedMessage PostgresSink::Impl::RefusedRowReject(const ProcessedMessage& message, const Status& why,
                                                      std::string_view reason) {
  const LoginRow& row = std::get<LoginRow>(message.record);
  // Kept like every other reject body: encrypted whole, with its size and shape in clear.
  std::string json = RowAsJson(row);
  Rejection rejection;
  rejection.reason = fmt::format("{}: {}", reason, SafeDatabaseReason(why.message()));
  rejection.body_bytes = json.size();
  rejection.body_shape = RowShape(row);
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
  reject.sent_timestamp_ms = message.sent_timestamp_ms;  // the ledger row's key, as for the row
  return reject;
}

void PostgresSink::Impl::StartWatchdog() {
  watchdog = std::thread([this] {
    auto deadline = config.statement_timeout + config.watchdog_margin;
    // Looks ten times per deadline (at most once a second): a short test deadline is kept too.
    auto tick = std::clamp<std::chrono::milliseconds>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline) / 10, std::chrono::milliseconds(10),
        std::chrono::seconds(1));
    std::unique_lock lock(watchdog_mu);
    while (!watchdog_cv.wait_for(lock, tick, [this] { return closing; })) {
      std::int64_t since = busy_since_ns.load();
      if (since == 0) continue;
      auto busy = std::chrono::steady_clock::now().time_since_epoch() - std::chrono::nanoseconds(since);
      if (busy < deadline) continue;
      log::Warn(
          {{"table", config.table}},
          "Postgres has not answered a statement for {} s: closing the connection to retry on a new one",
          std::chrono::duration_cast<std::chrono::seconds>(busy).count());
      std::lock_guard cancel_lock(cancel_mu);
      ShutDownSocketLocked();
      busy_since_ns = 0;  // once per stuck call
    }
  });
}

PostgresSink::PostgresSink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->StartWatchdog();
  impl_->UpdateUp();
}
PostgresSink::~PostgresSink() {
  if (impl_->counted_up) impl_->config.metrics->postgres_connections_up.Add(-1);
  {
    std::lock_guard lock(impl_->watchdog_mu);
    impl_->closing = true;
  }
  impl_->watchdog_cv.notify_all();
  if (impl_->watchdog.joinable()) impl_->watchdog.join();
}

Result<std::unique_ptr<PostgresSink>> PostgresSink::Connect(const PostgresSinkConfig& config) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  ASSIGN_OR_RETURN(impl->names, ParseTableName(config.table));
  // Our defaults, then the user's conninfo (dbname is expanded as a whole conninfo string or
  // URI), then what must hold whatever the user says: later keywords win.
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : DefaultConnectionSettings()) {
    keys.push_back(k);
    values.push_back(v);
  }
  keys.push_back("dbname");
  values.push_back(config.conninfo.c_str());
  for (const auto& [k, v] : kForcedConnectionSettings) {
    keys.push_back(k);
    values.push_back(v);
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  impl->conn = PgConn(PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1));
  if (!impl->conn) return Status::Transient("cannot connect to Postgres: out of memory");
  if (PQstatus(impl->conn.get()) != CONNECTION_OK) {
    std::string why = PQerrorMessage(impl->conn.get());
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    const char* host = PQhost(impl->conn.get());
    const char* port = PQport(impl->conn.get());
    if (IsConfigurationConnectError(why)) {
      // Waiting will not fix a wrong password, certificate or database name: say so at once.
      return Status::Permanent(fmt::format("cannot connect to Postgres at {}:{}: {}",
                                           host ? host : "(default)", port ? port : "(default)", why));
    }
    return Status::Transient(fmt::format("cannot connect to Postgres at {}:{}: {}", host ? host : "(default)",
                                         port ? port : "(default)", why));
  }
  // The notice receiver also keeps notices such as "relation already exists, skipping" off stderr.
  RETURN_IF_ERROR(impl->SetUpSession());
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

// The ledger, partitioned by the day of SentTimestamp, with a default partition for the rows no
// day partition takes (a role that may not create partitions, a clock far off). Day partitions
// are made by PostgresSink (MaintainLedger), which knows the retention.
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

// partition_by: "", "day" or "month" (the partitions themselves are made after creation).
std::vector<TableDdl> SchemaDdl(const TableNames& names, std::string_view partition_by = "") {
  std::string table = names.Quoted(), ledger = names.Quoted("_ledger"), rejects = names.Quoted("_rejects");
  return {
      {"",
       fmt::format("CREATE TABLE IF NOT EXISTS {} (user_id varchar(128), device_type varchar(32), "
                   "masked_ip varchar(256), masked_device_id varchar(256), locale varchar(32), "
                   "app_version varchar(15), create_date date, masked_ip_key_id text){}",
                   table, partition_by.empty() ? "" : " PARTITION BY RANGE (create_date)"),
       fmt::format(
           "COMMENT ON COLUMN {}.masked_ip_key_id IS 'The id of the key that masked masked_ip: an "
           "address-valued mask (ipcrypt-*, cryptopan) carries none of its own. sqs2pg rekey uses it'",
           table)},
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

// Rejects tables made before body_bytes and body_shape existed.
constexpr std::string_view kRejectsShapeColumns[] = {"body_bytes", "body_shape"};
std::string MigrateRejectsSql(const TableNames& names) {
  return fmt::format(
      "ALTER TABLE {} ADD COLUMN IF NOT EXISTS body_bytes bigint, ADD COLUMN IF NOT EXISTS body_shape text",
      names.Quoted("_rejects"));
}

// Tables made before sqs2pg recorded which key masked each ip. Adding a nullable column without a
// default only changes the catalog: no table rewrite, however many rows.
constexpr std::string_view kKeyIdColumns[] = {"masked_ip_key_id"};
std::string MigrateKeyIdSql(const TableNames& names) {
  return fmt::format("ALTER TABLE {} ADD COLUMN IF NOT EXISTS masked_ip_key_id text", names.Quoted());
}

// Ledgers made before sqs2pg kept the order of FIFO messages.
constexpr std::string_view kLedgerOrderColumns[] = {"message_group_id", "sequence_number"};
std::string MigrateLedgerSql(const TableNames& names) {
  return fmt::format(
      "ALTER TABLE {} ADD COLUMN IF NOT EXISTS message_group_id text, ADD COLUMN IF NOT EXISTS "
      "sequence_number "
      "numeric",
      names.Quoted("_ledger"));
}

// A ledger from before partitioning (a plain table) becomes <table>_ledger1, so the partitioned
// one can take its name; sqs2pg still consults it until all it knew has expired, then drops it.
// `migrated_at_ms`: an SQL expression for the migration's time in Unix ms; the server's clock
// unless sqs2pg migrates, which records its own (the clock its expiry is later compared with;
// a skew of minutes is covered by the retention's margin of a day).
std::string RenameUnpartitionedLedgerSql(
    const TableNames& names,
    std::string_view migrated_at_ms = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint") {
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

bool IsPrivilegeError(const Status& st) { return st.message().find("SQLSTATE 42501") != std::string::npos; }

}  // namespace

std::string RedactedConninfo(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    // libpq's message may quote the text, password included: say only that it did not parse.
    PQfreemem(error);
    return "[a conninfo libpq cannot parse; not shown]";
  }
  std::string out;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (!out.empty()) out += ' ';
    // libpq marks every option it would not display with dispchar "*": password, sslpassword, and
    // whatever a later libpq adds. Going by that mark, not by a list of names, hides them all.
    const bool secret =
        o->dispchar != nullptr && std::string_view(o->dispchar).find('*') != std::string_view::npos;
    out += fmt::format("{}={}", o->keyword, secret ? "[redacted]" : QuoteConninfoValue(o->val));
  }
  PQconninfoFree(options);
  return out;
}

Result<std::string> SchemaScript(std::string_view table, std::string_view role) {
  ASSIGN_OR_RETURN(TableNames names, ParseTableName(table));
  if (role.find('\0') != std::string_view::npos) return Status::InvalidInput("role name holds U+0000");
  std::string out = fmt::format(
      "-- sqs2pg schema for table {}: apply as the tables' owner (or a superuser), e.g. psql -f.\n"
      "-- Idempotent. With these in place sqs2pg runs no DDL at start.\n"
      "BEGIN;\n",
      names.Quoted());
  out += "-- A ledger from before partitioning is renamed <table>_ledger1; sqs2pg drops it once expired:\n" +
         RenameUnpartitionedLedgerSql(names) + ";\n";
  for (const TableDdl& t : SchemaDdl(names)) {
    out += t.create + ";\n";
    if (!t.comment.empty()) out += t.comment + ";\n";
  }
  out += "-- Rejects tables from before sqs2pg kept body_bytes and body_shape:\n" + MigrateRejectsSql(names) +
         ";\n";
  out += "-- Ledgers from before sqs2pg kept the order of FIFO messages:\n" + MigrateLedgerSql(names) + ";\n";
  out += "-- Tables from before sqs2pg recorded which key masked each ip:\n" + MigrateKeyIdSql(names) + ";\n";
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
  for (TableDdl& t : SchemaDdl(names, config.partition_by)) {
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

Status PostgresSink::Impl::BeginLocked(std::int64_t lock_id, std::string_view setting) {
  RETURN_IF_ERROR(ExecAs("BEGIN", "begin"));
  if (!setting.empty()) {
    if (Status st = ExecAs(std::string(setting), setting); !st.ok()) return Abort(std::move(st));
  }
  if (Status st = ExecAs(fmt::format("SELECT pg_advisory_xact_lock({})", lock_id), "take the schema lock",
                         PGRES_TUPLES_OK);
      !st.ok()) {
    return Abort(std::move(st));
  }
  return Status::Ok();
}

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

Result<TableShape> PostgresSink::Prepare() {
  Impl& d = *impl_;
  if (Status st = d.CreateMissingTables(); !st.ok()) return d.PrivilegeHint(std::move(st));
  auto shape = d.ReadShape();
  if (!shape.ok()) return d.PrivilegeHint(shape.status());
  auto lacking = d.LacksColumns("_rejects", kRejectsShapeColumns, MigrateRejectsSql(d.names),
                                "body_bytes and body_shape");
  if (!lacking.ok()) return d.PrivilegeHint(lacking.status());
  shape->rejects_lack_shape_columns = d.rejects_lack_shape_columns = *lacking;
  if (Status st = d.PrepareTablePartitions(); !st.ok()) return d.PrivilegeHint(std::move(st));
  if (Status st = d.PrepareLedger(); !st.ok()) return d.PrivilegeHint(std::move(st));
  lacking = d.LacksColumns("_ledger", kLedgerOrderColumns, MigrateLedgerSql(d.names),
                           "message_group_id and sequence_number");
  if (!lacking.ok()) return d.PrivilegeHint(lacking.status());
  d.ledger_lacks_order_columns = *lacking;
  lacking = d.LacksColumns("", kKeyIdColumns, MigrateKeyIdSql(d.names), "masked_ip_key_id");
  if (!lacking.ok()) return d.PrivilegeHint(lacking.status());
  shape->lacks_masked_ip_key_id = d.lacks_masked_ip_key_id = *lacking;
  RETURN_IF_ERROR(d.CheckPrivileges());
  d.BuildStatements();
  if (Status st = d.CreateStaging(false); !st.ok()) return d.PrivilegeHint(std::move(st));
  return shape;
}

Result<MaintenanceSummary> PostgresSink::Maintain() {
  Impl& d = *impl_;
  ASSIGN_OR_RETURN(TableShape shape, Prepare());
  (void)shape;
  if (!d.owns_ledger) {
    const char* user = PQuser(d.conn.get());
    return Status::Permanent(fmt::format(
        "role {} does not own {}: only its owner can create and drop its partitions; run `sqs2pg maintain` "
        "as the owner (the role that applied `sqs2pg schema`)",
        user ? user : "(unknown)", d.names.Quoted("_ledger")));
  }
  // Prepare() ran it too, but a failure there is only a warning: here it is the answer.
  RETURN_IF_ERROR(d.MaintainLedger());
  return d.maintained;
}

void PostgresSink::Interrupt() {
  impl_->interrupted = true;
  std::shared_ptr<PGcancel> cancel;
  {
    std::lock_guard lock(impl_->cancel_mu);
    // First the socket: a server that does not answer would not hear a cancel either, and the
    // loader's call (or its next one, if it is between statements) must fail now.
    impl_->ShutDownSocketLocked();
    cancel = impl_->cancel;
  }
  if (!cancel) return;
  // Then ask the server to stop the statement, so it does not hold locks for nothing. PQcancel
  // opens a new connection, which to an unreachable host blocks until the kernel gives up: on a
  // thread of its own, which owns a share of the cancel handle (the process may end first).
  std::thread([cancel] {
    char why[256];
    PQcancel(cancel.get(), why, sizeof why);
  }).detach();
}

Result<TableShape> PostgresSink::Inspect() {
  ASSIGN_OR_RETURN(bool exists, impl_->Exists(""));
  if (!exists) return Status::NotFound(fmt::format("table {} does not exist", impl_->names.Quoted()));
  return impl_->ReadShape();
}

Result<bool> PostgresSink::TablesExist() {
  for (std::string_view suffix : {"", "_ledger", "_rejects"}) {
    ASSIGN_OR_RETURN(bool exists, impl_->Exists(suffix));
    if (!exists) return false;
  }
  return true;
}

Status PostgresSink::CheckPrivileges() { return impl_->PrivilegeHint(impl_->CheckPrivileges()); }

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
  std::string sql = fmt::format("SELECT message_id FROM {} WHERE message_id = ANY($1::text[])", ledger);
  // The ledger from before partitioning still counts until sqs2pg drops it.
  ASSIGN_OR_RETURN(bool legacy, d.Exists("_ledger1"));
  if (legacy) {
    sql +=
        fmt::format(" UNION SELECT message_id FROM {} WHERE message_id = ANY($1::text[])", d.LegacyLedger());
  }
  ASSIGN_OR_RETURN(PgResult res, d.Query(sql, {array}, fmt::format("read ledger {}", ledger)));
  for (int i = 0; i < PQntuples(res.get()); ++i) committed.emplace_back(PQgetvalue(res.get(), i, 0));
  return committed;
}

Result<LoadSummary> PostgresSink::Load(std::span<const ProcessedMessage> batch) {
  if (batch.empty()) return LoadSummary{};
  Status connected = impl_->EnsureConnected();
  impl_->UpdateUp();
  RETURN_IF_ERROR(connected);
  auto start = std::chrono::steady_clock::now();
  if (impl_->ledger_partitioned && start >= impl_->next_maintenance) {
    // Not the batch's business: a failure is logged and tried again later.
    if (Status st = impl_->MaintainLedger(); !st.ok()) {
      spdlog::warn("ledger maintenance: {}; trying again in 5 minutes", st.message());
      impl_->next_maintenance = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    }
  }
  auto loaded = impl_->LoadIsolating(batch);
  impl_->UpdateUp();
  if (impl_->config.metrics != nullptr) {
    impl_->config.metrics->postgres_load_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (!loaded.ok()) return impl_->PrivilegeHint(loaded.status());
  return loaded;
}

}  // namespace sqs2pg::sink
