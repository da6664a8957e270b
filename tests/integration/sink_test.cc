// The Postgres sink against a real server: ledger, rejects, integer app_version, refused rows.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"
#include "sink/postgres/postgres_sink.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;

LoginRow Row(const std::string& user, std::optional<std::string> app_version = "1.2.3",
             std::optional<std::string> locale = "FR") {
  return LoginRow{
      user,  "ios", "k.maskedip_" + user, "k.maskeddev_" + user, std::move(locale), std::move(app_version),
      19'675};
}

ProcessedMessage Message(const std::string& id, Record record) {
  return ProcessedMessage{id, 1'700'000'000'123, std::move(record)};
}

class SinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LoadStackEnvironment();
    table_ = UniqueName("t");
  }

  std::unique_ptr<sink::PostgresSink> Connect() {
    auto sink = sink::PostgresSink::Connect({"", table_});
    EXPECT_TRUE(sink.ok()) << sink.status().message();
    return sink.ok() ? std::move(sink).value() : nullptr;
  }

  std::string table_;
  Db db_;
};

TEST_F(SinkTest, CreatesTheSeedTableAndReadsItsColumnSizes) {
  auto sink = Connect();
  auto shape = sink->Prepare();
  ASSERT_TRUE(shape.ok()) << shape.status().message();
  EXPECT_EQ(shape->user_id_chars, 128u);
  EXPECT_EQ(shape->device_type_chars, 32u);
  EXPECT_EQ(shape->masked_ip_chars, 256u);
  EXPECT_EQ(shape->locale_chars, 32u);
  EXPECT_EQ(shape->app_version_chars, 15u);
  EXPECT_FALSE(shape->app_version_is_integer);
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                   "WHERE attrelid = '\"{}\"'::regclass AND attname = 'masked_device_id'",
                                   table_)),
            "character varying(256)");
}

TEST_F(SinkTest, AMessageIdIsLoadedOnceWhateverHowOftenItComes) {
  auto sink = Connect();
  ASSERT_TRUE(sink->Prepare().ok());
  std::vector<ProcessedMessage> batch = {Message("m1", Row("u1")), Message("m2", Row("u2")),
                                         Message("m1", Row("u1"))};  // twice in one batch
  auto first = sink->Load(batch);
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ(first->rows_loaded, 2u);
  EXPECT_EQ(first->duplicates, 1u);

  std::vector<ProcessedMessage> redelivered = {Message("m2", Row("u2")), Message("m3", Row("u3"))};
  auto second = sink->Load(redelivered);
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(second->rows_loaded, 1u);
  EXPECT_EQ(second->duplicates, 1u);
  EXPECT_EQ(db_.Count(table_), 3);

  // A second sink (another process, or the same one after a restart) sees the same ledger.
  auto other = Connect();
  ASSERT_TRUE(other->Prepare().ok());
  auto third = other->Load(batch);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->rows_loaded, 0u);
  EXPECT_EQ(third->duplicates, 3u);
  EXPECT_EQ(db_.Count(table_), 3);
}

// The merge runs as a statement prepared once per session. A new session (the server restarted,
// or the backend was terminated) has none: the sink must prepare it again, never ask for a
// statement the server no longer has.
TEST_F(SinkTest, TheMergeIsPreparedAgainInANewSession) {
  auto sink = Connect();
  ASSERT_TRUE(sink->Prepare().ok());
  auto first = sink->Load(std::vector<ProcessedMessage>{Message("m1", Row("u1"))});
  ASSERT_TRUE(first.ok()) << first.status().message();
  // Integration tests run one at a time, so every other sqs2pg session is this sink's.
  EXPECT_EQ(db_.Scalar("SELECT count(pg_terminate_backend(pid)) > 0 FROM pg_stat_activity WHERE "
                       "application_name = 'sqs2pg' AND pid <> pg_backend_pid()"),
            "t");
  std::vector<ProcessedMessage> second = {Message("m2", Row("u2")), Message("m3", Row("u3"))};
  Result<LoadSummary> loaded = sink->Load(second);
  for (int attempt = 0; attempt < 3 && !loaded.ok(); ++attempt) {
    EXPECT_TRUE(loaded.status().IsTransient()) << loaded.status().message();
    loaded = sink->Load(second);
  }
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 2u);
  EXPECT_EQ(db_.Count(table_), 3);
  EXPECT_EQ(db_.Count(table_ + "_rejects"), 0);
}

TEST_F(SinkTest, RejectsAreStoredOnceWithTheirReason) {
  auto sink = Connect();
  ASSERT_TRUE(sink->Prepare().ok());
  std::vector<ProcessedMessage> batch = {
      Message("bad", Rejection{"missing field user_id", R"({"foo":"x\ty\\z"})", false}),
      Message("good", Row("u1"))};
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rejects_stored, 1u);
  EXPECT_EQ(loaded->rows_loaded, 1u);
  auto again = sink->Load(batch);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duplicates, 2u);
  auto rows =
      db_.Rows(fmt::format("SELECT message_id, reason, body, body_encrypted, received_at = "
                           "to_timestamp(1700000000.123) FROM \"{}_rejects\"",
                           table_));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(*rows[0][0], "bad");
  EXPECT_EQ(*rows[0][1], "missing field user_id");
  EXPECT_EQ(*rows[0][2], R"({"foo":"x\ty\\z"})");
  EXPECT_EQ(*rows[0][3], "f");
  EXPECT_EQ(*rows[0][4], "t");
}

TEST_F(SinkTest, NullsStayNullAndTextSurvivesCopyEscaping) {
  auto sink = Connect();
  ASSERT_TRUE(sink->Prepare().ok());
  LoginRow row = Row("tab\there\\and\nnewline \xc3\xa9", std::nullopt, std::nullopt);
  row.device_type = std::nullopt;
  ASSERT_TRUE(sink->Load(std::vector{Message("m1", row)}).ok());
  auto rows = db_.Rows(
      fmt::format("SELECT user_id, device_type, locale, app_version, create_date FROM \"{}\"", table_));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(*rows[0][0], "tab\there\\and\nnewline \xc3\xa9");
  EXPECT_FALSE(rows[0][1].has_value());
  EXPECT_FALSE(rows[0][2].has_value());
  EXPECT_FALSE(rows[0][3].has_value());
  EXPECT_EQ(*rows[0][4], "2023-11-14");
}

TEST_F(SinkTest, IntegerAppVersionColumnIsDetected) {
  db_.Exec(fmt::format(
      "CREATE TABLE \"{}\" (user_id varchar(128), device_type varchar(32), masked_ip varchar(256), "
      "masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)",
      table_));
  auto sink = Connect();
  auto shape = sink->Prepare();
  ASSERT_TRUE(shape.ok()) << shape.status().message();
  EXPECT_TRUE(shape->app_version_is_integer);
  ASSERT_TRUE(sink->Load(std::vector{Message("m1", Row("u1", "2003000"))}).ok());
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT app_version FROM \"{}\"", table_)), "2003000");
}

TEST_F(SinkTest, ARowTheDatabaseRefusesBecomesARejectAndTheRestLoad) {
  // A constraint our validation does not know about: only the database can refuse this row.
  db_.Exec(fmt::format(
      "CREATE TABLE \"{}\" (user_id varchar(128), device_type varchar(32), masked_ip varchar(256), "
      "masked_device_id varchar(256), locale varchar(32) CHECK (locale <> 'XX'), "
      "app_version varchar(15), create_date date)",
      table_));
  // Stands in for the Masker run.cc gives each sink: what matters is that the row goes through it.
  sink::PostgresSinkConfig config{"", table_};
  config.seal_body = [](std::string_view plain) -> Result<std::string> {
    return "sealed:" + std::string(plain.rbegin(), plain.rend());
  };
  auto connected = sink::PostgresSink::Connect(config);
  ASSERT_TRUE(connected.ok()) << connected.status().message();
  auto& sink = *connected;
  ASSERT_TRUE(sink->Prepare().ok());
  std::vector<ProcessedMessage> batch;
  for (int i = 0; i < 9; ++i) batch.push_back(Message(fmt::format("m{}", i), Row(fmt::format("u{}", i))));
  batch.push_back(Message("refused", Row("ux", "1.0", "XX")));
  auto loaded = sink->Load(batch);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->rows_loaded, 9u);
  EXPECT_EQ(loaded->rejects_stored, 1u);
  EXPECT_EQ(loaded->refused_by_database, 1u);
  EXPECT_EQ(db_.Count(table_), 9);
  std::string reason =
      db_.Scalar(fmt::format("SELECT reason FROM \"{}_rejects\" WHERE message_id = 'refused'", table_));
  EXPECT_THAT(reason, HasSubstr("database refused the row"));
  EXPECT_THAT(reason, HasSubstr("23514"));
  EXPECT_THAT(reason, HasSubstr("violates check constraint \""));  // names kept, values not
  auto stored = db_.Rows(fmt::format(
      "SELECT body, body_encrypted, body_bytes, body_shape FROM \"{}_rejects\" WHERE message_id = 'refused'",
      table_));
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_THAT(*stored[0][0], ::testing::StartsWith("sealed:"));
  EXPECT_THAT(*stored[0][0], ::testing::Not(HasSubstr("maskeddev_ux")));
  EXPECT_EQ(*stored[0][1], "t");
  EXPECT_EQ(*stored[0][2], std::to_string(stored[0][0]->size() - 7));
  EXPECT_EQ(*stored[0][3],
            R"({"user_id":"string","device_type":"string","masked_ip":"string","masked_device_id":"string",)"
            R"("locale":"string","app_version":"string"})");
}

TEST_F(SinkTest, AMissingColumnIsAClearError) {
  db_.Exec(fmt::format("CREATE TABLE \"{}\" (user_id varchar(128))", table_));
  auto sink = Connect();
  auto shape = sink->Prepare();
  ASSERT_FALSE(shape.ok());
  EXPECT_THAT(shape.status().message(), HasSubstr("has no column device_type"));
}

TEST_F(SinkTest, WrongPortIsAClearError) {
  auto sink = sink::PostgresSink::Connect({"host=127.0.0.1 port=1 connect_timeout=2", table_});
  ASSERT_FALSE(sink.ok());
  EXPECT_THAT(sink.status().message(), HasSubstr("cannot connect to Postgres at 127.0.0.1:1"));
}

}  // namespace
}  // namespace sqs2pg::integration
