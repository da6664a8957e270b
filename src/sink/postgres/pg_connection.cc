#include "sink/postgres/pg_connection.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <utility>

#include "common/log.h"
#include "sink/postgres/sql_text.h"

namespace sqs2pg::sink {
namespace {

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

}  // namespace

Status PgConnection::Exec(const std::string& sql, ExecStatusType expected) {
  Watched watched(*this);
  PgResult res(PQexec(conn.get(), sql.c_str()));
  if (PQresultStatus(res.get()) != expected) return Fail(res.get(), sql.substr(0, sql.find(' ', 12)));
  return Status::Ok();
}

Status PgConnection::ExecAs(const std::string& sql, std::string_view what, ExecStatusType expected) {
  Watched watched(*this);
  PgResult res(PQexec(conn.get(), sql.c_str()));
  if (PQresultStatus(res.get()) != expected) return Fail(res.get(), what);
  return Status::Ok();
}

PgResult PgConnection::ExecPrepared(const std::string& sql) {
  Watched watched(*this);
  auto it = prepared.find(sql);
  if (it == prepared.end()) {
    std::string name = fmt::format("sqs2pg_{}", prepared.size() + 1);
    PgResult made(PQprepare(conn.get(), name.c_str(), sql.c_str(), 0, nullptr));
    // A failed PREPARE (the table is gone, the transaction aborted) answers in its place: the
    // caller reads its SQLSTATE as it would the statement's.
    if (PQresultStatus(made.get()) != PGRES_COMMAND_OK) return made;
    it = prepared.emplace(sql, std::move(name)).first;
  }
  return PgResult(PQexecPrepared(conn.get(), it->second.c_str(), 0, nullptr, nullptr, nullptr, 0));
}

Result<PgResult> PgConnection::Query(const std::string& sql, const std::vector<std::string>& params,
                                     std::string_view what) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  Watched watched(*this);
  PgResult res(PQexecParams(conn.get(), sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                            nullptr, nullptr, 0));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return Fail(res.get(), what);
  return res;
}

void PgConnection::OnNotice(void* self, const PGresult* notice) {
  // Runs on the loader thread, inside the PQexec that caused the notice.
  auto* impl = static_cast<PgConnection*>(self);
  if (impl->in_commit && IsWarning(notice)) impl->commit_warned = true;
}

Status PgConnection::SetUpSession() {
  prepared.clear();  // a new session has none
  PQsetNoticeReceiver(conn.get(), &PgConnection::OnNotice, this);
  PublishConnection();
  // Our statement timeout only where nobody set one (conninfo options, PGOPTIONS, the role).
  std::string sql = fmt::format(
      "SELECT set_config('statement_timeout', '{}ms', false) WHERE current_setting('statement_timeout') = "
      "'0'",
      config.statement_timeout.count());
  Watched watched(*this);
  PgResult res(PQexec(conn.get(), sql.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return Fail(res.get(), "set statement_timeout");
  // The session commits locally (its own cleanup of temporary tables at disconnect must never
  // wait for a standby: see CreateStaging); each load transaction restores the user's level.
  staging_ready = false;
  order_staging_ready = false;
  PgResult level(PQexec(conn.get(), "SELECT current_setting('synchronous_commit')"));
  if (PQresultStatus(level.get()) != PGRES_TUPLES_OK) return Fail(level.get(), "read synchronous_commit");
  std::string user_level = PQgetvalue(level.get(), 0, 0);
  begin_sql = "BEGIN";
  if (user_level != "off" && user_level != "local") {
    PgResult local(PQexec(conn.get(), "SET synchronous_commit = local"));
    if (PQresultStatus(local.get()) != PGRES_COMMAND_OK) return Fail(local.get(), "set synchronous_commit");
    begin_sql = fmt::format("BEGIN; SET LOCAL synchronous_commit = {}", QuoteLiteral(user_level));
  }
  return Status::Ok();
}

Status PgConnection::EnsureConnected() {
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

Status PgConnection::BeginLocked(std::int64_t lock_id, std::string_view setting) {
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

void PgConnection::StartWatchdog() {
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

void PgConnection::StopWatchdog() {
  {
    std::lock_guard lock(watchdog_mu);
    closing = true;
  }
  watchdog_cv.notify_all();
  if (watchdog.joinable()) watchdog.join();
}

Status PgConnection::Open() {
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
  conn = PgConn(PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1));
  if (!conn) return Status::Transient("cannot connect to Postgres: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn.get());
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    const char* host = PQhost(conn.get());
    const char* port = PQport(conn.get());
    if (IsConfigurationConnectError(why)) {
      // Waiting will not fix a wrong password, certificate or database name: say so at once.
      return Status::Permanent(fmt::format("cannot connect to Postgres at {}:{}: {}",
                                           host ? host : "(default)", port ? port : "(default)", why));
    }
    return Status::Transient(fmt::format("cannot connect to Postgres at {}:{}: {}", host ? host : "(default)",
                                         port ? port : "(default)", why));
  }
  // The notice receiver also keeps notices such as "relation already exists, skipping" off stderr.
  return SetUpSession();
}

void PgConnection::Interrupt() {
  interrupted = true;
  // A share of the member `cancel` (a local of the same name once shadowed it and copied itself:
  // no cancel was ever sent; clang's -Wself-assign-overloaded in the fuzz build found it).
  std::shared_ptr<PGcancel> to_send;
  {
    std::lock_guard lock(cancel_mu);
    // First the socket: a server that does not answer would not hear a cancel either, and the
    // loader's call (or its next one, if it is between statements) must fail now.
    ShutDownSocketLocked();
    to_send = cancel;
  }
  if (!to_send) return;
  // Then ask the server to stop the statement, so it does not hold locks for nothing. PQcancel
  // opens a new connection, which to an unreachable host blocks until the kernel gives up: on a
  // thread of its own, which owns a share of the cancel handle (the process may end first).
  std::thread([to_send] {
    char why[256];
    PQcancel(to_send.get(), why, sizeof why);
  }).detach();
}

}  // namespace sqs2pg::sink
