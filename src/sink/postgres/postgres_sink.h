#pragma once
// The sink stage: loads processed messages into PostgreSQL, exactly once per SQS MessageId.
//
// Each Load() is one transaction: rows go through COPY into a temporary staging table, then
// into the target table only for message ids the ledger table has not seen; rejects go to
// <table>_rejects the same way. When Load() returns ok, every message in the batch is durably
// handled (loaded, rejected, or recognised as a duplicate) and may be deleted from the queue.

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "common/login_record.h"
#include "common/result.h"
#include "common/stages.h"

namespace sqs2pg::sink {

struct PostgresSinkConfig {
  // libpq connection string: "key=value ..." or a postgresql:// URI. Empty: libpq's PG* variables.
  std::string conninfo;
  // Target table, optionally schema-qualified ("analytics.user_logins"). Its ledger and rejects
  // tables are created beside it as <table>_ledger and <table>_rejects.
  std::string table = "user_logins";
  // A message the database refuses for a reason other than its data (a trigger's error, say) is
  // stored as a reject once SQS has delivered it this many times; before that it is left for SQS
  // to deliver again. 0: never; the queue's redrive policy decides.
  int max_receives = 10;
  // sqs2pg's own statements are cancelled after this long, unless the conninfo, PGOPTIONS or the
  // role already set a statement_timeout. It also bounds a COMMIT's wait for a synchronous standby.
  std::chrono::milliseconds statement_timeout{std::chrono::seconds(60)};
};

// What the live table allows, read from the catalog so the transform checks the real sizes.
struct TableShape {
  static constexpr size_t kUnlimited = static_cast<size_t>(-1);
  size_t user_id_chars = kUnlimited;
  size_t device_type_chars = kUnlimited;
  size_t masked_ip_chars = kUnlimited;
  size_t masked_device_id_chars = kUnlimited;
  size_t locale_chars = kUnlimited;
  size_t app_version_chars = kUnlimited;
  bool app_version_is_integer = false;
};

// One connection. Not thread-safe: use each sink from one thread.
class PostgresSink : public MessageSink {
 public:
  // Connects and checks the server answers. Errors name the host and port, never a password.
  // Unless the conninfo (or PGCONNECT_TIMEOUT) says otherwise, a connection attempt gives up
  // after 10 s per host, and TCP keepalives and tcp_user_timeout notice within about 30 s a
  // server that stopped answering, instead of the kernel's two hours.
  static Result<std::unique_ptr<PostgresSink>> Connect(const PostgresSinkConfig& config);
  ~PostgresSink() override;
  PostgresSink(const PostgresSink&) = delete;
  PostgresSink& operator=(const PostgresSink&) = delete;

  // Creates the table (the seed's DDL), its ledger and rejects tables if absent, and reads the
  // table's column types. Safe to run from many processes at once.
  Result<TableShape> Prepare();

  // REQUIRES: Prepare() succeeded. Errors: kTransient (connection, deadlock: retry the batch
  // later; a lost connection is re-opened on the next call) or kPermanent (schema, permissions).
  Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) override;
  // Cancels the statement in progress (PQcancel) and fails later loads at once. Thread-safe.
  void Interrupt() override;

  // "host:port" of the server, for messages.
  std::string ServerName() const;

 private:
  struct Impl;
  explicit PostgresSink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sqs2pg::sink
