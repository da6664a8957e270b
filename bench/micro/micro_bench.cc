// Micro benchmarks of the per-message CPU work: what sqs2pg itself spends on a message, apart
// from waiting for SQS and Postgres. Run with `make bench-micro` (a release build).

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <random>
#include <string>
#include <vector>

#include "common/digest.h"
#include "common/encoding.h"
#include "sink/postgres/copy_format.h"
#include "source/sqs/sqs_protocol.h"
#include "source/sqs/sqs_query_protocol.h"
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

}  // namespace
}  // namespace sqs2pg

BENCHMARK_MAIN();
