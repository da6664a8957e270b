#include "sink/postgres/ledger_partitions.h"

#include <fmt/format.h>

#include <chrono>

namespace sqs2pg::sink {
namespace {

constexpr size_t kMaxIdentifier = 63;

std::chrono::year_month_day Date(std::int32_t day) {
  return std::chrono::year_month_day{std::chrono::sys_days{std::chrono::days{day}}};
}

}  // namespace

// When too long, the name is cut and an FNV-1a hash of the whole name keeps cut names apart.
std::string FitIdentifier(std::string_view name, std::string_view suffix) {
  if (name.size() + suffix.size() <= kMaxIdentifier) return std::string(name) + std::string(suffix);
  std::uint32_t hash = 2166136261u;
  for (unsigned char c : name) hash = (hash ^ c) * 16777619u;
  std::string tag = fmt::format("_{:08x}", hash);
  return std::string(name.substr(0, kMaxIdentifier - suffix.size() - tag.size())) + tag + std::string(suffix);
}

std::int32_t DayOf(std::int64_t unix_ms) {
  std::int64_t day = unix_ms / kMillisPerDay;
  if (unix_ms % kMillisPerDay < 0) --day;
  return static_cast<std::int32_t>(day);
}

std::string DayText(std::int32_t day) {
  auto d = Date(day);
  return fmt::format("{:04}-{:02}-{:02}", static_cast<int>(d.year()), static_cast<unsigned>(d.month()),
                     static_cast<unsigned>(d.day()));
}

std::int32_t FirstKeptDay(std::int32_t today, const LedgerRetention& retention) {
  // A day's partition holds messages sent before the next day starts; they expire by then plus
  // the retention. Whole days, rounded up, so a partial day is never dropped early.
  auto kept = retention.retention + retention.margin;
  std::int64_t kept_days = (kept.count() + 86'399) / 86'400;
  return static_cast<std::int32_t>(today - kept_days);
}

std::string PartitionName(std::string_view ledger, std::int32_t day) {
  auto d = Date(day);
  return FitIdentifier(ledger, fmt::format("_{:04}{:02}{:02}", static_cast<int>(d.year()),
                                           static_cast<unsigned>(d.month()), static_cast<unsigned>(d.day())));
}

std::optional<std::int32_t> PartitionDay(std::string_view ledger, std::string_view name) {
  if (name.size() < 9) return std::nullopt;
  std::string_view digits = name.substr(name.size() - 8);
  int year = 0;
  unsigned month = 0, day = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  year = std::stoi(std::string(digits.substr(0, 4)));
  month = static_cast<unsigned>(std::stoi(std::string(digits.substr(4, 2))));
  day = static_cast<unsigned>(std::stoi(std::string(digits.substr(6, 2))));
  std::chrono::year_month_day date{std::chrono::year{year}, std::chrono::month{month}, std::chrono::day{day}};
  if (!date.ok()) return std::nullopt;
  auto days = static_cast<std::int32_t>(std::chrono::sys_days{date}.time_since_epoch().count());
  // Only names this ledger's PartitionName makes: another table's are not ours to drop.
  if (PartitionName(ledger, days) != name) return std::nullopt;
  return days;
}

std::string DefaultPartitionName(std::string_view ledger) { return FitIdentifier(ledger, "_default"); }

}  // namespace sqs2pg::sink
