#include "metrics/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <charconv>
#include <thread>

namespace sqs2pg::metrics {
namespace {

// Prometheus's text format, version 0.0.4.
constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
// Scrapes and probes are few and quick: two threads, not cpp-httplib's one per core.
constexpr size_t kServerThreads = 2;

}  // namespace

Result<std::pair<std::string, int>> ParseHostPort(std::string_view address) {
  auto bad = [&] {
    return Status::InvalidInput(fmt::format(
        "--metrics-addr {}: expected HOST:PORT, e.g. 127.0.0.1:9800, [::1]:9800 or :9800", address));
  };
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return bad();
  std::string_view host = address.substr(0, colon), port_text = address.substr(colon + 1);
  if (host.starts_with('[')) {
    if (!host.ends_with(']')) return bad();
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad();  // an IPv6 address needs its brackets
  }
  int port = -1;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 0 || port > 65535)
    return bad();
  return std::pair<std::string, int>(host.empty() ? "0.0.0.0" : std::string(host), port);
}

Probe Liveness(const Health& health, std::int64_t now_ms) {
  std::int64_t turned = health.loop_turned_ms.load(std::memory_order_relaxed);
  // Before the loop starts sqs2pg may wait a long time for Postgres, on purpose: that is not a
  // hung process, and restarting it would not help.
  if (turned == 0) return {200, "ok: starting\n"};
  std::int64_t age = now_ms - turned;
  if (age > kLoopStaleMs)
    return {503, fmt::format("failing: the event loop has not turned for {} ms\n", age)};
  return {200, "ok\n"};
}

Probe Readiness(const Metrics& metrics, std::int64_t now_ms) {
  const Health& h = metrics.health;
  std::string failing;
  std::int64_t turned = h.loop_turned_ms.load(std::memory_order_relaxed);
  if (turned == 0) failing += "not running yet: starting up\n";
  if (turned != 0 && now_ms - turned > kLoopStaleMs) failing += "the event loop is stuck\n";
  if (h.stopping.load(std::memory_order_relaxed)) failing += "stopping: a stop was requested\n";
  if (!h.sqs_ok.load(std::memory_order_relaxed)) failing += "SQS: the latest call failed\n";
  if (h.needs_postgres.load(std::memory_order_relaxed) && metrics.postgres_connections_up.Value() < 1)
    failing += "Postgres: no loader connection is up\n";
  if (failing.empty()) return {200, "ok\n"};
  return {503, failing};
}

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(std::string_view address, Metrics& metrics) {
  ASSIGN_OR_RETURN(auto host_port, ParseHostPort(address));
  auto [host, port] = host_port;
  auto impl = std::make_unique<Impl>();
  httplib::Server& server = impl->server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kServerThreads); };
  // cpp-httplib's default adds SO_REUSEPORT, which lets a second sqs2pg bind the same port and
  // take half the scrapes. SO_REUSEADDR alone still allows a quick restart.
  server.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.registry.Render(), kMetricsContentType);
  });
  server.Get("/healthz", [&metrics](const httplib::Request&, httplib::Response& res) {
    Probe p = Liveness(metrics.health, Health::NowMs());
    res.status = p.status;
    res.set_content(p.body, "text/plain; charset=utf-8");
  });
  server.Get("/readyz", [&metrics](const httplib::Request&, httplib::Response& res) {
    Probe p = Readiness(metrics, Health::NowMs());
    res.status = p.status;
    res.set_content(p.body, "text/plain; charset=utf-8");
  });
  int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    return Status::InvalidInput(
        fmt::format("--metrics-addr {}: cannot listen there (address in use, or not this host's)", address));
  }
  impl->thread = std::thread([&server] { server.listen_after_bind(); });
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  auto out = std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
  out->address_ = fmt::format("{}:{}", shown, bound);
  return out;
}

}  // namespace sqs2pg::metrics
