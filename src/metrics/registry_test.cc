#include "metrics/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>

#include "metrics/sqs2pg_metrics.h"

namespace sqs2pg::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(RegistryTest, CounterWithoutLabels) {
  Registry r;
  Counter& c = r.AddCounter("app_events_total", "Events seen.").Get();
  c.Inc();
  c.Inc(41);
  EXPECT_EQ(r.Render(),
            "# HELP app_events_total Events seen.\n"
            "# TYPE app_events_total counter\n"
            "app_events_total 42\n");
}

TEST(RegistryTest, LabelledChildrenAreSortedAndEscaped) {
  Registry r;
  auto& f = r.AddCounter("app_requests_total", "Requests by path.\nSecond line \\ here.", {"path", "code"});
  f.With({"/b", "200"}).Inc(2);
  f.With({"/a \"quoted\"\nline\\", "500"}).Inc();
  EXPECT_EQ(r.Render(),
            "# HELP app_requests_total Requests by path.\\nSecond line \\\\ here.\n"
            "# TYPE app_requests_total counter\n"
            "app_requests_total{path=\"/a \\\"quoted\\\"\\nline\\\\\",code=\"500\"} 1\n"
            "app_requests_total{path=\"/b\",code=\"200\"} 2\n");
}

TEST(RegistryTest, GaugeValues) {
  Registry r;
  auto& f = r.AddGauge("app_temperature_celsius", "Temperature.", {"room"});
  f.With({"a"}).Set(21.5);
  f.With({"b"}).Set(3);
  f.With({"b"}).Add(-4);
  f.With({"c"}).Set(std::numeric_limits<double>::infinity());
  EXPECT_EQ(r.Render(),
            "# HELP app_temperature_celsius Temperature.\n"
            "# TYPE app_temperature_celsius gauge\n"
            "app_temperature_celsius{room=\"a\"} 21.5\n"
            "app_temperature_celsius{room=\"b\"} -1\n"
            "app_temperature_celsius{room=\"c\"} +Inf\n");
}

TEST(RegistryTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  Histogram& h = r.AddHistogram("app_latency_seconds", "Latency.", {0.005, 0.1, 1}).Get();
  h.Observe(0.001);
  h.Observe(0.005);  // on a bound: counted in that bucket (le means <=)
  h.Observe(0.5);
  h.Observe(7);
  EXPECT_EQ(r.Render(),
            "# HELP app_latency_seconds Latency.\n"
            "# TYPE app_latency_seconds histogram\n"
            "app_latency_seconds_bucket{le=\"0.005\"} 2\n"
            "app_latency_seconds_bucket{le=\"0.1\"} 2\n"
            "app_latency_seconds_bucket{le=\"1\"} 3\n"
            "app_latency_seconds_bucket{le=\"+Inf\"} 4\n"
            "app_latency_seconds_sum 7.506\n"
            "app_latency_seconds_count 4\n");
}

TEST(RegistryTest, HistogramWithLabelsPutsLeLast) {
  Registry r;
  auto& f = r.AddHistogram("app_size_bytes", "Sizes.", {10}, {"kind"});
  f.With({"x"}).Observe(20);
  EXPECT_EQ(r.Render(),
            "# HELP app_size_bytes Sizes.\n"
            "# TYPE app_size_bytes histogram\n"
            "app_size_bytes_bucket{kind=\"x\",le=\"10\"} 0\n"
            "app_size_bytes_bucket{kind=\"x\",le=\"+Inf\"} 1\n"
            "app_size_bytes_sum{kind=\"x\"} 20\n"
            "app_size_bytes_count{kind=\"x\"} 1\n");
}

TEST(RegistryTest, CollectorsRunAtScrapeTime) {
  Registry r;
  double v = 1;
  r.AddCollector("app_up", "Up.", Type::kGauge, [&v] { return std::vector<Sample>{{{{"a", "b\"c"}}, v}}; });
  v = 0.25;
  EXPECT_EQ(r.Render(), "# HELP app_up Up.\n# TYPE app_up gauge\napp_up{a=\"b\\\"c\"} 0.25\n");
}

TEST(RegistryTest, BadNamesAreRefusedAtRegistration) {
  Registry r;
  EXPECT_THROW(r.AddCounter("app_events", "no _total"), std::invalid_argument);
  EXPECT_THROW(r.AddGauge("9lives", "starts with a digit"), std::invalid_argument);
  EXPECT_THROW(r.AddGauge("app-dash", "dash"), std::invalid_argument);
  EXPECT_THROW(r.AddGauge("app_x", "reserved label", {"__name"}), std::invalid_argument);
  EXPECT_THROW(r.AddHistogram("app_h", "le is the histogram's", {1}, {"le"}), std::invalid_argument);
  EXPECT_THROW(r.AddHistogram("app_h2", "unsorted", {2, 1}), std::invalid_argument);
  r.AddGauge("app_once", "x");
  EXPECT_THROW(r.AddGauge("app_once", "x"), std::invalid_argument);
  auto& f = r.AddCounter("app_l_total", "x", {"a"});
  EXPECT_THROW(f.With({}), std::invalid_argument);
}

TEST(RegistryTest, FormatValue) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(1e15), "1000000000000000");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e300), "1e+300");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(RegistryTest, ConcurrentIncrementsAreAllCounted) {
  Registry r;
  Counter& c = r.AddCounter("app_n_total", "n").Get();
  Histogram& h = r.AddHistogram("app_h", "h", {1}).Get();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        c.Inc();
        h.Observe(2);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 400000u);
  EXPECT_EQ(h.Count(), 400000u);
  EXPECT_EQ(h.Sum(), 800000);
}

TEST(Sqs2pgMetricsTest, EveryNameFollowsTheConventions) {
  Registry r;
  Metrics m(r);
  AddProcessMetrics(r);
  std::string text = r.Render();
  for (const std::string& name : r.Names()) {
    EXPECT_THAT(name, MatchesRegex("(sqs2pg|process)_[a-z_]+")) << name;
    if (text.find("# TYPE " + name + " counter") != std::string::npos) {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
    if (text.find("# TYPE " + name + " histogram") != std::string::npos) {
      EXPECT_TRUE(name.ends_with("_seconds") || name.ends_with("_messages")) << name;
    }
  }
  // Series that alerts use exist at 0 before anything happens.
  EXPECT_THAT(text, HasSubstr("sqs2pg_messages_rejected_total{reason=\"invalid_json\"} 0\n"));
  EXPECT_THAT(
      text,
      HasSubstr("sqs2pg_sqs_requests_total{operation=\"DeleteMessageBatch\",outcome=\"network_error\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("sqs2pg_queue_messages{state=\"visible\"} 0\n"));
}

TEST(Sqs2pgMetricsTest, ProcessMetricsReadProc) {
  Registry r;
  AddProcessMetrics(r);
  std::string text = r.Render();
  EXPECT_THAT(text, MatchesRegex("(.|\n)*process_resident_memory_bytes [1-9][0-9]{5,}\n(.|\n)*"));
  EXPECT_THAT(text, MatchesRegex("(.|\n)*process_open_fds [1-9][0-9]*\n(.|\n)*"));
  EXPECT_THAT(text, MatchesRegex("(.|\n)*process_start_time_seconds 1[0-9]{9}(\\.[0-9]+)?\n(.|\n)*"));
  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter\n"));
}

TEST(Sqs2pgMetricsTest, RejectReasonClasses) {
  // The reasons LoginTransform and the Postgres sink write (see their tests for the full texts).
  const std::pair<const char*, const char*> cases[] = {
      {"body is not valid JSON (TAPE_ERROR: ...)", "invalid_json"},
      {"body is array, expected a JSON object", "not_an_object"},
      {"field ip appears more than once", "duplicate_field"},
      {"missing field device_id", "missing_field"},
      {"field user_id must be a string, got number", "wrong_type"},
      {"field locale must be a string or null, got array", "wrong_type"},
      {"field user_id is empty", "empty_field"},
      {"field locale contains U+0000, which Postgres cannot store", "invalid_text"},
      {"field ip is not a valid IPv4 or IPv6 address", "invalid_ip"},
      {"field locale is 40 characters, longer than its column's 32", "too_long"},
      {"field device_id is 300 bytes; its masked form would not fit in 256 characters (at most 100 bytes "
       "fit)",
       "too_long"},
      {"field app_version does not fit the integer column (expected major[.minor[.patch]], minor and patch "
       "at "
       "most 999)",
       "invalid_value"},
      {"message has no SentTimestamp attribute", "bad_timestamp"},
      {"message's SentTimestamp is after 9999-12-31", "bad_timestamp"},
      {"database refused the row: value too long (SQLSTATE 22001)", "database_refused"},
      {"something new", "other"},
  };
  for (const auto& [reason, cls] : cases) EXPECT_EQ(RejectReasonClass(reason), cls) << reason;
  Registry r;
  Metrics m(r);
  m.CountRejects("missing field ip", 3);
  EXPECT_EQ(m.rejected.With({"missing_field"}).Value(), 3u);
}

TEST(Sqs2pgMetricsTest, SqsCallsAndLag) {
  Registry r;
  Metrics m(r);
  m.CountSqsCall(SqsOp::kReceiveMessage, SqsOutcome::kSuccess, 0.02);
  EXPECT_TRUE(m.health.sqs_ok.load());
  m.CountSqsCall(SqsOp::kDeleteMessageBatch, SqsOutcome::kNetworkError, 1);
  EXPECT_FALSE(m.health.sqs_ok.load());
  m.CountSqsCall(SqsOpFromName("GetQueueUrl"), SqsOutcome::kSuccess, 0.01);
  std::string text = r.Render();
  EXPECT_THAT(text,
              HasSubstr("sqs2pg_sqs_requests_total{operation=\"ReceiveMessage\",outcome=\"success\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("sqs2pg_sqs_requests_total{operation=\"DeleteMessageBatch\",outcome=\"network_error\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sqs2pg_sqs_requests_other_total 1\n"));
  EXPECT_THAT(text, HasSubstr("sqs2pg_lag_seconds 0\n"));
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  m.newest_loaded_sent_ms = now_ms - 90'000;
  EXPECT_THAT(r.Render(), MatchesRegex("(.|\n)*sqs2pg_lag_seconds 9[0-9](\\.[0-9]+)?\n(.|\n)*"));
  m.caught_up = true;
  EXPECT_THAT(r.Render(), HasSubstr("sqs2pg_lag_seconds 0\n"));
}

}  // namespace
}  // namespace sqs2pg::metrics
