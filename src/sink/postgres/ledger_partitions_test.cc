#include "sink/postgres/ledger_partitions.h"

#include <gtest/gtest.h>

namespace sqs2pg::sink {
namespace {

constexpr std::int32_t k20261127 = 20'784;  // days since 1970-01-01

TEST(LedgerPartitionsTest, DaysAreUtcAndFloorBefore1970) {
  EXPECT_EQ(DayOf(0), 0);
  EXPECT_EQ(DayOf(kMillisPerDay - 1), 0);
  EXPECT_EQ(DayOf(kMillisPerDay), 1);
  EXPECT_EQ(DayOf(-1), -1);
  EXPECT_EQ(DayText(k20261127), "2026-11-27");
  EXPECT_EQ(DayText(0), "1970-01-01");
}

TEST(LedgerPartitionsTest, KeepsEveryDayARedeliveryCanComeFrom) {
  LedgerRetention four_days{std::chrono::hours(96), std::chrono::hours(24), 3};
  // Sent on the last millisecond of day D, a message can come back until D + 1 + 4 days: with a
  // day of margin its partition is kept through D + 6.
  EXPECT_EQ(FirstKeptDay(k20261127, four_days), k20261127 - 5);
  LedgerRetention odd{std::chrono::seconds(60), std::chrono::seconds(1), 3};  // rounds up to a day
  EXPECT_EQ(FirstKeptDay(k20261127, odd), k20261127 - 1);
  EXPECT_EQ(FirstKeptDay(k20261127, LedgerRetention{}), k20261127 - 15);
}

TEST(LedgerPartitionsTest, NamesFitAndAreReadBack) {
  EXPECT_EQ(PartitionName("user_logins_ledger", k20261127), "user_logins_ledger_20261127");
  EXPECT_EQ(PartitionDay("user_logins_ledger", "user_logins_ledger_20261127"), k20261127);
  EXPECT_FALSE(PartitionDay("user_logins_ledger", "other_ledger_20261127"));
  EXPECT_FALSE(PartitionDay("user_logins_ledger", "user_logins_ledger_default"));
  EXPECT_FALSE(PartitionDay("user_logins_ledger", "user_logins_ledger_20261399"));
  EXPECT_EQ(DefaultPartitionName("user_logins_ledger"), "user_logins_ledger_default");
  std::string long_a(55, 'a'), long_b = std::string(54, 'a') + "b";
  std::string a = PartitionName(long_a + "_ledger", k20261127);
  std::string b = PartitionName(long_b + "_ledger", k20261127);
  EXPECT_LE(a.size(), 63u);
  EXPECT_NE(a, b);
  EXPECT_EQ(PartitionDay(long_a + "_ledger", a), k20261127);
  EXPECT_FALSE(PartitionDay(long_b + "_ledger", a));
}

}  // namespace
}  // namespace sqs2pg::sink
