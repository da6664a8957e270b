// Micro benchmarks of the per-message CPU work: what sqs2pg itself spends on a message, apart
// from waiting for SQS and Postgres. Run with `make bench-micro` (a release build).

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <random>
#include <string>
#include <vector>

#include "common/digest.h"
#include "common/encoding.h"
#include "metrics/sqs2pg_metrics.h"
#include "sink/postgres/copy_format.h"
#include "source/sqs/sqs_protocol.h"
#include "source/sqs/sqs_query_protocol.h"
#include "transform/ip_address.h"
#include "transform/ip_ciphers.h"
#include "transform/keyring.h"
#include "transform/login_transform.h"
#include "transform/mapping/builtin_login.h"
#include "transform/mapping/mapped_transform.h"
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
    benchmark::DoNotOptimize(f.masker.MaskValueInto(transform::MaskField::kIp, ip, out));
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
    benchmark::DoNotOptimize(f.masker.MaskValueInto(transform::MaskField::kDeviceId, device_id, out));
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

// Issue 18: the same bodies through the built-in login mapping (the generic compiled plan). Target:
// within +10% of BM_WholeTransform.
void BM_MappedLoginTransform(benchmark::State& state) {
  Fixture& f = Shared();
  auto t = transform::mapping::MappedTransform::Create(transform::mapping::LoginMapping(), f.masker,
                                                       transform::mapping::LoginCompileOptions({}));
  if (!t.ok()) {
    state.SkipWithError(t.status().message().c_str());
    return;
  }
  transform::mapping::MessageMetadata md;
  md.sent_timestamp_ms = kSentMs;
  size_t i = 0;
  for (auto _ : state) {
    auto outcome = (*t)->Apply(f.bodies[i++ & 1023], md);
    benchmark::DoNotOptimize(outcome);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MappedLoginTransform);

// An orders-shaped message, 12 columns, 2 masked (siv e-mail, hmac customer id), nested objects,
// jsonb, timestamps. Target: <= 3 us.
void BM_MappedOrdersTransform(benchmark::State& state) {
  Fixture& f = Shared();
  auto m = transform::mapping::ParseMapping(R"toml(envelope = "auto"
[[column]]
name = "order_id"
from = "/id"
type = "uuid"
required = true
[[column]]
name = "status"
from = "/status"
type = "varchar(16)"
[[column]]
name = "customer_id"
from = "/customer/id"
type = "text"
mask = "hmac"
[[column]]
name = "customer_email"
from = "/customer/email"
type = "text"
max_length = 254
mask = "siv"
[[column]]
name = "client_ip"
from = "/client/ip"
type = "inet"
[[column]]
name = "total_cents"
from = "/total_cents"
type = "bigint"
[[column]]
name = "currency"
from = "/currency"
type = "varchar(3)"
default = "EUR"
[[column]]
name = "item_count"
from = "/item_count"
type = "integer"
[[column]]
name = "items"
from = "/items"
type = "jsonb"
[[column]]
name = "placed_at"
from = "/placed_at"
type = "timestamptz"
[[column]]
name = "gift"
from = "/gift"
type = "boolean"
[[column]]
name = "sent_at"
from = "$sent_timestamp"
type = "timestamptz"
)toml",
                                            "bench");
  auto hmac_ring = transform::Keyring::FromKeys(
      {f.keyring.active(), *transform::Keyring::GenerateKey(transform::MaskMode::kHmac)});
  transform::Masker masker = std::move(transform::Masker::Create(*hmac_ring)).value();
  auto t = transform::mapping::MappedTransform::Create(*m, masker);
  if (!t.ok()) {
    state.SkipWithError(t.status().message().c_str());
    return;
  }
  std::vector<std::string> bodies;
  for (int i = 0; i < 1024; ++i) {
    bodies.push_back(fmt::format(
        R"({{"id":"5f0c2f9e-8a8e-4d7b-9c1a-3e2d1c{:06x}","status":"paid","customer":{{"id":"c-{}",)"
        R"("email":"user{}@example.com"}},"client":{{"ip":"198.51.{}.{}"}},"total_cents":{},"currency":"EUR",)"
        R"("item_count":2,"items":[{{"sku":"A-1","qty":2}},{{"sku":"B-{}","qty":1}}],)"
        R"("placed_at":"2026-12-05T01:02:03.456Z","gift":false}})",
        i, i, i, i % 256, (i * 7) % 256, 1000 + i * 13, i));
  }
  transform::mapping::MessageMetadata md;
  md.sent_timestamp_ms = kSentMs;
  size_t i = 0;
  for (auto _ : state) {
    auto outcome = (*t)->Apply(bodies[i++ & 1023], md);
    benchmark::DoNotOptimize(outcome);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MappedOrdersTransform);

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

// Every mode, with the field's key chosen by MaskerOptions from one keyring that lists them all.
constexpr transform::MaskMode kModes[] = {
    transform::MaskMode::kSiv, transform::MaskMode::kIpcryptDeterministic, transform::MaskMode::kIpcryptPfx,
    transform::MaskMode::kCryptoPan, transform::MaskMode::kHmac};

struct ModeFixture {
  ModeFixture() : keyring(MakeKeyring()) {
    std::mt19937_64 rng(11);
    for (int i = 0; i < 1024; ++i) {
      transform::IpAddress ip;
      for (auto& b : ip.bytes) b = static_cast<std::uint8_t>(rng());
      ip.v4 = false;
      ip.bytes[0] = 0x20;  // global unicast, never IPv4-mapped
      v6.push_back(ip);
      v4.push_back(
          *transform::IpFromBinary(std::string_view(reinterpret_cast<const char*>(ip.bytes.data()) + 12, 4)));
    }
    bodies = SampleLikeBodies(1024);
    for (transform::MaskMode mode : kModes) {
      transform::MaskerOptions options;
      options.ip_mode = mode;
      if (mode == transform::MaskMode::kHmac) options.device_id_mode = mode;
      maskers.push_back(std::make_unique<transform::Masker>(
          std::move(transform::Masker::Create(keyring, options)).value()));
      transforms.push_back(
          std::make_unique<transform::LoginTransform>(*maskers.back(), transform::ColumnLimits{}));
    }
  }
  static transform::Keyring MakeKeyring() {
    std::vector<transform::Key> keys;
    for (transform::MaskMode mode : kModes)
      keys.push_back(std::move(transform::Keyring::GenerateKey(mode)).value());
    transform::Keyring ring = std::move(transform::Keyring::FromKeys(keys)).value();
    for (const transform::Key& key : keys) {
      if (key.mode != transform::MaskMode::kSiv) (void)ring.AssignField(transform::MaskField::kIp, key.id);
      if (key.mode == transform::MaskMode::kHmac)
        (void)ring.AssignField(transform::MaskField::kDeviceId, key.id);
    }
    (void)ring.AssignField(transform::MaskField::kIp, ring.active().id);
    return ring;
  }
  transform::Keyring keyring;
  std::vector<transform::IpAddress> v4, v6;
  std::vector<std::string> bodies;
  std::vector<std::unique_ptr<transform::Masker>> maskers;
  std::vector<std::unique_ptr<transform::LoginTransform>> transforms;
};

ModeFixture& Modes() {
  static ModeFixture f;
  return f;
}

// One address a call, from 1024 random ones; arg 0: IPv4, 1: IPv6.
void BM_MaskIpMode(benchmark::State& state) {
  ModeFixture& f = Modes();
  const size_t mode = static_cast<size_t>(state.range(0));
  const auto& addresses = state.range(1) == 0 ? f.v4 : f.v6;
  transform::Masker& masker = *f.maskers[mode];
  state.SetLabel(fmt::format("{} IPv{}", transform::ModeName(kModes[mode]), state.range(1) == 0 ? 4 : 6));
  std::string out;
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(masker.MaskIpInto(addresses[i++ & 1023], out));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaskIpMode)->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1}});

// Unmasking is rare (a key holder's lookup); prefix modes go bit by bit.
void BM_UnmaskIpMode(benchmark::State& state) {
  ModeFixture& f = Modes();
  const size_t mode = static_cast<size_t>(state.range(0));
  transform::Masker& masker = *f.maskers[mode];
  std::string masked;
  (void)masker.MaskIpInto(state.range(1) == 0 ? f.v4[0] : f.v6[0], masked);
  state.SetLabel(fmt::format("{} IPv{}", transform::ModeName(kModes[mode]), state.range(1) == 0 ? 4 : 6));
  for (auto _ : state) benchmark::DoNotOptimize(masker.Unmask(masked));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_UnmaskIpMode)->ArgsProduct({{0, 1, 2, 3}, {0, 1}});

// Loading a prefix-preserving key: its prefix tables (the first 16 bits' flips, 2^16 - 1 prefix
// evaluations each) are built once per key and Masker; arg 0: cryptopan, 1: ipcrypt-pfx.
void BM_LoadPrefixKey(benchmark::State& state) {
  const std::string key(32, '\x5a');
  std::string material = key;
  material[31] = '\x5b';  // ipcrypt-pfx's two halves must differ
  state.SetLabel(state.range(0) == 0 ? "cryptopan" : "ipcrypt-pfx");
  for (auto _ : state) {
    auto cipher =
        state.range(0) == 0 ? transform::MakeCryptoPan(material) : transform::MakeIpcryptPfx(material);
    benchmark::DoNotOptimize(cipher);
  }
}
BENCHMARK(BM_LoadPrefixKey)->DenseRange(0, 1)->Unit(benchmark::kMillisecond);

// The whole transform with ip (and, for hmac, device_id) in each mode.
void BM_WholeTransformMode(benchmark::State& state) {
  ModeFixture& f = Modes();
  const size_t mode = static_cast<size_t>(state.range(0));
  transform::LoginTransform& t = *f.transforms[mode];
  state.SetLabel(std::string(transform::ModeName(kModes[mode])));
  size_t i = 0;
  for (auto _ : state) {
    auto outcome = t.Apply(f.bodies[i++ & 1023], kSentMs);
    benchmark::DoNotOptimize(outcome);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WholeTransformMode)->DenseRange(0, 4);

// A ReceiveMessage answer of ten messages from the sample bodies, in each protocol: what a
// receive costs to read (MD5 check of every body included). Items are messages.
std::string ReceiveAnswer(bool xml) {
  Fixture& f = Shared();
  std::string out = xml ? "<ReceiveMessageResponse><ReceiveMessageResult>" : "{\"Messages\":[";
  for (int i = 0; i < 10; ++i) {
    const std::string& body = f.bodies[static_cast<size_t>(i)];
    std::string md5 = HexEncode(Md5(body));
    std::string id = fmt::format("0b5f6e7c-1d2e-4f3a-9b8c-00000000000{}", i);
    if (xml) {
      std::string escaped;
      for (char c : body) {
        if (c == '&')
          escaped += "&amp;";
        else if (c == '<')
          escaped += "&lt;";
        else if (c == '"')
          escaped += "&quot;";
        else
          escaped.push_back(c);
      }
      out += fmt::format(
          "<Message><MessageId>{}</MessageId><ReceiptHandle>{}-handle-AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a</"
          "ReceiptHandle><MD5OfBody>{}</MD5OfBody><Body>{}</Body><Attribute><Name>SentTimestamp</"
          "Name><Value>1700000000000</Value></Attribute><Attribute><Name>ApproximateReceiveCount</"
          "Name><Value>1</Value></Attribute></Message>",
          id, id, md5, escaped);
    } else {
      std::string escaped;
      for (char c : body) {
        if (c == '"' || c == '\\') escaped.push_back('\\');
        escaped.push_back(c);
      }
      out += fmt::format(
          "{}{{\"MessageId\":\"{}\",\"ReceiptHandle\":\"{}-handle-AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a\","
          "\"MD5OfBody\":\"{}\",\"Body\":\"{}\",\"Attributes\":{{\"SentTimestamp\":\"1700000000000\","
          "\"ApproximateReceiveCount\":\"1\"}}}}",
          i == 0 ? "" : ",", id, id, md5, escaped);
    }
  }
  out += xml ? "</ReceiveMessageResult></ReceiveMessageResponse>" : "]}";
  return out;
}

void BM_ReceiveAnswerJson(benchmark::State& state) {
  std::string answer = ReceiveAnswer(false);
  for (auto _ : state) {
    auto messages = sqs::ParseReceiveMessageResponse(answer);
    if (!messages.ok() || messages->size() != 10 || (*messages)[0].body_corrupt) state.SkipWithError("parse");
    benchmark::DoNotOptimize(messages);
  }
  state.SetItemsProcessed(state.iterations() * 10);
}
BENCHMARK(BM_ReceiveAnswerJson);

void BM_ReceiveAnswerQuery(benchmark::State& state) {
  std::string answer = ReceiveAnswer(true);
  for (auto _ : state) {
    auto messages = sqs::query::ParseReceiveMessageResponse(answer);
    if (!messages.ok() || messages->size() != 10 || (*messages)[0].body_corrupt) state.SkipWithError("parse");
    benchmark::DoNotOptimize(messages);
  }
  state.SetItemsProcessed(state.iterations() * 10);
}
BENCHMARK(BM_ReceiveAnswerQuery);

// Signing one SQS call (SigV4: SHA-256 of the body and of the canonical request, one HMAC with
// the day's cached key), as every ReceiveMessage and DeleteMessageBatch pays it. The body is a
// ten-entry DeleteMessageBatch's size.
void BM_SignRequest(benchmark::State& state) {
  auto endpoint = aws::ParseEndpoint("http://127.0.0.1:4566");
  aws::Credentials credentials{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
  std::string body(1000, 'x');
  auto now = std::chrono::system_clock::now();
  for (auto _ : state) {
    auto request =
        sqs::BuildSignedRequest(*endpoint, "DeleteMessageBatch", body, credentials, "us-east-1", now);
    if (!request.ok()) state.SkipWithError("sign");
    benchmark::DoNotOptimize(request);
  }
}
BENCHMARK(BM_SignRequest);

// The MD5 every received body is checked with.
void BM_Md5Body(benchmark::State& state) {
  Fixture& f = Shared();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(Md5(f.bodies[i++ % f.bodies.size()]));
  }
}
BENCHMARK(BM_Md5Body);

}  // namespace
}  // namespace sqs2pg

BENCHMARK_MAIN();
