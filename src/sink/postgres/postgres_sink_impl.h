#pragma once
// PostgresSink's state, shared by the files that implement it along its seams:
//   pg_connection.cc   the connection, its watchdog and Interrupt() (the PgConnection base)
//   schema_ddl.cc      the tables: creating what is missing, migrations, shape, privileges
//   ledger.cc          the ledger's day partitions (and a partitioned target table's), and the
//                      migration of a ledger from before partitioning
//   postgres_sink.cc   Load(): staging, COPY, the ledger merge, COMMIT, isolating refused rows
// Internal to src/sink/postgres.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/login_record.h"
#include "common/result.h"
#include "sink/postgres/pg_connection.h"
#include "sink/postgres/postgres_sink.h"
#include "sink/postgres/sql_text.h"

namespace sqs2pg::sink {

struct PostgresSink::Impl : PgConnection {
  TableNames names;
  // The target table's columns that COPY fills: kRowColumns, or a mapping's (config.columns).
  std::vector<std::string> row_columns;
  std::vector<std::string> column_types;  // format_type() of each row_columns entry, from Prepare()
  bool Mapped() const { return !config.columns.empty(); }
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

  // ---- The ledger and partitions (ledger.cc) ----
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
  Status MigrateLedger();
  Result<bool> RefreshLegacyLedger(std::int64_t now_ms, std::int64_t keep_ms);
  // Creates the partitions from the first kept day to days_ahead after today, drops older ones
  // (owner only), and stops consulting the pre-partitioning ledger once it has expired.
  Status MaintainLedger();
  MaintenanceSummary maintained;  // what MaintainLedger() has changed, in all

  // ---- The tables (schema_ddl.cc) ----
  Result<bool> Exists(std::string_view suffix);
  Status CreateMissingTables();
  Result<TableShape> ReadShape();
  Result<TableShape> ReadMappedShape(const PGresult* columns);
  // Whether the table <suffix> lacks any of `columns`. The owner adds them with `migrate_sql`
  // (and then they are not lacking); any other role gets true.
  Result<bool> LacksColumns(std::string_view suffix, std::span<const std::string_view> columns,
                            const std::string& migrate_sql, std::string_view what);
  Status CheckPrivileges();
  Status PrivilegeHint(Status st) const;

  // ---- Load (postgres_sink.cc) ----
  Status CreateStaging(bool ordered = false);
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

}  // namespace sqs2pg::sink
