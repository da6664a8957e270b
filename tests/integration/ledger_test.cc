// The ledger's day partitions against a real Postgres: a load across a day boundary, exactly once
// across partitions, pruning only what has expired, and a ledger from an earlier version. The
// sink's clock is moved by the test, so days pass in milliseconds.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "harness.h"
#include "sink/postgres/postgres_sink.h"

namespace sqs2pg::integration {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;

constexpr std::int64_t kDay = sink::kMillisPerDay;
constexpr std::int64_t kToday = 20'784 * kDay;  // 2026-11-27 00:00 UTC

ProcessedMessage Sent(const std::string& id, std::int64_t sent_ms) {
  LoginRow row{"u_" + id, "ios", "k.ip", "k.dev", "FR", "1.2.3", static_cast<std::int32_t>(sent_ms / kDay)};
  ProcessedMessage m{id, sent_ms + 1000, row};
  m.sent_timestamp_ms = sent_ms;
  return m;
}

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LoadStackEnvironment();
    table_ = UniqueName("t");
  }

  // A prepared sink whose clock reads *now_ms; retention 2 days, margin 1 day.
  std::unique_ptr<sink::PostgresSink> Sink(const std::string& partition_by = "",
                                           const std::string& conninfo = "") {
    sink::PostgresSinkConfig config{conninfo, table_};
    config.partition_by = partition_by;
    config.ledger_retention = {std::chrono::hours(48), std::chrono::hours(24), 3};
    config.clock = [this] { return now_ms_; };
    auto sink = sink::PostgresSink::Connect(config);
    EXPECT_TRUE(sink.ok()) << sink.status().message();
    if (!sink.ok()) return nullptr;
    auto prepared = (*sink)->Prepare();
    EXPECT_TRUE(prepared.ok()) << prepared.status().message();
    return std::move(sink).value();
  }

  // The day partitions of the ledger, oldest first, as "YYYYMMDD".
  std::vector<std::string> Days() {
    std::vector<std::string> out;
    for (auto& row : db_.Rows(fmt::format(
             "SELECT right(c.relname, 8) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE "
             "i.inhparent = '\"{}_ledger\"'::regclass AND c.relname ~ '_[0-9]{{8}}$' ORDER BY 1",
             table_))) {
      out.push_back(*row[0]);
    }
    return out;
  }

  std::string Partition(const std::string& id) {
    return db_.Scalar(fmt::format(
        "SELECT tableoid::regclass::text FROM \"{}_ledger\" WHERE message_id = '{}'", table_, id));
  }

  std::string table_;
  std::int64_t now_ms_ = kToday + 12 * 3'600'000;
  Db db_;
};

TEST_F(LedgerTest, ABatchAcrossADayBoundaryLoadsIntoBothDays) {
  auto sink = Sink();
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(
      db_.Scalar(fmt::format("SELECT relkind FROM pg_class WHERE oid = '\"{}_ledger\"'::regclass", table_)),
      "p");
  // Created from the first kept day (today - 3) to three days ahead.
  EXPECT_THAT(Days(), ElementsAre("20261124", "20261125", "20261126", "20261127", "20261128", "20261129",
                                  "20261130"));
  std::vector<ProcessedMessage> batch = {Sent("late", kToday - 1), Sent("early", kToday)};
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 2u);
  EXPECT_THAT(Partition("late"), EndsWith("_20261126"));
  EXPECT_THAT(Partition("early"), EndsWith("_20261127"));
  EXPECT_EQ(db_.Count(table_), 2);
}

TEST_F(LedgerTest, ARedeliveryOnALaterDayIsStillADuplicate) {
  auto sink = Sink();
  ASSERT_NE(sink, nullptr);
  std::vector<ProcessedMessage> first = {Sent("m1", kToday + 5), Sent("r1", kToday + 6)};
  first[1].record = Rejection{"user_id missing", "", false, 2, "{}"};
  ASSERT_TRUE(sink->Load(first).ok());
  // Two days later (same SentTimestamp: SQS keeps it), from another process.
  now_ms_ += 2 * kDay;
  auto later = Sink();
  ASSERT_NE(later, nullptr);
  std::vector<ProcessedMessage> again = {Sent("m1", kToday + 5), Sent("r1", kToday + 6), Sent("m2", now_ms_)};
  auto loaded = later->Load(again);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 1u);  // m2 only
  EXPECT_EQ(loaded->rejects_stored, 0u);
  EXPECT_EQ(loaded->duplicates, 2u);
  EXPECT_EQ(db_.Count(table_), 2);
  EXPECT_EQ(db_.Count(table_ + "_rejects"), 1);
}

TEST_F(LedgerTest, PruningDropsOnlyDaysWhoseMessagesExpired) {
  auto sink = Sink();
  ASSERT_NE(sink, nullptr);
  std::vector<ProcessedMessage> batch = {Sent("d-3", kToday - 3 * kDay), Sent("d-1", kToday - kDay + 1),
                                         Sent("d0", kToday), Sent("ancient", kToday - 30 * kDay)};
  ASSERT_TRUE(sink->Load(batch).ok());
  EXPECT_THAT(Partition("ancient"), EndsWith("_default"));  // no day partition for it

  // Two days on, the first kept day is 2026-11-26: 11-24 and 11-25 are dropped, nothing else.
  now_ms_ += 2 * kDay;
  auto later = Sink();
  ASSERT_NE(later, nullptr);
  EXPECT_THAT(Days(), ElementsAre("20261126", "20261127", "20261128", "20261129", "20261130", "20261201",
                                  "20261202"));
  auto ids = db_.Rows(fmt::format("SELECT message_id FROM \"{}_ledger\" ORDER BY 1", table_));
  ASSERT_EQ(ids.size(), 3u);  // d-3 went with its partition; the default partition is never pruned
  EXPECT_EQ(*ids[0][0], "ancient");
  EXPECT_EQ(*ids[1][0], "d-1");
  EXPECT_EQ(*ids[2][0], "d0");
  EXPECT_EQ(db_.Count(table_), 4);  // the loaded rows themselves are never touched
}

TEST_F(LedgerTest, ALedgerFromAnEarlierVersionIsMigratedAndStillConsulted) {
  db_.Exec(fmt::format(
      "CREATE TABLE \"{0}_ledger\" (message_id text PRIMARY KEY, outcome text NOT NULL CHECK (outcome IN "
      "('loaded', 'rejected')), processed_at timestamptz NOT NULL DEFAULT now());"
      "INSERT INTO \"{0}_ledger\" VALUES ('old', 'loaded', to_timestamp({1}))",
      table_, (now_ms_ - 3'600'000) / 1000));
  auto sink = Sink();
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(
      db_.Scalar(fmt::format("SELECT relkind FROM pg_class WHERE oid = '\"{}_ledger\"'::regclass", table_)),
      "p");
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT count(*) FROM \"{}_ledger1\"", table_)), "1");
  // A dry run counts what the old ledger knew too.
  std::vector<std::string> asked = {"old", "unknown"};
  auto committed = sink->CommittedIds(asked);
  ASSERT_TRUE(committed.ok()) << committed.status().message();
  EXPECT_THAT(*committed, ElementsAre("old"));
  // A message the old ledger knew is still a duplicate.
  std::vector<ProcessedMessage> batch = {Sent("old", kToday), Sent("new", kToday)};
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 1u);
  EXPECT_EQ(loaded->duplicates, 1u);

  // Once all it knew has expired (3 days) and an hour more, it is dropped.
  now_ms_ += 3 * kDay + 2 * 3'600'000;
  auto later = Sink();
  ASSERT_NE(later, nullptr);
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT to_regclass('\"{}_ledger1\"') IS NULL", table_)), "t");
  std::vector<ProcessedMessage> next = {Sent("newer", now_ms_)};
  auto after = later->Load(next);
  ASSERT_TRUE(after.ok()) << after.status().message();
  EXPECT_EQ(after->rows_loaded, 1u);
}

// The partitions of `table` (unquoted name), by name.
std::vector<std::string> Children(Db& db, const std::string& table) {
  std::vector<std::string> out;
  for (auto& row :
       db.Rows(fmt::format("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                           "WHERE i.inhparent = '\"{}\"'::regclass ORDER BY 1",
                           table))) {
    out.push_back(*row[0]);
  }
  return out;
}

TEST_F(LedgerTest, PartitionByDayMakesDayPartitionsOfTheTargetTable) {
  table_ = "pd" + table_.substr(0, 30);
  auto sink = Sink("day");
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT relkind FROM pg_class WHERE oid = '\"{}\"'::regclass", table_)),
            "p");
  // Yesterday to three days ahead, and a default partition for any other date.
  EXPECT_THAT(Children(db_, table_),
              ElementsAre(table_ + "_default", table_ + "_p20261126", table_ + "_p20261127",
                          table_ + "_p20261128", table_ + "_p20261129", table_ + "_p20261130"));
  std::vector<ProcessedMessage> batch = {Sent("a", kToday - 1), Sent("b", kToday),
                                         Sent("c", kToday - 40 * kDay)};
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 3u);
  auto where =
      db_.Rows(fmt::format("SELECT user_id, tableoid::regclass::text FROM \"{}\" ORDER BY 1", table_));
  ASSERT_EQ(where.size(), 3u);
  EXPECT_EQ(*where[0][1], table_ + "_p20261126");
  EXPECT_EQ(*where[1][1], table_ + "_p20261127");
  EXPECT_EQ(*where[2][1], table_ + "_default");
  // A later process, without the flag, goes on making the same kind of partitions.
  now_ms_ += 2 * kDay;
  auto later = Sink();
  ASSERT_NE(later, nullptr);
  EXPECT_EQ(Children(db_, table_).back(), table_ + "_p20261202");
}

TEST_F(LedgerTest, PartitionByMonthLeavesAnExistingTableAlone) {
  db_.Exec(
      fmt::format("CREATE TABLE \"{}\" (user_id varchar(128), device_type varchar(32), masked_ip "
                  "varchar(256), masked_device_id varchar(256), locale varchar(32), app_version varchar(15), "
                  "create_date date)",
                  table_));
  auto sink = Sink("month");
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT relkind FROM pg_class WHERE oid = '\"{}\"'::regclass", table_)),
            "r");
  table_ = "pm" + table_.substr(0, 30);
  auto fresh = Sink("month");
  ASSERT_NE(fresh, nullptr);
  EXPECT_THAT(Children(db_, table_),
              ElementsAre(table_ + "_default", table_ + "_p202610", table_ + "_p202611", table_ + "_p202612",
                          table_ + "_p202701"));
}

TEST_F(LedgerTest, PartitionByUsesPgPartmanWhereItIsInstalled) {
  // A database of its own, so the extension changes nothing for the other tests.
  std::string dbname = UniqueName("db");
  db_.Exec(fmt::format("CREATE DATABASE \"{}\"", dbname));
  struct DropDatabase {
    Db& db;
    std::string name;
    ~DropDatabase() { db.Exec(fmt::format("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", name)); }
  } drop{db_, dbname};
  std::string conninfo = fmt::format("dbname={}", dbname);
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo.c_str()), &PQfinish);
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  auto exec = [&](const std::string& sql) {
    std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), sql.c_str()), &PQclear);
    EXPECT_TRUE(PQresultStatus(res.get()) == PGRES_TUPLES_OK || PQresultStatus(res.get()) == PGRES_COMMAND_OK)
        << sql << ": " << PQerrorMessage(conn.get());
    return PQresultStatus(res.get()) == PGRES_TUPLES_OK && PQntuples(res.get()) > 0
               ? std::string(PQgetvalue(res.get(), 0, 0))
               : std::string();
  };
  exec("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman");

  auto sink = Sink("month", conninfo);
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(
      exec(fmt::format("SELECT partition_interval FROM partman.part_config WHERE parent_table = 'public.{}'",
                       table_)),
      "1 mon");
  // pg_partman made this month's, four ahead and four back (by the real clock), and a default one.
  EXPECT_EQ(
      exec(fmt::format("SELECT count(*) FROM pg_inherits WHERE inhparent = '\"{}\"'::regclass", table_)),
      "10");
  now_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  std::vector<ProcessedMessage> batch = {Sent("a", now_ms_)};
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 1u);
  EXPECT_EQ(exec(fmt::format("SELECT count(*) FROM ONLY \"{}_default\"", table_)), "0");
  sink.reset();
}

}  // namespace
}  // namespace sqs2pg::integration
