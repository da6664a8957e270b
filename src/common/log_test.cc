#include "common/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

#include "common/json_writer.h"

namespace sqs2pg::log {
namespace {

using ::testing::HasSubstr;

// Every line written while it lives goes to a string, in JSON.
class JsonLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto logger =
        std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_st>(out_));
    logger->set_formatter(MakeJsonFormatter());
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }
  // The one line written, parsed.
  simdjson::dom::element Line() {
    text_ = out_.str();
    EXPECT_EQ(std::count(text_.begin(), text_.end(), '\n'), 1) << text_;
    auto parsed = parser_.parse(text_);
    EXPECT_EQ(parsed.error(), simdjson::SUCCESS) << text_;
    return parsed.value_unsafe();
  }
  std::ostringstream out_;
  std::string text_;
  simdjson::dom::parser parser_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(JsonLogTest, ALineIsOneObjectWithStableKeysAndItsFields) {
  Warn({{"attempt", 3}, {"delay_ms", std::uint64_t{400}}, {"queue", "https://sqs/q"}, {"ok", false}},
       "load failed, retrying in {} ms", 400);
  auto line = Line();
  EXPECT_EQ(std::string_view(line["level"].get_string().value()), "warn");
  EXPECT_EQ(std::string_view(line["msg"].get_string().value()), "load failed, retrying in 400 ms");
  EXPECT_EQ(int64_t(line["attempt"].get_int64().value()), 3);
  EXPECT_EQ(uint64_t(line["delay_ms"].get_uint64().value()), 400u);
  EXPECT_EQ(std::string_view(line["queue"].get_string().value()), "https://sqs/q");
  EXPECT_FALSE(bool(line["ok"].get_bool().value()));
  std::string_view ts = line["ts"].get_string().value();
  EXPECT_EQ(ts.size(), 24u);  // 2026-11-27T19:20:01.123Z
  EXPECT_EQ(ts.back(), 'Z');
}

TEST_F(JsonLogTest, PlainSpdlogLinesAreJsonToo) {
  spdlog::info("consuming \"q\"\n\tnow");
  EXPECT_EQ(std::string_view(Line()["msg"].get_string().value()), "consuming \"q\"\n\tnow");
}

TEST_F(JsonLogTest, AnyBytesGiveValidJson) {
  std::string nasty = "a\x01\xff\xc3(\xed\xa0\x80\xf4\x90\x80\x80 ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  Error({{"sqlstate", "23505"}, {"body", std::string_view(nasty)}}, "refused: {}", nasty);
  auto line = Line();
  // One U+FFFD for each byte that does not start a well-formed sequence: ff, c3 before '(', the
  // three of a surrogate (ed a0 80), the four of a code point above U+10FFFF (f4 90 80 80).
  std::string fffd = "\xef\xbf\xbd";
  std::string expected = "a\x01" + fffd + fffd + "(";
  for (int i = 0; i < 7; ++i) expected += fffd;
  expected += " ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  EXPECT_EQ(std::string_view(line["body"].get_string().value()), expected);
}

TEST_F(JsonLogTest, AFieldCannotHideAStableKey) {
  Info({{"msg", "other"}, {"level", "x"}}, "the message");
  auto line = Line();
  EXPECT_EQ(std::string_view(line["msg"].get_string().value()), "the message");
  EXPECT_THAT(text_, testing::Not(HasSubstr("other")));
}

TEST(LogTest, SqlStateComesFromThePostgresMessage) {
  EXPECT_EQ(SqlState(Status::Permanent("COPY x: permission denied for table x (SQLSTATE 42501)")), "42501");
  EXPECT_EQ(SqlState(Status::Transient("server closed the connection")), "");
}

TEST(JsonWriterLossyTest, KeepsValidUtf8AndEscapes) {
  std::string out;
  AppendJsonStringLossy(out, "\"\\\n\xc3\xa9");
  EXPECT_EQ(out, "\"\\\"\\\\\\n\xc3\xa9\"");
  out.clear();
  AppendJsonStringLossy(out, "\xc0\xaf");  // an overlong '/'
  EXPECT_EQ(out, "\"\\ufffd\\ufffd\"");
}

}  // namespace
}  // namespace sqs2pg::log
