#pragma once
// The sink stage: loads processed messages into PostgreSQL, exactly once per SQS MessageId.
//
// Each Load() is one transaction: rows go through COPY into a temporary staging table, then
// into the target table only for message ids the ledger table has not seen; rejects go to
// <table>_rejects the same way. When Load() returns ok, every message in the batch is durably
// handled (loaded, rejected, or recognised as a duplicate) and may be deleted from the queue.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/login_record.h"
#include "common/result.h"
#include "common/stages.h"
#include "metrics/sqs2pg_metrics.h"
#include "sink/postgres/ledger_partitions.h"

namespace sqs2pg::sink {

// A column of a table a mapping describes (`run --mapping`): what CREATE TABLE says of it.
struct TableColumn {
  std::string name;
  std::string type;     // as CREATE TABLE spells it: "uuid", "varchar(254)", "timestamptz"
  std::string comment;  // COMMENT ON COLUMN when sqs2pg creates the table; empty: none
};

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
  // role already set a statement_timeout. It does NOT bound a COMMIT's wait for a synchronous
  // standby: PostgreSQL has no timeout for that wait (statement_timeout ends when the commit
  // record is written). What bounds it is the sink's watchdog: a statement (COMMIT included)
  // still unanswered statement_timeout + 30 s after it was sent has its connection shut, and the
  // batch, whose outcome is then unknown, is left for SQS to deliver again (the ledger skips
  // what did commit). A cancelled wait answers OK with a WARNING, also treated as unknown.
  std::chrono::milliseconds statement_timeout{std::chrono::seconds(60)};
  // The watchdog shuts a connection whose statement is still unanswered statement_timeout plus
  // this long after it was sent (tests shorten it).
  std::chrono::milliseconds watchdog_margin{std::chrono::seconds(30)};
  // Encrypts the JSON of a row the database refused, for <table>_rejects, where no body is ever
  // kept in clear. Called on the sink's own thread. Unset: such a body is not kept at all.
  std::function<Result<std::string>(std::string_view)> seal_body = nullptr;
  // Commits, reconnects, load and COMMIT times, and whether this connection is up. nullptr: off.
  // Must outlive the sink; shared by every sink (its members are atomics).
  metrics::Metrics* metrics = nullptr;
  // How long the ledger keeps a day of message ids: the queue's MessageRetentionPeriod plus a
  // margin. The ledger is partitioned by the day of each message's SentTimestamp; a role that
  // owns it creates the partitions ahead and drops expired ones (DROP TABLE, never DELETE), at
  // Prepare() and then hourly.
  LedgerRetention ledger_retention{};
  // "day" or "month": a target table sqs2pg creates is partitioned by range on create_date, its
  // partitions made by pg_partman where the extension is installed, else by sqs2pg (ahead, with
  // the ledger's maintenance; never dropped: they hold the data). "": not partitioned. An existing
  // table is left as it is.
  std::string partition_by{};
  // The id of the key that masks ip (8 hex digits), written into every row's masked_ip_key_id: an
  // address-valued masked ip (ipcrypt-*, cryptopan) is a bare address with no key id of its own,
  // and `sqs2pg rekey` needs to know which key made each row. Empty: the column is left NULL.
  std::string masked_ip_key_id{};
  // The target table's columns when a mapping describes it, in table order; each batch's rows are
  // MappedRows with a value per column. Empty: the login table (user_id ... create_date, and
  // masked_ip_key_id), whose rows are LoginRows.
  std::vector<TableColumn> columns{};
  // Unix time in ms; tests move it. Unset: the system clock.
  std::function<std::int64_t()> clock = nullptr;
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
  // masked_ip is `inet` (the user's choice): only address-valued masks (ipcrypt-deterministic,
  // ipcrypt-pfx, cryptopan) fit it, and then subnet operators (<<, >>=) and GiST indexes work on it.
  bool masked_ip_is_inet = false;
  // <table>_rejects predates the body_bytes and body_shape columns and this role may not add
  // them: a reject's size and shape are appended to its reason instead, so nothing is lost, and
  // `sqs2pg schema` prints the ALTER TABLE a DBA can run.
  bool rejects_lack_shape_columns = false;
  // The table predates masked_ip_key_id and this role may not add it: rows carry no key id, so a
  // rotation between two address-valued ip keys cannot be re-masked by `sqs2pg rekey`.
  bool lacks_masked_ip_key_id = false;
  // With a mapping (PostgresSinkConfig::columns): each of its columns as the live table has it, in
  // the mapping's order, for the compatibility check and the transform's limits.
  struct LiveColumn {
    std::string name;
    std::string typname;      // pg_type.typname: "varchar", "int4", "timestamptz" ...
    int typmod = -1;          // pg_attribute.atttypmod: varchar(n) has n + 4
    std::string format_type;  // "character varying(254)", for messages
  };
  std::vector<LiveColumn> live_columns{};
};

// What Maintain() changed.
struct MaintenanceSummary {
  int partitions_created = 0;
  int partitions_dropped = 0;  // the ledger's expired days, and a pre-partitioning ledger
};

// The SQL a DBA runs once so that a role with no DDL privilege can run sqs2pg on `table`:
// CREATE TABLE IF NOT EXISTS for the table, its ledger and rejects tables (with their comments),
// the rejects migration (ADD COLUMN IF NOT EXISTS), and, if `role` is not empty, the GRANTs sqs2pg
// needs: USAGE on the schema, TEMPORARY on the database (batches are staged in temporary
// tables), SELECT and INSERT on the three tables. Idempotent: safe to apply again.
// `columns`: a mapping's table (see PostgresSinkConfig::columns); empty: the login table.
Result<std::string> SchemaScript(std::string_view table, std::string_view role,
                                 std::span<const TableColumn> columns = {});

// The conninfo (key=value or postgresql:// URI) as key=value with its password replaced by
// [redacted], for `sqs2pg config`. One libpq cannot parse comes back as a note, not the text.
std::string RedactedConninfo(const std::string& conninfo);

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

  // Makes the sink ready to load. Tables that already exist are not touched: with all three in
  // place (e.g. made by a DBA from SchemaScript), a role with only SELECT and INSERT on them
  // starts, and no DDL or COMMENT is run. A missing table is created (with its comment) under an
  // advisory lock, so many processes may start at once. Then reads the table's column types and
  // checks the privileges a load needs, naming the one missing and the table it is missing on.
  Result<TableShape> Prepare();

  // For `sqs2pg maintain`, run by the ledger's owner (a role that only loads cannot): what
  // Prepare() does at start and Load() hourly, once, with failures as errors: missing tables made,
  // older ones migrated, the ledger's day partitions (and a partitioned target table's) made
  // ahead, expired ones dropped. kPermanent if this role does not own the ledger.
  Result<MaintenanceSummary> Maintain();

  // Read-only, for dry runs: the live table's column types. NotFound if the table does not exist.
  Result<TableShape> Inspect();
  // Read-only, for `sqs2pg check`: whether the table, its ledger and its rejects table all exist.
  Result<bool> TablesExist();
  // Read-only, for `sqs2pg check`: REQUIRES TablesExist(). The privileges a load needs; an error
  // names the one missing, its table, and the fix.
  Status CheckPrivileges();
  // Read-only, for dry runs: which of these message ids the ledger holds (none if it does not exist).
  Result<std::vector<std::string>> CommittedIds(std::span<const std::string> message_ids);

  // REQUIRES: Prepare() succeeded. Errors: kTransient (connection, deadlock: retry the batch
  // later; a lost connection is re-opened on the next call) or kPermanent (schema, permissions).
  Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) override;
  // Fails later loads at once, shuts down the socket of a statement in progress (so the loader's
  // call returns even if the server is unreachable) and sends a cancel request (PQcancel) from a
  // thread of its own. Never blocks: no lock is held across a connect. Thread-safe.
  void Interrupt() override;

  // "host:port" of the server, for messages.
  std::string ServerName() const;

 private:
  struct Impl;
  explicit PostgresSink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sqs2pg::sink
