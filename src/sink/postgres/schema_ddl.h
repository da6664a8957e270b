#pragma once
// The tables sqs2pg loads into, as SQL: the target table, <table>_ledger and <table>_rejects
// with their comments, the migrations of tables made by earlier versions, and the statements
// `sqs2pg schema` prints (SchemaScript, declared in postgres_sink.h). PostgresSink::Impl's
// members in schema_ddl.cc apply them at Prepare(): create what is missing, add missing columns
// as the owner, read the table's shape, check privileges. Internal to src/sink/postgres.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sink/postgres/postgres_sink.h"
#include "sink/postgres/sql_text.h"

namespace sqs2pg::sink {

// Serializes schema creation across concurrent sqs2pg processes: CREATE TABLE IF NOT EXISTS
// alone can still fail with a unique violation on pg_type when two sessions race.
inline constexpr std::int64_t kSchemaLockId = 0x5351'5332'5047;  // "SQS2PG"

// The target table's columns, in the order COPY sends them.
inline constexpr std::array<const char*, 7> kRowColumns = {
    "user_id", "device_type", "masked_ip", "masked_device_id", "locale", "app_version", "create_date"};

// One table sqs2pg uses: its DDL, and the comment that tells a DBA what it is for.
struct TableDdl {
  std::string suffix;  // "", "_ledger" or "_rejects"
  std::string create;
  std::string comment;  // empty: none
};

// The ledger, partitioned by the day of SentTimestamp, with a default partition for the rows no
// day partition takes (a role that may not create partitions, a clock far off). Day partitions
// are made by PostgresSink (MaintainLedger), which knows the retention.
std::string LedgerDdl(const TableNames& names);

// partition_by: "", "day" or "month" (the partitions themselves are made after creation).
// `columns`: a mapping's table (PostgresSinkConfig::columns); empty: the login table.
std::vector<TableDdl> SchemaDdl(const TableNames& names, std::string_view partition_by = "",
                                std::span<const TableColumn> columns = {});

// Rejects tables made before body_bytes and body_shape existed.
inline constexpr std::string_view kRejectsShapeColumns[] = {"body_bytes", "body_shape"};
std::string MigrateRejectsSql(const TableNames& names);

// Tables made before sqs2pg recorded which key masked each ip. Adding a nullable column without a
// default only changes the catalog: no table rewrite, however many rows.
inline constexpr std::string_view kKeyIdColumns[] = {"masked_ip_key_id"};
std::string MigrateKeyIdSql(const TableNames& names);

// Ledgers made before sqs2pg kept the order of FIFO messages.
inline constexpr std::string_view kLedgerOrderColumns[] = {"message_group_id", "sequence_number"};
std::string MigrateLedgerSql(const TableNames& names);

// A ledger from before partitioning (a plain table) becomes <table>_ledger1, so the partitioned
// one can take its name; sqs2pg still consults it until all it knew has expired, then drops it.
// `migrated_at_ms`: an SQL expression for the migration's time in Unix ms; the server's clock
// unless sqs2pg migrates, which records its own (the clock its expiry is later compared with;
// a skew of minutes is covered by the retention's margin of a day).
std::string RenameUnpartitionedLedgerSql(
    const TableNames& names,
    std::string_view migrated_at_ms = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint");

}  // namespace sqs2pg::sink
