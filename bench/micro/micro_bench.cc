// Micro benchmarks of the per-message CPU work: what sqs2pg itself spends on a message, apart
// from waiting for SQS and Postgres. Run with `make bench-micro` (a release build).

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <random>
#include <string>
#include <vector>

#include "metrics/sqs2pg_metrics.h"
#include "sink/postgres/copy_format.h"
#include "transform/keyring.h"
#include "transform/login_transform.h"
#include "transform/masker.h"

namespace sqs2pg {
namespace {

constexpr std::int64_t kSentMs = 1'700'000'000'123;

// Bodies shaped like the sample data, all different, so no cache or branch history flatters us.
std::vector<std::string> SampleLikeBodies(size_t n) {
  std::mt19937_64 rng(7);
  auto digits = [&](int count) {
    std::string s;
    for (int i = 0; i < count; ++i) s.push_back(static_cast<char>('0' + rng() % 10));
    return s;
  };
  std::vector<std::string> bodies;
  for (size_t i = 0; i < n; ++i) {
    bodies.push_back(fmt::format(
        R"({{"user_id": "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", "app_version": "{}.{}.{}", "device_type": "{}", )"
        R"("ip": "{}.{}.{}.{}", "locale": "{}", "device_id": "{}-{}-{}"}})",
        rng() & 0xffffffff, rng() & 0xffff, rng() & 0xfff, rng() & 0xfff, rng() & 0xffffffffffff, rng() % 10,
        rng() % 10, rng() % 10, rng() % 2 ? "android" : "ios", rng() % 256, rng() % 256, rng() % 256,
        rng() % 256, rng() % 2 ? "RU" : "PH", digits(3), digits(2), digits(4)));
  }
  return bodies;
}

struct Fixture {
  Fixture()
      : keyring(std::move(transform::Keyring::Generate()).value()),
        masker(std::move(transform::Masker::Create(keyring)).value()),
        transform(masker, {}),
        bodies(SampleLikeBodies(1024)) {}
  transform::Keyring keyring;
  transform::Masker masker;
  transform::LoginTransform transform;
  std::vector<std::string> bodies;
};

Fixture& Shared() {
  static Fixture f;
  return f;
}

void BM_ParseAndValidate(benchmark::State& state) {
  Fixture& f = Shared();
  size_t i = 0;
  for (auto _ : state) {
    Status st = f.transform.Check(f.bodies[i++ & 1023], kSentMs);
    benchmark::DoNotOptimize(st);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseAndValidate);

void BM_MaskIp(benchmark::State& state) {
  Fixture& f = Shared();
  std::string out;
  const std::string ip = "199.172.111.135";
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(f.masker.MaskInto(ip, out));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaskIp);

void BM_MaskDeviceId(benchmark::State& state) {
  Fixture& f = Shared();
  std::string out;
  const std::string device_id = "593-47-5928";
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(f.masker.MaskInto(device_id, out));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaskDeviceId);

void BM_CopyRowEncoding(benchmark::State& state) {
  Fixture& f = Shared();
  auto outcome = f.transform.Apply(f.bodies[0], kSentMs);
  const LoginRow& row = std::get<LoginRow>(outcome);
  const std::string message_id = "fd91ad8e-8735-4569-9fba-cb67c153b306";
  std::string out;
  for (auto _ : state) {
    out.clear();
    sink::AppendCopyRow(out, message_id, row);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CopyRowEncoding);

// Parse, validate, canonicalise the ip, mask ip and device_id, build the row.
void BM_WholeTransform(benchmark::State& state) {
  Fixture& f = Shared();
  size_t i = 0;
  for (auto _ : state) {
    auto outcome = f.transform.Apply(f.bodies[i++ & 1023], kSentMs);
    benchmark::DoNotOptimize(outcome);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WholeTransform);

// What the metrics cost per message, pessimistically: for every 10 messages (one ReceiveMessage
// answer) the pipeline's loop turns once (7 counter catch-ups, 3 gauges, the heartbeat clock
// read), the receive and its DeleteMessageBatch are counted (counter + histogram each), and for
// every 500 (one batch) the batch's histograms and commit counter are updated. Single-threaded:
// the loop thread does almost all of it, the loader threads only the per-batch part.
void BM_MetricsPerMessage(benchmark::State& state) {
  metrics::Registry registry;
  metrics::Metrics m(registry);
  std::uint64_t n = 0;
  for (auto _ : state) {
    ++n;
    if (n % 10 == 0) {
      for (metrics::Counter* c : {&m.received, &m.loaded, &m.duplicates, &m.deleted, &m.delete_failures,
                                  &m.left_for_redelivery, &m.visibility_extended})
        c->Inc(10);
      m.in_hand_messages.Set(static_cast<double>(n & 1023));
      m.in_hand_bytes.Set(static_cast<double>(n & 4095));
      m.caught_up.store(false, std::memory_order_relaxed);
      m.health.LoopTurned();
      m.CountSqsCall(metrics::SqsOp::kReceiveMessage, metrics::SqsOutcome::kSuccess, 0.004);
      m.CountSqsCall(metrics::SqsOp::kDeleteMessageBatch, metrics::SqsOutcome::kSuccess, 0.002);
    }
    if (n % 500 == 0) {
      m.batch_messages.Observe(500);
      m.postgres_load_seconds.Observe(0.012);
      m.postgres_commit_seconds.Observe(0.001);
      m.postgres_commits.Inc();
      m.newest_loaded_sent_ms.store(static_cast<std::int64_t>(n), std::memory_order_relaxed);
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MetricsPerMessage);

// One scrape of /metrics: every metric rendered (process metrics read from /proc).
void BM_MetricsRender(benchmark::State& state) {
  metrics::Registry registry;
  metrics::Metrics m(registry);
  metrics::AddProcessMetrics(registry);
  for (auto _ : state) {
    std::string text = registry.Render();
    benchmark::DoNotOptimize(text.data());
  }
}
BENCHMARK(BM_MetricsRender);

}  // namespace
}  // namespace sqs2pg

BENCHMARK_MAIN();
