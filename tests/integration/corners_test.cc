// Issue 17: the corners where a promise used to break, each against a real Postgres. Named in
// docs/reliability.md beside the promise it guards.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "harness.h"
#include "sink/postgres/postgres_sink.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;

constexpr std::int64_t kSentMs = 1'764'892'800'000;  // 2025-12-05 00:00 UTC

// A valid row whose field lengths vary with i, so consecutive messages have different shapes.
ProcessedMessage Row(const std::string& id, int i = 0) {
  LoginRow row{"u_" + id,
               std::string("ios") + std::string(static_cast<size_t>(i % 5), 'x'),
               "k.ip" + std::string(static_cast<size_t>(i % 3), 'p'),
               "k.dev",
               std::nullopt,
               "1.2.3",
               static_cast<std::int32_t>(kSentMs / sink::kMillisPerDay)};
  if (i % 2 == 0) row.locale = "FR";
  ProcessedMessage m{id, kSentMs + 1000, row};
  m.sent_timestamp_ms = kSentMs;
  return m;
}

class CornersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LoadStackEnvironment();
    table_ = UniqueName("c");
  }

  std::unique_ptr<sink::PostgresSink> Sink(
      const std::string& conninfo = "", std::chrono::milliseconds watchdog_margin = std::chrono::seconds(30),
      std::chrono::milliseconds statement_timeout = std::chrono::seconds(60)) {
    sink::PostgresSinkConfig config{conninfo, table_};
    config.watchdog_margin = watchdog_margin;
    config.statement_timeout = statement_timeout;
    config.seal_body = [](std::string_view s) -> Result<std::string> {
      return "sealed:" + std::to_string(s.size());
    };
    auto sink = sink::PostgresSink::Connect(config);
    EXPECT_TRUE(sink.ok()) << sink.status().message();
    if (!sink.ok()) return nullptr;
    auto prepared = (*sink)->Prepare();
    EXPECT_TRUE(prepared.ok()) << prepared.status().message();
    if (!prepared.ok()) return nullptr;
    return std::move(sink).value();
  }

  std::string table_;
  Db db_;
};

// Restores synchronous_standby_names however the test ends: with it set, every commit on the
// shared test server would wait for a standby that does not exist.
class GhostStandby {
 public:
  explicit GhostStandby(Db& db) : db_(db) {
    db_.Exec("ALTER SYSTEM SET synchronous_standby_names = 'ghost'");
    db_.Scalar("SELECT pg_reload_conf()");
    WaitFor("ghost");
  }
  ~GhostStandby() { Off(); }
  void Off() {
    if (off_) return;
    off_ = true;
    db_.Exec("ALTER SYSTEM RESET synchronous_standby_names");
    db_.Scalar("SELECT pg_reload_conf()");
    WaitFor("");
  }

 private:
  void WaitFor(const std::string& value) {
    for (int i = 0; i < 100; ++i) {
      Db fresh;  // a new session reads the reloaded file at once
      if (fresh.Scalar("SHOW synchronous_standby_names") == value) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "synchronous_standby_names did not become '" << value << "'";
  }
  Db& db_;
  bool off_ = false;
};

// Item 1: a COMMIT whose wait for a synchronous standby is cancelled answers OK with a WARNING
// that has no SQLSTATE of its own and is worded in the server's lc_messages (German here). Its
// outcome is unknown: the batch must not count as committed (so it is not deleted); loaded again,
// the ledger skips it.
TEST_F(CornersTest, AWarningDuringCommitInAnyLanguageIsAnUnknownOutcome) {
  ASSERT_EQ(db_.Scalar("SELECT count(*) FROM pg_settings WHERE name = 'lc_messages'"), "1");
  auto sink = Sink("options='-c lc_messages=de_DE.UTF-8'");
  ASSERT_NE(sink, nullptr);
  std::vector<ProcessedMessage> batch = {Row("a", 0), Row("b", 1)};
  {
    GhostStandby ghost(db_);
    auto load = std::async(std::launch::async, [&] { return sink->Load(batch); });
    // The COMMIT waits for the standby that is not there: cancel that wait, as a failover or an
    // operator would.
    bool cancelled = false;
    for (int i = 0; i < 200 && !cancelled; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      cancelled = db_.Scalar(
                      "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = "
                      "'SyncRep' AND application_name = 'sqs2pg'") != "0";
    }
    ASSERT_TRUE(cancelled) << "no COMMIT waited for the standby";
    auto result = load.get();
    ASSERT_FALSE(result.ok()) << "a COMMIT that answered with a WARNING counted as committed";
    EXPECT_TRUE(result.status().IsTransient()) << result.status().message();
    EXPECT_THAT(result.status().message(), HasSubstr("WARNING"));
  }
  // It did commit locally: loaded again, both are duplicates.
  auto again = sink->Load(batch);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->rows_loaded, 0u);
  EXPECT_EQ(again->duplicates, 2u);
  EXPECT_EQ(db_.Count(table_), 2);
}

// Item 2: the ledger from before partitioning is consulted until its expiry is known. A large
// old ledger (1,000,000 rows, half of them deleted by the old version's pruning, never vacuumed)
// cannot be read in a 100 ms statement timeout; a redelivered message and a redelivered reject
// committed before the migration must still be duplicates, and the reject must not hit the
// rejects table's primary key.
TEST_F(CornersTest, TheOldLedgerIsConsultedWhileItsExpiryIsUnknown) {
  db_.Exec(fmt::format(
      "CREATE TABLE \"{0}_ledger\" (message_id text PRIMARY KEY, outcome text NOT NULL CHECK (outcome IN "
      "('loaded', 'rejected')), processed_at timestamptz NOT NULL DEFAULT now()) WITH (autovacuum_enabled = "
      "false);"
      "INSERT INTO \"{0}_ledger\" SELECT md5(g::text)::uuid::text, 'loaded', now() FROM generate_series(1, "
      "1000000) g;"
      "DELETE FROM \"{0}_ledger\" WHERE message_id < '8';"
      "INSERT INTO \"{0}_ledger\" VALUES ('old-row', 'loaded'), ('old-reject', 'rejected')",
      table_));
  const std::string slow = "options='-c statement_timeout=100'";
  {
    // The migration itself, by this version, under the 100 ms timeout.
    auto first = Sink(slow);
    ASSERT_NE(first, nullptr);
  }
  // What a previous version migrated: no time recorded on the old ledger.
  db_.Exec(fmt::format("COMMENT ON TABLE \"{}_ledger1\" IS NULL", table_));
  // The reject the old version stored before the migration.
  db_.Exec(
      fmt::format("INSERT INTO \"{}_rejects\" (message_id, received_at, reason, body, body_encrypted) VALUES "
                  "('old-reject', now(), 'user_id missing', 'sealed', true)",
                  table_));
  auto sink = Sink(slow);
  ASSERT_NE(sink, nullptr);
  std::vector<ProcessedMessage> batch = {Row("old-row"), Row("new")};
  ProcessedMessage reject{"old-reject", kSentMs + 1000,
                          Rejection{"user_id missing", "sealed", true, 2, "{}"}};
  reject.sent_timestamp_ms = kSentMs;
  batch.push_back(reject);
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 1u);  // "new" only
  EXPECT_EQ(loaded->duplicates, 2u);
  EXPECT_EQ(db_.Count(table_), 1);
  EXPECT_EQ(db_.Count(table_ + "_rejects"), 1);
}

// Item 4: when the database refuses every row with one SQLSTATE (here 23514, "no partition of
// relation found for row": the pre-made partitions ran out), good messages are not turned into
// rejects: they are left in the queue and the load says why.
TEST_F(CornersTest, ASystemicRefusalLeavesGoodMessagesInTheQueue) {
  db_.Exec(fmt::format(
      "CREATE TABLE \"{0}\" (user_id varchar(128), device_type varchar(32), masked_ip varchar(256), "
      "masked_device_id varchar(256), locale varchar(32), app_version varchar(15), create_date date) "
      "PARTITION "
      "BY RANGE (create_date);"
      "CREATE TABLE \"{0}_p2000\" PARTITION OF \"{0}\" FOR VALUES FROM ('2000-01-01') TO ('2000-01-02')",
      table_));
  auto sink = Sink();
  ASSERT_NE(sink, nullptr);
  std::vector<ProcessedMessage> batch;
  for (int i = 0; i < 40; ++i) batch.push_back(Row(fmt::format("m{}", i), i));
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rejects_stored, 0u);
  EXPECT_EQ(loaded->left_for_redelivery.size(), 40u);
  EXPECT_THAT(loaded->systemic_refusal, HasSubstr("SQLSTATE 23514"));
  EXPECT_EQ(db_.Count(table_ + "_rejects"), 0);
  // Fewer statements than isolating all 40 would take: after the third refusal, none is halved.
  // The DBA adds the partition: the same messages load.
  db_.Exec(fmt::format("CREATE TABLE \"{0}_pnow\" PARTITION OF \"{0}\" DEFAULT", table_));
  auto again = sink->Load(batch);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->rows_loaded, 40u);
  EXPECT_TRUE(again->systemic_refusal.empty());
}

// ...while a few refused rows among good ones are still the rows' fault: rejected, the rest load.
TEST_F(CornersTest, RefusedRowsAmongGoodOnesAreStillRejects) {
  auto sink = Sink();
  ASSERT_NE(sink, nullptr);
  db_.Exec(fmt::format("ALTER TABLE \"{}\" ADD CONSTRAINT no_bad CHECK (user_id NOT LIKE 'u_bad%')", table_));
  std::vector<ProcessedMessage> batch;
  for (int i = 0; i < 60; ++i)
    batch.push_back(Row(i % 10 == 3 ? fmt::format("bad{}", i) : fmt::format("m{}", i), i));
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 54u);
  EXPECT_EQ(loaded->rejects_stored, 6u);
  EXPECT_EQ(loaded->refused_by_database, 6u);
  EXPECT_TRUE(loaded->systemic_refusal.empty());
}

// Item 5: the watchdog's deadline is per statement. Isolating many refused rows in a slow table
// takes many statements, far longer in all than one deadline; each is well within it, so the
// load completes instead of being cut off and started again, for ever.
TEST_F(CornersTest, IsolatingManyRefusedRowsOutlastsTheWatchdogDeadline) {
  db_.Exec(fmt::format(
      "CREATE TABLE \"{0}\" (user_id varchar(128), device_type varchar(32), masked_ip varchar(256), "
      "masked_device_id varchar(256), locale varchar(32), app_version varchar(15), create_date date, "
      "CONSTRAINT no_bad CHECK (user_id NOT LIKE 'u_bad%'));"
      "CREATE FUNCTION \"{0}_slow\"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.005); "
      "RETURN NEW; END $$;"
      "CREATE TRIGGER slow BEFORE INSERT ON \"{0}\" FOR EACH ROW EXECUTE FUNCTION \"{0}_slow\"()",
      table_));
  // Deadline: 300 ms + 2 s per statement (the slowest, all 300 rows at 5 ms each, takes 1.5 s);
  // the whole load takes several of them (at 4 ms a row it took 2.2 s once the merge was planned
  // once per session: too close to one deadline to prove anything).
  auto sink = Sink("", std::chrono::milliseconds(2000), std::chrono::milliseconds(300));
  ASSERT_NE(sink, nullptr);
  std::vector<ProcessedMessage> batch;
  for (int i = 0; i < 300; ++i)
    batch.push_back(Row(i % 8 == 5 ? fmt::format("bad{}", i) : fmt::format("m{}", i), i));
  auto started = std::chrono::steady_clock::now();
  auto loaded = sink->Load(batch);
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 263u);
  EXPECT_EQ(loaded->rejects_stored, 37u);
  EXPECT_GT(took, std::chrono::milliseconds(2300))
      << "the load was not longer than one deadline: the test proves nothing";
}

}  // namespace
}  // namespace sqs2pg::integration
