#include "sink/postgres/copy_format.h"

#include <gtest/gtest.h>

#include <limits>

namespace sqs2pg::sink {
namespace {

TEST(CopyFormatTest, EscapesTheFourSpecialCharacters) {
  std::string out;
  AppendCopyText(out, "a\\b\tc\nd\re");
  EXPECT_EQ(out, "a\\\\b\\tc\\nd\\re");
}

TEST(CopyFormatTest, LeavesEverythingElseAlone) {
  std::string out;
  AppendCopyText(out, "N caf\xc3\xa9 \"q\" ' , ;");
  EXPECT_EQ(out, "N caf\xc3\xa9 \"q\" ' , ;");
}

TEST(CopyFormatTest, NullIsBackslashN) {
  std::string out;
  AppendCopyNullable(out, std::nullopt);
  out.push_back('|');
  AppendCopyNullable(out, std::string("\\N"));  // the literal text \N must not read as NULL
  EXPECT_EQ(out, "\\N|\\\\N");
}

TEST(CopyFormatTest, Dates) {
  std::string out;
  AppendCopyDate(out, 0);
  out.push_back(' ');
  AppendCopyDate(out, 19'675);
  out.push_back(' ');
  AppendCopyDate(out, -1);
  EXPECT_EQ(out, "1970-01-01 2023-11-14 1969-12-31");
}

TEST(CopyFormatTest, Timestamps) {
  std::string out;
  AppendCopyTimestamp(out, 1'700'000'000'123);
  EXPECT_EQ(out, "2023-11-14 22:13:20.123+00");
  out.clear();
  AppendCopyTimestamp(out, -1);
  EXPECT_EQ(out, "1969-12-31 23:59:59.999+00");
}

TEST(CopyFormatTest, TimestampsAtTheEndsOfInt64AreDefined) {
  // Found by fuzz_copy_format: std::chrono's floor<days> overflowed (UBSan) near INT64_MIN. The
  // text is not a real date there; what matters is that nothing is undefined.
  std::string out;
  AppendCopyTimestamp(out, std::numeric_limits<std::int64_t>::min());
  AppendCopyTimestamp(out, std::numeric_limits<std::int64_t>::max());
  EXPECT_FALSE(out.empty());
}

TEST(CopyFormatTest, RowLineHasEightColumnsInStagingOrder) {
  std::string out;
  AppendCopyRow(out, "m1", LoginRow{"u\t1", std::nullopt, "k.ip", "k.dev", "FR", "1.2.3", 19'675});
  EXPECT_EQ(out, "m1\tu\\t1\t\\N\tk.ip\tk.dev\tFR\t1.2.3\t2023-11-14\n");
}

TEST(CopyFormatTest, RejectLine) {
  std::string out;
  AppendCopyReject(out, "m2", 1'700'000'000'123,
                   Rejection{"missing field user_id", "0123abcd.AAAA", true, 7, "{\"a\":\"number\"}"});
  EXPECT_EQ(
      out,
      "m2\t2023-11-14 22:13:20.123+00\tmissing field user_id\t0123abcd.AAAA\tt\t7\t{\"a\":\"number\"}\n");
}

}  // namespace
}  // namespace sqs2pg::sink
