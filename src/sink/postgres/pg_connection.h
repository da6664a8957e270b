#pragma once
// The sink's one Postgres connection and what keeps it honest: connecting (our keepalive and
// timeout defaults around the user's conninfo), reconnecting, the session's statement_timeout,
// statements that classify their failures (sqlstate.h), the notice receiver that catches a
// COMMIT's WARNING, the watchdog that shuts a connection whose statement went unanswered, and
// Interrupt() from another thread. Internal to src/sink/postgres: PostgresSink::Impl builds on it.

#include <libpq-fe.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "sink/postgres/pg_handles.h"
#include "sink/postgres/postgres_sink.h"
#include "sink/postgres/sqlstate.h"

namespace sqs2pg::sink {

// Not thread-safe, except where a member says so: used from the loader thread, with Interrupt()
// and the watchdog on others.
struct PgConnection {
  PostgresSinkConfig config;
  PgConn conn;
  Failure last_failure = Failure::kRetry;  // of the newest error from Fail()
  std::string last_sqlstate;               // of the newest error from Fail() ("" if none)
  bool staging_ready = false;              // this connection has its staging tables (see CreateStaging)
  bool order_staging_ready = false;        // and the one for FIFO order
  // Statements prepared in this session: SQL text -> statement name (see ExecPrepared).
  std::unordered_map<std::string, std::string> prepared;
  // "BEGIN", then the user's synchronous_commit for a load (the session's own is local: see
  // SetUpSession and PostgresSink's CreateStaging).
  std::string begin_sql = "BEGIN";
  bool in_commit = false;      // a COMMIT is under way: its notices are watched
  bool commit_warned = false;  // the notice receiver saw a WARNING during COMMIT (see IsWarning)
  bool reconnect = false;      // drop the connection before the next batch
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
    PgConnection& d;
    explicit Watched(PgConnection& impl) : d(impl) {
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
  // Ends the watchdog thread and waits for it.
  void StopWatchdog();
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
  // See PostgresSink::Interrupt(). Thread-safe.
  void Interrupt();

  // Connects with config.conninfo and sets up the session. Errors name the host and port, never
  // a password: Permanent when the configuration is wrong, Transient when waiting may help.
  Status Open();
  // BEGIN, `setting` (a SET LOCAL, if any), then the transaction-scoped advisory lock `lock_id`,
  // so concurrent sqs2pg processes take turns; Abort() rolls back and returns `st`.
  Status BeginLocked(std::int64_t lock_id, std::string_view setting = "");
  Status Abort(Status st) {
    if (PQstatus(conn.get()) == CONNECTION_OK) ExecAs("ROLLBACK", "rollback").ok();
    return st;
  }

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
  // Runs a parameterless statement through a prepared statement of this session, preparing it
  // the first time. The merge is planned once per connection, not once per batch: its plan took
  // 1.5 ms of the server's CPU for every batch (3 us a message at 500 a batch).
  PgResult ExecPrepared(const std::string& sql);
  Result<PgResult> Query(const std::string& sql, const std::vector<std::string>& params = {},
                         std::string_view what = "query catalog");
  Status EnsureConnected();
};

}  // namespace sqs2pg::sink
