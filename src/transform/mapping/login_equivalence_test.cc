// The contract stage 3 relies on for "byte-identical" login rows: the built-in login mapping and
// examples/logins.toml, run through the generic MappedTransform, give exactly what today's
// LoginTransform gives for the same keyring: the same column values (masked ones included), the
// same rejects with the same reasons, shapes and encrypted bodies. Over the sample data and a
// corpus of edge cases, under several key modes and live-table variants.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <zlib.h>

#include <memory>
#include <string>
#include <vector>

#include "transform/keyring.h"
#include "transform/login_transform.h"
#include "transform/mapping/builtin_login.h"
#include "transform/mapping/mapped_transform.h"
#include "transform/mapping/value_rules.h"
#include "transform/masker.h"
#include "transform/test_keys.h"

namespace sqs2pg::transform::mapping {
namespace {

constexpr std::int64_t kSentMs = 1'700'000'000'123;
constexpr std::int64_t kMillisPerDay = 86'400'000;

std::string ReadGzip(const std::string& path) {
  std::string out;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  char buf[1 << 14];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(f);
  return out;
}

// The sample's messages, each as `send` sends an array element: its JSON text.
std::vector<std::string> SampleBodies() {
  std::string path = std::string(SQS2PG_SOURCE_DIR) + "/data/sample_data.json.gz";
  std::string json = ReadGzip(path);
  if (json.empty()) json = ReadGzip(std::string(SQS2PG_SOURCE_DIR) + "/../shared/data/sample_data.json.gz");
  std::vector<std::string> bodies;
  simdjson::dom::parser parser;
  simdjson::dom::array array;
  if (parser.parse(json).get_array().get(array)) return bodies;
  for (simdjson::dom::element e : array) bodies.push_back(simdjson::to_string(e));
  return bodies;
}

// Bodies that exercise every rule and its order.
std::vector<std::string> EdgeCases() {
  const std::string good =
      R"("user_id":"u-1","device_type":"android","ip":"199.172.111.135","locale":"RU","device_id":"593-47-5928","app_version":"2.3.0")";
  std::vector<std::string> v = {
      "{" + good + "}",
      "",
      "   ",
      "{",
      "[1,2]",
      "\"text\"",
      "null",
      "42",
      "\xEF\xBB\xBF{" + good + "}",
      R"({})",
      R"({"user_id":"u"})",
      R"({"ip":"1.2.3.4","device_id":"d"})",
      R"({"user_id":"","ip":"1.2.3.4","device_id":"d"})",
      R"({"user_id":null,"ip":"1.2.3.4","device_id":"d"})",
      R"({"user_id":7,"ip":"1.2.3.4","device_id":"d"})",
      R"({"user_id":"u","ip":"","device_id":"d"})",
      R"({"user_id":"u","ip":"1.2.3","device_id":"d"})",
      R"({"user_id":"u","ip":"01.2.3.4","device_id":"d"})",
      R"({"user_id":"u","ip":"2001:DB8:0::1","device_id":"d"})",
      R"({"user_id":"u","ip":"::ffff:198.51.100.17","device_id":"d"})",
      R"({"user_id":"u","ip":"fe80::1%eth0","device_id":"d"})",
      R"({"user_id":"u","ip":"10.0.0.0/8","device_id":"d"})",
      R"({"user_id":"u","ip":" 1.2.3.4","device_id":"d"})",
      R"({"user_id":"u","ip":"198.51.100.16\u0000x","device_id":"d"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d\u0000"})",
      R"({"user_id":"u\u0000","ip":"1.2.3.4","device_id":"d"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":""})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":["x"]})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","device_type":5})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","device_type":null,"locale":null,"app_version":null})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","locale":"x\u0000"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","locale":{"a":1}})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":"1.2.3.4"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":"1.1000"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":"2147.483.647"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":"2147.483.648"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":"3"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":"v1"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":"1234567890123456"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":3})",
      R"({"user_id":"u","ip":"1.2.3.4","user_id":"v","device_id":"d"})",
      R"({"ip":"1.2.3.4","ip":"1.2.3.5","device_id":"d","user_id":"u"})",
      R"({"locale":"a","locale":"b"})",
      R"({"user_id":"u","IP":"1.2.3.4","deviceId":"d"})",
      R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","extra":{"ip":"9.9.9.9"},"user@example.com":1})",
      R"({"device_type":7})",
      R"({"user_id":"u","device_type":7,"ip":"x","device_id":"d"})",
      R"({"Type":"Notification","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"{\"user_id\":\"u\"}"})",
      R"({"detail-type":"login","source":"app","detail":{"user_id":"u","ip":"1.2.3.4","device_id":"d"}})",
  };
  // Lengths at and past each column's limit, in bytes and in characters.
  v.push_back(R"({"user_id":")" + std::string(128, 'a') + R"(","ip":"1.2.3.4","device_id":"d"})");
  v.push_back(R"({"user_id":")" + std::string(129, 'a') + R"(","ip":"1.2.3.4","device_id":"d"})");
  std::string snowmen;
  for (int i = 0; i < 128; ++i) snowmen += "\u2603";
  v.push_back(R"({"user_id":")" + snowmen + R"(","ip":"1.2.3.4","device_id":"d"})");
  v.push_back(R"({"user_id":")" + snowmen + "\u2603" + R"(","ip":"1.2.3.4","device_id":"d"})");
  v.push_back(R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","device_type":")" + std::string(33, 'x') +
              "\"}");
  v.push_back(R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","locale":")" + std::string(32, 'x') + "\"}");
  v.push_back(R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":")" + std::string(16, '1') +
              "\"}");
  for (size_t n : {100u, 167u, 168u, 300u}) {
    v.push_back(R"({"user_id":"u","ip":"1.2.3.4","device_id":")" + std::string(n, 'd') + "\"}");
  }
  return v;
}

using Values = std::vector<std::optional<std::string>>;

Values LoginValues(const LoginRow& row, Masker& masker) {
  std::string date;
  AppendDate(date, static_cast<std::int64_t>(row.create_date_days) * kMillisPerDay);
  return {row.user_id, row.device_type, row.masked_ip, row.masked_device_id,
          row.locale,  row.app_version, date,          masker.key_id(MaskField::kIp)};
}

struct Variant {
  const char* name;
  std::optional<MaskMode> ip_mode, device_id_mode;
  ColumnLimits limits;
};

ColumnLimits Small() {
  ColumnLimits l;
  l.user_id = 8;
  l.device_type = 4;
  l.locale = 4;
  l.app_version = 5;
  l.masked_value = 64;
  return l;
}
ColumnLimits IntegerVersion() {
  ColumnLimits l;
  l.app_version_is_integer = true;
  return l;
}

// A keyring with an siv key first and one key of every other mode, each field free to pick.
Keyring AllModes() {
  std::vector<Key> keys;
  keys.push_back(*Keyring::KeyFromMaterial(testing::Material(1)));
  for (MaskMode mode :
       {MaskMode::kHmac, MaskMode::kCryptoPan, MaskMode::kIpcryptPfx, MaskMode::kIpcryptDeterministic}) {
    keys.push_back(
        *Keyring::KeyFromMaterial(testing::Material(static_cast<unsigned char>(0x40 + static_cast<int>(mode)))
                                      .substr(0, KeyBytesFor(mode)),
                                  mode));
  }
  Keyring ring = std::move(Keyring::FromKeys(std::move(keys))).value();
  for (const Key& k : std::vector<Key>(ring.keys().begin(), ring.keys().end())) {
    if (AddressValued(k.mode)) {
      EXPECT_TRUE(ring.AssignField(MaskField::kIp, k.id, true).ok());
    }
    if (k.mode == MaskMode::kHmac) {
      EXPECT_TRUE(ring.AssignField(MaskField::kIp, k.id, true).ok());
      EXPECT_TRUE(ring.AssignField(MaskField::kDeviceId, k.id, true).ok());
    }
  }
  EXPECT_TRUE(ring.AssignField(MaskField::kIp, ring.active().id, true).ok());
  EXPECT_TRUE(ring.AssignField(MaskField::kDeviceId, ring.active().id, true).ok());
  return ring;
}

class LoginEquivalenceTest : public ::testing::TestWithParam<Variant> {};

void ExpectSame(const Mapping& mapping, const Variant& v, const std::vector<std::string>& bodies,
                std::int64_t sent_ms, size_t& rows, size_t& rejects) {
  Keyring ring = AllModes();
  MaskerOptions options{v.ip_mode, v.device_id_mode};
  Masker masker = std::move(Masker::Create(ring, options)).value();
  LoginTransform login(masker, v.limits);
  auto mapped = MappedTransform::Create(mapping, masker, LoginCompileOptions(v.limits));
  ASSERT_TRUE(mapped.ok()) << mapped.status().message();
  MessageMetadata metadata;
  metadata.sent_timestamp_ms = sent_ms;
  for (size_t i = 0; i < bodies.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << mapping.origin << " body #" << i << " sent " << sent_ms);
    TransformOutcome want = login.Apply(bodies[i], sent_ms);
    MappedOutcome got = (*mapped)->Apply(bodies[i], metadata);
    if (const auto* row = std::get_if<LoginRow>(&want)) {
      const auto* mapped_row = std::get_if<MappedRow>(&got);
      ASSERT_NE(mapped_row, nullptr) << "mapped rejected: " << std::get<Rejection>(got).reason;
      EXPECT_EQ(mapped_row->values, LoginValues(*row, masker));
      ++rows;
    } else {
      const auto& r = std::get<Rejection>(want);
      const auto* m = std::get_if<Rejection>(&got);
      ASSERT_NE(m, nullptr) << "mapped accepted what LoginTransform rejects for: " << r.reason;
      EXPECT_EQ(m->reason, r.reason);
      EXPECT_EQ(m->body_shape, r.body_shape);
      EXPECT_EQ(m->body_bytes, r.body_bytes);
      EXPECT_EQ(m->body_encrypted, r.body_encrypted);
      EXPECT_EQ(m->safe_body, r.safe_body);
      ++rejects;
    }
  }
}

TEST_P(LoginEquivalenceTest, BuiltInAndExampleFileMatchLoginTransform) {
  std::vector<std::string> bodies = SampleBodies();
  ASSERT_EQ(bodies.size(), 100u) << "sample data not found under " << SQS2PG_SOURCE_DIR;
  for (std::string& b : EdgeCases()) bodies.push_back(std::move(b));
  auto file = LoadMappingFile(std::string(SQS2PG_SOURCE_DIR) + "/examples/logins.toml");
  ASSERT_TRUE(file.ok()) << file.status().message();
  for (const Mapping* mapping : std::vector<const Mapping*>{nullptr, &*file}) {
    Mapping builtin = LoginMapping();
    const Mapping& m = mapping ? *mapping : builtin;
    EXPECT_EQ(m.TableColumns(),
              (std::vector<std::string>{"user_id", "device_type", "masked_ip", "masked_device_id", "locale",
                                        "app_version", "create_date", "masked_ip_key_id"}));
    size_t rows = 0, rejects = 0;
    for (std::int64_t sent : {kSentMs, std::int64_t{0}, std::int64_t{-5}, std::int64_t{1},
                              std::int64_t{253'402'300'799'999}, std::int64_t{253'402'300'800'000}}) {
      ExpectSame(m, GetParam(), bodies, sent, rows, rejects);
    }
    EXPECT_GT(rows, 10u);  // small columns refuse most of the sample
    EXPECT_GT(rejects, 100u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    KeyModesAndTables, LoginEquivalenceTest,
    ::testing::Values(Variant{"siv", std::nullopt, std::nullopt, {}},
                      Variant{"siv_small_columns", std::nullopt, std::nullopt, Small()},
                      Variant{"integer_app_version", std::nullopt, std::nullopt, IntegerVersion()},
                      Variant{"hmac", MaskMode::kHmac, MaskMode::kHmac, {}},
                      Variant{"hmac_small", MaskMode::kHmac, MaskMode::kHmac, Small()},
                      Variant{"cryptopan", MaskMode::kCryptoPan, std::nullopt, {}},
                      Variant{"ipcrypt_pfx", MaskMode::kIpcryptPfx, MaskMode::kHmac, Small()},
                      Variant{"ipcrypt_deterministic", MaskMode::kIpcryptDeterministic, std::nullopt, {}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sqs2pg::transform::mapping
