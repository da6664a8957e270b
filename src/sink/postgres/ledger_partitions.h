#pragma once
// The ledger's day partitions as pure functions: which days a ledger must hold, which it may
// drop, and the names of their tables. A message can only come back while the queue keeps it
// (MessageRetentionPeriod, at most 14 days), so a day of ledger rows is useless once every
// message sent that day has expired. The partition key is the message's SentTimestamp, which
// SQS keeps across redeliveries: a redelivered message lands in the partition of its first
// delivery and meets its own ledger row there, however many days later it comes.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqs2pg::sink {

inline constexpr std::int64_t kMillisPerDay = 86'400'000;

struct LedgerRetention {
  // How long SQS keeps a message: the queue's MessageRetentionPeriod. 14 days (the most SQS
  // allows) when the queue's is not known: never too short.
  std::chrono::seconds retention{std::chrono::hours(24 * 14)};
  // Kept on top, for clocks that disagree and a message received just before it expired.
  std::chrono::seconds margin{std::chrono::hours(24)};
  // Partitions created ahead of today, so a new day never waits for DDL.
  int days_ahead = 3;
};

// Days since 1970-01-01 (UTC) of a Unix time in milliseconds (floor, also before 1970).
std::int32_t DayOf(std::int64_t unix_ms);
// "2026-11-27".
std::string DayText(std::int32_t day);
// The first day whose partition must be kept at `today`: every message sent on an earlier day
// expired (retention + margin) before today began.
std::int32_t FirstKeptDay(std::int32_t today, const LedgerRetention& retention);

// The table name (unquoted) of the partition of `ledger` (e.g. "user_logins_ledger") for `day`:
// "<ledger>_YYYYMMDD", or, when that is longer than Postgres's 63 bytes, the ledger's name cut
// short plus a hash of it, so two long table names never share partition names.
std::string PartitionName(std::string_view ledger, std::int32_t day);
// The day of a partition name made by PartitionName for this ledger; nullopt for any other name.
std::optional<std::int32_t> PartitionDay(std::string_view ledger, std::string_view name);
// The default partition, for rows no day partition takes ("<ledger>_default", or cut short).
std::string DefaultPartitionName(std::string_view ledger);
// `name` + `suffix` within Postgres's 63 bytes (cut short with a hash of `name` when needed).
std::string FitIdentifier(std::string_view name, std::string_view suffix);

}  // namespace sqs2pg::sink
