// The generic transform: type rules, envelopes, masks and defaults, one column at a time. Every
// rejection is also checked to hold no plaintext of the value it refused.
#include "transform/mapping/mapped_transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/encoding.h"
#include "transform/aes_siv.h"
#include "transform/ip_address.h"
#include "transform/keyring.h"
#include "transform/masker.h"
#include "transform/test_keys.h"

namespace sqs2pg::transform::mapping {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::int64_t kSentMs = 1'700'000'000'123;  // 2023-11-14 22:13:20.123 UTC

Keyring TestRing() {
  std::vector<Key> keys;
  keys.push_back(*Keyring::KeyFromMaterial(testing::Material(1)));
  keys.push_back(*Keyring::KeyFromMaterial(testing::Material(0x30).substr(0, 32), MaskMode::kHmac));
  keys.push_back(*Keyring::KeyFromMaterial(testing::Material(0x50).substr(0, 32), MaskMode::kCryptoPan));
  return std::move(Keyring::FromKeys(std::move(keys))).value();
}

class MappedTransformTest : public ::testing::Test {
 protected:
  MappedTransformTest() : ring_(TestRing()), masker_(std::move(Masker::Create(ring_)).value()) {}

  // A mapping of one column "c" read from /v, with `keys` added to the column.
  std::unique_ptr<MappedTransform> One(std::string_view keys, std::string_view top = "") {
    std::string text =
        std::string(top) + "[[column]]\nname = \"c\"\nfrom = \"/v\"\n" + std::string(keys) + "\n";
    auto m = ParseMapping(text, "t.toml");
    EXPECT_TRUE(m.ok()) << m.status().message();
    if (!m.ok()) return nullptr;
    auto t = MappedTransform::Create(*m, masker_);
    EXPECT_TRUE(t.ok()) << t.status().message();
    return t.ok() ? std::move(t).value() : nullptr;
  }
  MappedOutcome Run(MappedTransform& t, std::string_view body) {
    MessageMetadata md;
    md.sent_timestamp_ms = kSentMs;
    md.message_id = "0b5f6e7c-1d2e-4f3a-9b8c-000000000001";
    md.receive_count = 2;
    return t.Apply(body, md);
  }
  // The value column c gets from {"v": <json>}, or "REJECT: reason".
  std::string Value(std::string_view keys, std::string_view json) {
    auto t = One(keys);
    if (!t) return "NO TRANSFORM";
    auto out = Run(*t, "{\"v\":" + std::string(json) + "}");
    if (auto* r = std::get_if<Rejection>(&out)) {
      // The value is never in the reason (values here are long enough not to occur by chance).
      if (json.size() > 6) {
        EXPECT_THAT(r->reason, Not(HasSubstr(std::string(json.substr(1, json.size() - 2)))));
      }
      return "REJECT: " + r->reason;
    }
    const auto& v = std::get<MappedRow>(out).values.at(0);
    return v ? *v : "NULL";
  }

  Keyring ring_;
  Masker masker_;
};

TEST_F(MappedTransformTest, TextRules) {
  EXPECT_EQ(Value("type = \"text\"", "\"h\\u00e9llo\""), "h\xC3\xA9llo");
  EXPECT_EQ(Value("type = \"text\"", "null"), "NULL");
  EXPECT_EQ(Value("type = \"text\"", "12"), "REJECT: column c must be a string or null, got a number");
  EXPECT_EQ(Value("type = \"text\"\nrequired = true", "null"), "REJECT: column c must be a string, got null");
  EXPECT_EQ(Value("type = \"text\"", "\"a\\u0000secretvalue\""),
            "REJECT: column c contains U+0000, which Postgres cannot store");
  EXPECT_EQ(Value("type = \"varchar(3)\"", "\"\xE2\x98\x83\xE2\x98\x83\xE2\x98\x83\""),
            "\xE2\x98\x83\xE2\x98\x83\xE2\x98\x83");
  EXPECT_EQ(Value("type = \"varchar(3)\"", "\"abcd\""),
            "REJECT: column c is 4 characters, longer than its column's 3");
  EXPECT_EQ(Value("type = \"text\"\nmax_length = 2", "\"abc\""),
            "REJECT: column c is 3 characters, longer than its max_length 2");
  EXPECT_EQ(Value("type = \"text\"\nnon_empty = true", "\"\""), "REJECT: column c is empty");
}

TEST_F(MappedTransformTest, AbsentNullAndDefault) {
  auto t = One("type = \"text\"\nrequired = true");
  auto out = Run(*t, "{}");
  EXPECT_EQ(std::get<Rejection>(out).reason, "missing column c");
  EXPECT_EQ(Value("type = \"text\"\ndefault = \"web\"", "null"), "NULL");  // null is not absent
  auto d = One("type = \"text\"\ndefault = \"web\"");
  EXPECT_EQ(std::get<MappedRow>(Run(*d, "{}")).values[0], "web");
  auto bad = ParseMapping("[[column]]\nname = \"c\"\nfrom = \"/v\"\ntype = \"uuid\"\ndefault = \"nope\"\n",
                          "t.toml");
  ASSERT_TRUE(bad.ok());
  auto compiled = MappedTransform::Create(*bad, masker_);
  ASSERT_FALSE(compiled.ok());
  EXPECT_THAT(compiled.status().message(), HasSubstr("t.toml:1: column c: default: column c is not a UUID"));
}

TEST_F(MappedTransformTest, IntegerRules) {
  EXPECT_EQ(Value("type = \"smallint\"", "32767"), "32767");
  EXPECT_EQ(Value("type = \"smallint\"", "32768"), "REJECT: column c is out of range for smallint");
  EXPECT_EQ(Value("type = \"integer\"", "-2147483649"), "REJECT: column c is out of range for integer");
  EXPECT_EQ(Value("type = \"bigint\"", "9223372036854775807"), "9223372036854775807");
  EXPECT_EQ(Value("type = \"bigint\"", "9223372036854775808"), "REJECT: column c is out of range for bigint");
  EXPECT_EQ(Value("type = \"bigint\"", "3.0"), "3");
  EXPECT_EQ(Value("type = \"bigint\"", "3.5"), "REJECT: column c must be a whole number");
  EXPECT_EQ(Value("type = \"bigint\"", "1e300"), "REJECT: column c is out of range for bigint");
  EXPECT_EQ(Value("type = \"bigint\"", "\"12\""), "REJECT: column c must be a number or null, got a string");
  EXPECT_EQ(Value("type = \"bigint\"\nfrom_string = true", "\"-12\""), "-12");
  EXPECT_EQ(Value("type = \"bigint\"\nfrom_string = true", "\" 12\""),
            "REJECT: column c is not a decimal integer string for bigint");
  EXPECT_EQ(Value("type = \"bigint\"", "true"), "REJECT: column c must be a number or null, got a boolean");
  EXPECT_EQ(Value("type = \"integer\"\nformat = \"version\"", "\"2.3.1\""), "2003001");
}

TEST_F(MappedTransformTest, NumericDoubleBoolean) {
  EXPECT_EQ(Value("type = \"numeric\"", "0.1"), "0.1");
  EXPECT_EQ(Value("type = \"numeric\"", "18446744073709551615"), "18446744073709551615");
  EXPECT_EQ(Value("type = \"numeric\"\nfrom_string = true", "\"12345678901234567890.123456789\""),
            "12345678901234567890.123456789");
  EXPECT_EQ(Value("type = \"numeric\"\nfrom_string = true", "\"NaN\""),
            "REJECT: column c is not a decimal number string");
  EXPECT_EQ(Value("type = \"double precision\"", "1.5e3"), "1500");
  EXPECT_EQ(Value("type = \"boolean\"", "true"), "true");
  EXPECT_EQ(Value("type = \"boolean\"", "1"), "REJECT: column c must be true or false or null, got a number");
  EXPECT_EQ(Value("type = \"boolean\"", "\"true\""),
            "REJECT: column c must be true or false or null, got a string");
  EXPECT_EQ(Value("type = \"boolean\"\nfrom_string = true", "\"false\""), "false");
}

TEST_F(MappedTransformTest, TimeRules) {
  EXPECT_EQ(Value("type = \"date\"", "\"2024-02-29\""), "2024-02-29");
  EXPECT_EQ(Value("type = \"date\"", "\"2023-02-29\""),
            "REJECT: column c is not an RFC 3339 date (YYYY-MM-DD)");
  EXPECT_EQ(Value("type = \"timestamptz\"", "\"2026-12-05T01:02:03.456+01:00\""),
            "2026-12-05T01:02:03.456+01:00");
  EXPECT_THAT(Value("type = \"timestamptz\"", "\"2026-12-05 01:02\""),
              HasSubstr("is not an RFC 3339 timestamp"));
  EXPECT_THAT(Value("type = \"timestamptz\"", "\"2026-12-05T25:00:00Z\""),
              HasSubstr("is not an RFC 3339 timestamp"));
  EXPECT_EQ(Value("type = \"timestamptz\"\nformat = \"epoch_ms\"", "1700000000123"),
            "2023-11-14 22:13:20.123+00");
  EXPECT_EQ(Value("type = \"timestamptz\"\nformat = \"epoch_s\"", "-1"), "1969-12-31 23:59:59.000+00");
  EXPECT_EQ(Value("type = \"date\"\nformat = \"epoch_s\"", "253402300800"),
            "REJECT: column c is after 9999-12-31");
  EXPECT_EQ(Value("type = \"date\"\nformat = \"epoch_ms\"", "-62135596800001"),
            "REJECT: column c is before 0001-01-01");
  EXPECT_EQ(Value("type = \"date\"\nformat = \"epoch_ms\"", "\"1\""),
            "REJECT: column c must be a number or null, got a string");
}

TEST_F(MappedTransformTest, UuidInetJsonb) {
  EXPECT_EQ(Value("type = \"uuid\"", "\"0B5F6E7C-1D2E-4F3A-9B8C-00000000000A\""),
            "0b5f6e7c-1d2e-4f3a-9b8c-00000000000a");
  EXPECT_EQ(Value("type = \"uuid\"", "\"0b5f6e7c1d2e4f3a9b8c00000000000a\""),
            "REJECT: column c is not a UUID (8-4-4-4-12 hex digits)");
  EXPECT_EQ(Value("type = \"inet\"", "\"2001:DB8:0::1\""), "2001:db8::1");
  EXPECT_EQ(Value("type = \"inet\"", "\"::ffff:198.51.100.17\""), "198.51.100.17");
  EXPECT_EQ(Value("type = \"inet\"", "\"10.0.0.0/8\""),
            "REJECT: column c is not a valid IPv4 or IPv6 address");
  EXPECT_EQ(Value("type = \"jsonb\"", "{ \"a\" : [1, 2.5, \"x\"] }"), R"({"a":[1,2.5,"x"]})");
  EXPECT_EQ(Value("type = \"jsonb\"", "{\"a\":\"x\\u0000secretvalue\"}"),
            "REJECT: column c contains U+0000, which Postgres cannot store");
}

TEST_F(MappedTransformTest, PointersReachNestedObjectsArraysAndEscapes) {
  auto m = ParseMapping(R"([[column]]
name = "a"
from = "/o/a~1b"
type = "text"
[[column]]
name = "b"
from = "/o/list/1"
type = "bigint"
[[column]]
name = "c"
from = "/o"
type = "jsonb"
[[column]]
name = "d"
from = ""
type = "jsonb"
)",
                        "t.toml");
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto t = MappedTransform::Create(*m, masker_);
  ASSERT_TRUE(t.ok());
  auto out = Run(**t, R"({"o":{"a/b":"x","list":[5,6]}})");
  ASSERT_TRUE(std::holds_alternative<MappedRow>(out));
  const auto& v = std::get<MappedRow>(out).values;
  EXPECT_EQ(v[0], "x");
  EXPECT_EQ(v[1], "6");
  EXPECT_EQ(v[2], R"({"a/b":"x","list":[5,6]})");
  EXPECT_EQ(v[3], R"({"o":{"a/b":"x","list":[5,6]}})");
  auto dup = Run(**t, R"({"o":{"a/b":"x","a/b":"y"}})");
  EXPECT_EQ(std::get<Rejection>(dup).reason, "column a appears more than once");
}

TEST_F(MappedTransformTest, UnknownFieldsRejectOrKeep) {
  auto reject = One("type = \"text\"", "unknown_fields = \"reject\"\n");
  EXPECT_EQ(std::get<Rejection>(Run(*reject, R"({"v":"a","other":1})")).reason, "unknown field other");
  EXPECT_EQ(std::get<Rejection>(Run(*reject, R"({"v":"a","ada@example.com":1})")).reason, "unknown field #2");
  auto keep = One("type = \"text\"", "unknown_fields = \"keep\"\nextra_column = \"rest\"\n");
  auto out = Run(*keep, R"({"x":[1],"v":"a","y":{"z":null}})");
  EXPECT_EQ(std::get<MappedRow>(out).values,
            (std::vector<std::optional<std::string>>{"a", R"({"x":[1],"y":{"z":null}})"}));
  EXPECT_EQ(std::get<MappedRow>(Run(*keep, R"({"v":"a"})")).values[1], "{}");
}

TEST_F(MappedTransformTest, Metadata) {
  auto m = ParseMapping(R"([[column]]
name = "id"
from = "$message_id"
type = "uuid"
[[column]]
name = "sent"
from = "$sent_timestamp"
type = "timestamptz"
[[column]]
name = "n"
from = "$receive_count"
type = "integer"
[[column]]
name = "g"
from = "$group_id"
type = "text"
[[column]]
name = "tenant"
from = "$attribute.tenant"
type = "text"
required = true
)",
                        "t.toml");
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto t = MappedTransform::Create(*m, masker_);
  ASSERT_TRUE(t.ok());
  MessageAttribute attributes[] = {{"tenant", "acme"}};
  MessageMetadata md;
  md.message_id = "0B5F6E7C-1D2E-4F3A-9B8C-000000000001";
  md.sent_timestamp_ms = kSentMs;
  md.receive_count = 3;
  md.attributes = attributes;
  auto out = (*t)->Apply("{}", md);
  ASSERT_TRUE(std::holds_alternative<MappedRow>(out));
  EXPECT_EQ(std::get<MappedRow>(out).values, (std::vector<std::optional<std::string>>{
                                                 "0b5f6e7c-1d2e-4f3a-9b8c-000000000001",
                                                 "2023-11-14 22:13:20.123+00", "3", std::nullopt, "acme"}));
  md.attributes = {};
  EXPECT_EQ(std::get<Rejection>((*t)->Apply("{}", md)).reason, "message has no tenant attribute");
}

TEST_F(MappedTransformTest, Envelopes) {
  const std::string sns =
      R"({"Type":"Notification","MessageId":"m","TopicArn":"arn:aws:sns:eu-west-1:1:t","Message":"{\"v\":\"inner\"}",)"
      R"("MessageAttributes":{"tenant":{"Type":"String","Value":"acme"}}})";
  const std::string bridge = R"({"version":"0","detail-type":"x","source":"s","detail":{"v":"inner"}})";
  auto automatic = One("type = \"text\"", "envelope = \"auto\"\n");
  EXPECT_EQ(std::get<MappedRow>(Run(*automatic, sns)).values[0], "inner");
  EXPECT_EQ(std::get<MappedRow>(Run(*automatic, bridge)).values[0], "inner");
  EXPECT_EQ(std::get<MappedRow>(Run(*automatic, R"({"v":"raw"})")).values[0], "raw");
  EXPECT_EQ(
      std::get<Rejection>(Run(*automatic, R"({"Type":"Notification","TopicArn":"a","Message":7})")).reason,
      "SNS envelope: Message must be a string, got a number");
  EXPECT_THAT(
      std::get<Rejection>(Run(*automatic, R"({"Type":"Notification","TopicArn":"a","Message":"{nope"})"))
          .reason,
      HasSubstr("SNS envelope: Message is not valid JSON"));
  EXPECT_EQ(std::get<Rejection>(Run(*automatic, R"({"detail-type":"x","source":"s","detail":"str"})")).reason,
            "EventBridge envelope: detail is a string, expected a JSON object");

  auto strict = One("type = \"text\"", "envelope = \"sns\"\n");
  EXPECT_EQ(std::get<Rejection>(Run(*strict, R"({"v":"raw"})")).reason,
            "SNS envelope: Type is not \"Notification\"");
  auto bridge_only = One("type = \"text\"", "envelope = \"eventbridge\"\n");
  EXPECT_EQ(std::get<Rejection>(Run(*bridge_only, R"({"v":"raw"})")).reason,
            "EventBridge envelope: missing detail");

  auto m = ParseMapping(
      "envelope = \"sns\"\n[[column]]\nname = \"t\"\nfrom = \"$attribute.tenant\"\ntype = \"text\"\n", "t");
  auto t = MappedTransform::Create(*m, masker_);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(std::get<MappedRow>(Run(**t, sns)).values[0], "acme");
  // The reject keeps the outer body's shape and the body only encrypted.
  auto r = std::get<Rejection>(Run(*strict, R"({"v":"secretvalue1"})"));
  EXPECT_TRUE(r.body_encrypted);
  EXPECT_EQ(r.body_shape, R"({"v":"string"})");
  EXPECT_THAT(r.safe_body, Not(HasSubstr("secretvalue1")));
}

TEST_F(MappedTransformTest, SivBindsTheColumnName) {
  auto t = One("type = \"text\"\nmask = \"siv\"\nkey_id_column = true");
  auto out = Run(*t, R"({"v":"ada@example.com"})");
  ASSERT_TRUE(std::holds_alternative<MappedRow>(out));
  const auto& values = std::get<MappedRow>(out).values;
  const std::string& masked = *values[0];
  const Key& key = ring_.active();
  EXPECT_EQ(values[1], key.id);
  ASSERT_TRUE(masked.starts_with(key.id + ".v2."));
  // The ciphertext is RFC 5297 AES-SIV (AesSiv, checked against the RFC's vectors in aes_siv_test)
  // over the value, with associated data (key id, column name).
  AesSiv siv = std::move(AesSiv::Create(key.material)).value();
  const std::string_view ad[] = {key.id, "c"};
  EXPECT_EQ(masked.substr(key.id.size() + 4), Base64UrlEncode(*siv.Encrypt("ada@example.com", ad)));
  EXPECT_EQ(*masker_.UnmaskColumn(masked, "c"), "ada@example.com");
  EXPECT_FALSE(masker_.UnmaskColumn(masked, "d").ok());
  // With mask_field "device_id" the value is exactly what the login transform stores.
  auto login = One("type = \"text\"\nmask = \"siv\"\nmask_field = \"device_id\"");
  EXPECT_EQ(std::get<MappedRow>(Run(*login, R"({"v":"593-47-5928"})")).values[0],
            *masker_.MaskValue(MaskField::kDeviceId, "593-47-5928"));
}

TEST_F(MappedTransformTest, HmacAndAddressMasks) {
  auto hmac = One("type = \"text\"\nmask = \"hmac\"");
  std::string a = *std::get<MappedRow>(Run(*hmac, R"({"v":"ada@example.com"})")).values[0];
  EXPECT_THAT(a, HasSubstr(".hmac."));
  EXPECT_EQ(a, *std::get<MappedRow>(Run(*hmac, R"({"v":"ada@example.com"})")).values[0]);
  auto pan = One("type = \"inet\"\nmask = \"cryptopan\"");
  std::string ip = *std::get<MappedRow>(Run(*pan, R"({"v":"198.51.100.7"})")).values[0];
  EXPECT_NE(ip, "198.51.100.7");
  EXPECT_TRUE(ParseIp(ip).has_value());
  auto no_key =
      ParseMapping("[[column]]\nname=\"c\"\nfrom=\"/v\"\ntype=\"inet\"\nmask=\"ipcrypt-pfx\"\n", "t.toml");
  auto compiled = MappedTransform::Create(*no_key, masker_);
  ASSERT_FALSE(compiled.ok());
  EXPECT_THAT(compiled.status().message(),
              HasSubstr("t.toml:1: column c: the keyring has no ipcrypt-pfx key"));
}

TEST_F(MappedTransformTest, MaskedValueMustFitItsColumn) {
  EXPECT_EQ(
      Value("type = \"varchar(60)\"\nmask = \"siv\"", "\"" + std::string(40, 'x') + "\""),
      "REJECT: column c is 40 bytes; its masked form would not fit in 60 characters (at most 20 bytes fit)");
}

TEST_F(MappedTransformTest, OrdersExampleLoadsAndTransforms) {
  auto m = LoadMappingFile(std::string(SQS2PG_SOURCE_DIR) + "/examples/orders.toml");
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto t = MappedTransform::Create(*m, masker_);
  ASSERT_TRUE(t.ok()) << t.status().message();
  auto out = Run(**t, R"({"id":"5f0c2f9e-8a8e-4d7b-9c1a-3e2d1c0b9a87","status":"paid",
      "customer":{"id":"c-17","email":"ada@example.com"},"client":{"ip":"198.51.100.7"},"total_cents":129900,
      "items":[{"sku":"A-1","qty":2}],"item_count":"1","placed_at":"2026-12-05T01:02:03.456Z"})");
  ASSERT_TRUE(std::holds_alternative<MappedRow>(out)) << std::get<Rejection>(out).reason;
  const auto& v = std::get<MappedRow>(out).values;
  ASSERT_EQ(v.size(), (*t)->columns().size());
  EXPECT_EQ((*t)->columns().back(), "client_ip_key_id");
  EXPECT_EQ(v[5], "129900");
  EXPECT_EQ(v[6], "EUR");
  EXPECT_EQ(v[7], "1");
  EXPECT_EQ(v[10], "false");
  EXPECT_EQ(v[11], "2023-11-14 22:13:20.123+00");
  EXPECT_EQ(*masker_.UnmaskColumn(*v[3], "customer_email"), "ada@example.com");
}

}  // namespace
}  // namespace sqs2pg::transform::mapping

namespace sqs2pg::transform::mapping {
namespace {

// Issue 17 item 9 for mappings: a column masked one-way (hmac) is not recoverable from a reject's
// sealed body. A top-level member is replaced by the hmac the row would hold; one inside an
// envelope or a nested object cannot be reached, so such a body is not kept at all.
TEST_F(MappedTransformTest, AnHmacColumnIsHashedInTheSealedRejectBodyOrTheBodyIsNotKept) {
  auto t =
      One("type = \"text\"\nmask = \"hmac\"\n[[column]]\nname = \"n\"\nfrom = \"/n\"\ntype = \"integer\"");
  ASSERT_NE(t, nullptr);
  auto row = Run(*t, R"({"v":"ada@example.com","n":1})");
  ASSERT_TRUE(std::holds_alternative<MappedRow>(row));
  const std::string hashed = *std::get<MappedRow>(row).values[0];
  auto out = Run(*t, R"({"v":"ada@example.com","n":"x","w":[1, 2]})");
  ASSERT_TRUE(std::holds_alternative<Rejection>(out));
  const Rejection& r = std::get<Rejection>(out);
  ASSERT_TRUE(r.body_encrypted) << r.reason;
  auto plain = masker_.Unmask(r.safe_body);
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  EXPECT_EQ(*plain, R"({"v":")" + hashed + R"(","n":"x","w":[1,2]})");

  auto nested = One("type = \"text\"\nmask = \"hmac\"", "envelope = \"sns\"\nunknown_fields = \"reject\"\n");
  ASSERT_NE(nested, nullptr);
  auto refused = Run(*nested, R"({"Type":"Notification","Message":"{\"v\":\"ada@example.com\",\"w\":1}"})");
  ASSERT_TRUE(std::holds_alternative<Rejection>(refused));
  EXPECT_FALSE(std::get<Rejection>(refused).body_encrypted);
  EXPECT_TRUE(std::get<Rejection>(refused).safe_body.empty());
  EXPECT_THAT(std::get<Rejection>(refused).reason,
              HasSubstr("the body was not kept: its c is masked one-way"));
}

}  // namespace
}  // namespace sqs2pg::transform::mapping
