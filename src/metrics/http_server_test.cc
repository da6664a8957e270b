#include "metrics/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

namespace sqs2pg::metrics {
namespace {

using ::testing::HasSubstr;

TEST(ParseHostPortTest, Forms) {
  auto v4 = ParseHostPort("127.0.0.1:9187");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->first, "127.0.0.1");
  EXPECT_EQ(v4->second, 9187);
  auto v6 = ParseHostPort("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->first, "::1");
  EXPECT_EQ(v6->second, 0);
  auto any = ParseHostPort(":9187");
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->first, "0.0.0.0");
  for (const char* bad : {"9187", "host:", "host:x", "host:70000", "::1:9187", "[::1:9187", "h:-1"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

TEST(ProbeTest, LivenessFollowsTheLoop) {
  Health h;
  EXPECT_EQ(Liveness(h, 1'000'000).status, 200);  // starting: not yet looping
  h.loop_turned_ms = 1'000'000;
  EXPECT_EQ(Liveness(h, 1'000'050).status, 200);
  Probe stale = Liveness(h, 1'000'000 + kLoopStaleMs + 1);
  EXPECT_EQ(stale.status, 503);
  EXPECT_THAT(stale.body, HasSubstr("has not turned"));
}

TEST(ProbeTest, ReadinessNeedsLoopSqsAndPostgres) {
  Registry r;
  Metrics m(r);
  std::int64_t now = 5'000'000;
  Probe p = Readiness(m, now);
  EXPECT_EQ(p.status, 503);
  EXPECT_THAT(p.body, HasSubstr("starting"));
  EXPECT_THAT(p.body, HasSubstr("SQS"));
  EXPECT_THAT(p.body, HasSubstr("Postgres"));
  m.health.loop_turned_ms = now;
  m.health.sqs_ok = true;
  m.postgres_connections_up.Set(2);
  EXPECT_EQ(Readiness(m, now).status, 200);
  m.postgres_connections_up.Set(0);
  EXPECT_EQ(Readiness(m, now).status, 503);
  m.health.needs_postgres = false;  // a dry run
  EXPECT_EQ(Readiness(m, now).status, 200);
  m.health.stopping = true;
  EXPECT_THAT(Readiness(m, now).body, HasSubstr("stopping"));
}

TEST(HttpServerTest, ServesMetricsAndProbesOnAFreePort) {
  Registry r;
  Metrics m(r);
  m.loaded.Inc(7);
  auto server = HttpServer::Start("127.0.0.1:0", m);
  ASSERT_TRUE(server.ok()) << server.status().message();
  std::string address = (*server)->address();
  ASSERT_TRUE(address.starts_with("127.0.0.1:")) << address;
  int port = std::stoi(address.substr(address.rfind(':') + 1));
  ASSERT_GT(port, 0);
  httplib::Client client("127.0.0.1", port);
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(metrics->body, HasSubstr("sqs2pg_messages_loaded_total 7\n"));
  auto healthz = client.Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);
  auto readyz = client.Get("/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 503);
  m.health.LoopTurned();
  m.health.sqs_ok = true;
  m.postgres_connections_up.Set(1);
  readyz = client.Get("/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 200);
  auto missing = client.Get("/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  // A second server on the same port cannot start, and says which address.
  auto clash = HttpServer::Start(address, m);
  ASSERT_FALSE(clash.ok());
  EXPECT_THAT(clash.status().message(), HasSubstr(address));
}

}  // namespace
}  // namespace sqs2pg::metrics
