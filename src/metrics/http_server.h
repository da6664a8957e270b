#pragma once
// The HTTP endpoints of `run --metrics-addr`: /metrics (Prometheus text format), /healthz (the
// event loop is turning) and /readyz (Postgres and SQS answer, and no stop was requested).
// Served by cpp-httplib on two threads of its own, so a slow scraper never touches the pipeline.

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"
#include "metrics/sqs2pg_metrics.h"

namespace sqs2pg::metrics {

// The longest the event loop may go without a turn before /healthz answers 503. It turns at
// least every 50 ms when idle; 10 s means it is stuck.
inline constexpr std::int64_t kLoopStaleMs = 10'000;

// "HOST:PORT" (an IPv6 host in brackets: "[::1]:9100"); port 0 picks a free one. An empty host
// (":9100") means every address.
Result<std::pair<std::string, int>> ParseHostPort(std::string_view address);

struct Probe {
  int status = 200;  // 200 or 503
  std::string body;  // one line per check
};
Probe Liveness(const Health& health, std::int64_t now_ms);
Probe Readiness(const Metrics& metrics, std::int64_t now_ms);

class HttpServer {
 public:
  // Binds the address and starts serving. The bound address (with the port chosen for port 0)
  // is in address().
  static Result<std::unique_ptr<HttpServer>> Start(std::string_view address, Metrics& metrics);
  // Stops serving and joins the server's threads.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& address() const { return address_; }

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace sqs2pg::metrics
