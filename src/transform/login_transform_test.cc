#include "transform/login_transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/encoding.h"
#include "transform/app_version.h"
#include "transform/keyring.h"
#include "transform/masker.h"
#include "transform/test_keys.h"

namespace sqs2pg::transform {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::int64_t kSentMs = 1'700'000'000'123;  // 2023-11-14 22:13:20 UTC
constexpr std::int32_t kSentDay = 19'675;            // days from 1970-01-01 to 2023-11-14

constexpr char kGood[] =
    R"({"user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae", "app_version": "2.3.0", "device_type": "android",
        "ip": "199.172.111.135", "locale": "RU", "device_id": "593-47-5928"})";

class LoginTransformTest : public ::testing::Test {
 protected:
  LoginTransformTest()
      : keyring_(std::move(Keyring::Generate()).value()),
        masker_(std::move(Masker::Create(keyring_)).value()) {}

  TransformOutcome Apply(std::string_view body, ColumnLimits limits = {}) {
    LoginTransform transform(masker_, limits);
    return transform.Apply(body, kSentMs);
  }
  LoginRow Row(std::string_view body, ColumnLimits limits = {}) {
    auto outcome = Apply(body, limits);
    if (auto* r = std::get_if<Rejection>(&outcome)) ADD_FAILURE() << "rejected: " << r->reason;
    return std::holds_alternative<LoginRow>(outcome) ? std::get<LoginRow>(outcome) : LoginRow{};
  }
  Rejection Reject(std::string_view body, ColumnLimits limits = {}) {
    auto outcome = Apply(body, limits);
    if (std::holds_alternative<LoginRow>(outcome)) ADD_FAILURE() << "accepted: " << body;
    return std::holds_alternative<Rejection>(outcome) ? std::get<Rejection>(outcome) : Rejection{};
  }
  std::string Unmask(const std::string& masked) {
    auto plain = masker_.Unmask(masked);
    EXPECT_TRUE(plain.ok()) << plain.status().message();
    return plain.ok() ? plain.value() : "";
  }

  Keyring keyring_;
  Masker masker_;
};

TEST_F(LoginTransformTest, ValidMessageBecomesARowWithMaskedPii) {
  LoginRow row = Row(kGood);
  EXPECT_EQ(row.user_id, "424cdd21-063a-43a7-b91b-7ca1a833afae");
  EXPECT_EQ(row.device_type, "android");
  EXPECT_EQ(row.locale, "RU");
  EXPECT_EQ(row.app_version, "2.3.0");
  EXPECT_EQ(row.create_date_days, kSentDay);
  EXPECT_THAT(row.masked_ip, Not(HasSubstr("199.172")));
  EXPECT_THAT(row.masked_device_id, Not(HasSubstr("593-47")));
  EXPECT_LE(row.masked_ip.size(), 256u);
  EXPECT_EQ(Unmask(row.masked_ip), "199.172.111.135");
  EXPECT_EQ(Unmask(row.masked_device_id), "593-47-5928");
}

TEST_F(LoginTransformTest, EqualInputsGiveEqualMaskedValues) {
  LoginRow a = Row(kGood);
  LoginRow b = Row(R"({"user_id":"other","ip":"199.172.111.135","device_id":"593-47-5928"})");
  EXPECT_EQ(a.masked_ip, b.masked_ip);
  EXPECT_EQ(a.masked_device_id, b.masked_device_id);
  EXPECT_NE(a.masked_ip, a.masked_device_id);
}

TEST_F(LoginTransformTest, NullAndAbsentOptionalFieldsAreNull) {
  LoginRow row = Row(R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","locale":null,"device_type":null})");
  EXPECT_FALSE(row.device_type.has_value());
  EXPECT_FALSE(row.locale.has_value());
  EXPECT_FALSE(row.app_version.has_value());
}

TEST_F(LoginTransformTest, UnknownFieldsAreIgnored) {
  LoginRow row = Row(R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","extra":{"a":[1,2]},"n":5})");
  EXPECT_EQ(row.user_id, "u");
}

TEST_F(LoginTransformTest, Ipv6IsMaskedInCanonicalForm) {
  LoginRow a = Row(R"({"user_id":"u","ip":"2001:DB8:0:0::1","device_id":"d"})");
  LoginRow b = Row(R"({"user_id":"u","ip":"2001:db8::1","device_id":"d"})");
  EXPECT_EQ(a.masked_ip, b.masked_ip);
  EXPECT_EQ(Unmask(a.masked_ip), "2001:db8::1");
}

TEST_F(LoginTransformTest, Ipv4MappedIpv6MasksAsItsIpv4Form) {
  LoginRow a = Row(R"({"user_id":"u","ip":"::ffff:198.51.100.17","device_id":"d"})");
  LoginRow b = Row(R"({"user_id":"u","ip":"198.51.100.17","device_id":"d"})");
  EXPECT_EQ(a.masked_ip, b.masked_ip);
  EXPECT_EQ(Unmask(a.masked_ip), "198.51.100.17");
}

TEST_F(LoginTransformTest, NulAnywhereInIpOrDeviceIdIsRejected) {
  // inet_pton stops at the NUL, so "198.51.100.16\u0000x" used to load as 198.51.100.16.
  for (const char* body : {R"({"user_id":"u","ip":"198.51.100.16\u0000x","device_id":"d"})",
                           R"({"user_id":"u","ip":"198.51.100.16\u0000","device_id":"d"})",
                           R"({"user_id":"u","ip":"\u0000198.51.100.16","device_id":"d"})"}) {
    Rejection r = Reject(body);
    EXPECT_EQ(r.reason, "field ip contains U+0000, which Postgres cannot store") << body;
  }
  for (const char* body : {R"({"user_id":"u","ip":"1.2.3.4","device_id":"d\u0000x"})",
                           R"({"user_id":"u","ip":"1.2.3.4","device_id":"\u0000"})"}) {
    EXPECT_THAT(Reject(body).reason, HasSubstr("field device_id contains U+0000")) << body;
  }
}

TEST_F(LoginTransformTest, CanonicalIp) {
  EXPECT_EQ(CanonicalIp("10.0.0.1"), "10.0.0.1");
  // IPv4-mapped IPv6 is the IPv4 address; IPv4-compatible (deprecated) and NAT64 are not.
  EXPECT_EQ(CanonicalIp("::FFFF:10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(CanonicalIp("::ffff:a00:1"), "10.0.0.1");
  EXPECT_EQ(CanonicalIp("0:0:0:0:0:ffff:0a00:0001"), "10.0.0.1");
  EXPECT_EQ(CanonicalIp("::10.0.0.1"), "::10.0.0.1");
  EXPECT_EQ(CanonicalIp("64:ff9b::10.0.0.1"), "64:ff9b::a00:1");
  EXPECT_FALSE(CanonicalIp(std::string("10.0.0.1\0x", 11)));
  EXPECT_FALSE(CanonicalIp(std::string("10.0.0.1\0", 9)));
  EXPECT_FALSE(CanonicalIp(std::string("\0", 1)));
  EXPECT_FALSE(CanonicalIp("10.0.0.256"));
  EXPECT_FALSE(CanonicalIp("10.0.0"));
  EXPECT_FALSE(CanonicalIp(" 10.0.0.1"));
  EXPECT_FALSE(CanonicalIp("fe80::1%eth0"));
  EXPECT_FALSE(CanonicalIp(std::string(100, '1')));
}

struct RejectCase {
  const char* body;
  const char* reason;
};

TEST_F(LoginTransformTest, EachRuleRejectsWithAReasonNamingTheField) {
  const RejectCase cases[] = {
      {R"({"ip":"1.2.3.4","device_id":"d"})", "missing field user_id"},
      {R"({"user_id":"u","device_id":"d"})", "missing field ip"},
      {R"({"user_id":"u","ip":"1.2.3.4"})", "missing field device_id"},
      {R"({"user_id":"","ip":"1.2.3.4","device_id":"d"})", "field user_id is empty"},
      {R"({"user_id":"u","ip":"1.2.3.4","device_id":""})", "field device_id is empty"},
      {R"({"user_id":7,"ip":"1.2.3.4","device_id":"d"})", "field user_id must be a string, got a number"},
      {R"({"user_id":"u","ip":null,"device_id":"d"})", "field ip must be a string, got null"},
      {R"({"user_id":"u","ip":"1.2.3.4","device_id":["d"]})",
       "field device_id must be a string, got an array"},
      {R"({"user_id":"u","ip":"999.1.1.1","device_id":"d"})", "field ip is not a valid IPv4 or IPv6 address"},
      {R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","locale":5})",
       "field locale must be a string or null, got a number"},
      {R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","device_type":true})",
       "field device_type must be a string or null, got a boolean"},
      {R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":{}})",
       "field app_version must be a string or null, got an object"},
      {R"({"user_id":"u\u0000x","ip":"1.2.3.4","device_id":"d"})", "field user_id contains U+0000"},
      {R"({"user_id":"u","ip":"1.2.3.4","device_id":"d\u0000"})", "field device_id contains U+0000"},
      {R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","locale":"a\u0000"})",
       "field locale contains U+0000"},
      {R"({"user_id":"u","user_id":"v","ip":"1.2.3.4","device_id":"d"})",
       "field user_id appears more than once"},
      {R"([{"user_id":"u"}])", "body is an array, expected a JSON object"},
      {R"("just a string")", "body is a string, expected a JSON object"},
      {R"({"foo": "oops_wrong_msg_type", "bar": "123"})", "missing field user_id"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(Reject(c.body).reason, HasSubstr(c.reason)) << c.body;
  }
}

TEST_F(LoginTransformTest, CheckGivesTheSameVerdictAsApplyWithoutMasking) {
  LoginTransform transform(masker_, {});
  EXPECT_TRUE(transform.Check(kGood, kSentMs).ok());
  Status bad = transform.Check(R"({"user_id":"u","ip":"nope","device_id":"d"})", kSentMs);
  EXPECT_EQ(bad.message(), "field ip is not a valid IPv4 or IPv6 address");
  EXPECT_THAT(transform.Check("[1]", kSentMs).message(), HasSubstr("body is an array"));
  EXPECT_THAT(transform.Check("{", kSentMs).message(), HasSubstr("not valid JSON"));
}

TEST_F(LoginTransformTest, LengthsCountCharactersNotBytes) {
  std::string e_acute = "\xc3\xa9";  // one character, two bytes
  std::string at_limit, over_limit;
  for (int i = 0; i < 128; ++i) at_limit += e_acute;
  over_limit = at_limit + "x";
  auto body = [](const std::string& user) {
    return R"({"ip":"1.2.3.4","device_id":"d","user_id":")" + user + "\"}";
  };
  EXPECT_EQ(Row(body(at_limit)).user_id, at_limit);
  EXPECT_THAT(Reject(body(over_limit)).reason,
              HasSubstr("field user_id is 129 characters, longer than its column's 128"));
}

TEST_F(LoginTransformTest, OptionalFieldsAreCheckedAgainstTheirColumns) {
  std::string base = R"({"user_id":"u","ip":"1.2.3.4","device_id":"d",)";
  EXPECT_THAT(Reject(base + R"("device_type":")" + std::string(33, 'x') + "\"}").reason,
              HasSubstr("field device_type is 33 characters"));
  EXPECT_THAT(Reject(base + R"("locale":")" + std::string(33, 'x') + "\"}").reason,
              HasSubstr("field locale is 33 characters"));
  EXPECT_THAT(Reject(base + R"("app_version":")" + std::string(16, '1') + "\"}").reason,
              HasSubstr("field app_version is 16 characters"));
  EXPECT_EQ(Row(base + R"("app_version":")" + std::string(15, '1') + "\"}").app_version,
            std::string(15, '1'));
  ColumnLimits wide;
  wide.locale = 64;
  EXPECT_TRUE(Row(base + R"("locale":")" + std::string(40, 'x') + "\"}", wide).locale.has_value());
}

TEST_F(LoginTransformTest, DeviceIdTooLongToMaskIsRejectedNotTruncated) {
  size_t max = Masker::MaxPlaintextBytes(256);
  auto body = [](size_t n) {
    return R"({"user_id":"u","ip":"1.2.3.4","device_id":")" + std::string(n, 'd') + "\"}";
  };
  LoginRow row = Row(body(max));
  EXPECT_EQ(row.masked_device_id.size(), 256u);
  EXPECT_EQ(Unmask(row.masked_device_id), std::string(max, 'd'));
  EXPECT_THAT(Reject(body(max + 1)).reason, HasSubstr("masked form would not fit"));
}

TEST_F(LoginTransformTest, IntegerAppVersionColumn) {
  ColumnLimits limits;
  limits.app_version_is_integer = true;
  std::string base = R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","app_version":)";
  EXPECT_EQ(Row(base + R"("2.3.0"})", limits).app_version, "2003000");
  EXPECT_EQ(Row(base + R"("0.96"})", limits).app_version, "96000");
  EXPECT_FALSE(Row(base + "null}", limits).app_version.has_value());
  EXPECT_THAT(Reject(base + R"("2.3.0-beta"})", limits).reason, HasSubstr("does not fit the integer column"));
}

TEST_F(LoginTransformTest, MissingSentTimestampIsRejected) {
  LoginTransform transform(masker_, {});
  auto outcome = transform.Apply(kGood, 0);
  ASSERT_TRUE(std::holds_alternative<Rejection>(outcome));
  EXPECT_THAT(std::get<Rejection>(outcome).reason, HasSubstr("SentTimestamp"));
}

TEST_F(LoginTransformTest, SentTimestampPastYear9999IsRejected) {
  LoginTransform transform(masker_, {});
  // The last millisecond of 9999-12-31 is a date; the next one is not.
  EXPECT_EQ(std::get<LoginRow>(transform.Apply(kGood, 253'402'300'799'999)).create_date_days, 2'932'896);
  for (std::int64_t ms : {std::int64_t{253'402'300'800'000}, std::int64_t{3'531'105'282'835'179'520}}) {
    auto outcome = transform.Apply(kGood, ms);
    ASSERT_TRUE(std::holds_alternative<Rejection>(outcome));
    EXPECT_THAT(std::get<Rejection>(outcome).reason, HasSubstr("SentTimestamp is after 9999-12-31"));
  }
}

// The case from issue 8: PII under names no list would know. Only the encrypted body keeps it.
TEST_F(LoginTransformTest, AByteOrderMarkBeforeTheBodyIsIgnoredButNotInside) {
  LoginRow with_mark = Row("\xEF\xBB\xBF" + std::string(kGood));
  LoginRow without = Row(kGood);
  EXPECT_EQ(with_mark.masked_ip, without.masked_ip);  // the same row: the mark is not data
  EXPECT_EQ(with_mark.user_id, without.user_id);
  // Only a leading mark: elsewhere it is a character like any other, outside a string invalid.
  std::string inside = kGood;
  inside.insert(1, "\xEF\xBB\xBF");
  EXPECT_EQ(Reject(inside).reason.substr(0, 22), "body is not valid JSON");
}

TEST_F(LoginTransformTest, RejectedBodyIsEncryptedWholeWhateverItsMemberNames) {
  // '@' is in no masked value, so the check below cannot match the ciphertext by chance.
  std::string body = R"({"user_id":"user@1","IP":"203.0.113.77","deviceId":"SECRET-DEV-1"})";
  Rejection r = Reject(body);
  EXPECT_EQ(r.reason, "missing field ip");
  EXPECT_TRUE(r.body_encrypted);
  EXPECT_THAT(r.safe_body, Not(HasSubstr("203.0.113.77")));
  EXPECT_THAT(r.safe_body, Not(HasSubstr("SECRET-DEV-1")));
  EXPECT_THAT(r.safe_body, Not(HasSubstr("user@1")));
  EXPECT_EQ(r.body_bytes, body.size());
  EXPECT_EQ(r.body_shape, R"({"user_id":"string","IP":"string","deviceId":"string"})");
  EXPECT_EQ(Unmask(r.safe_body), body);
}

TEST_F(LoginTransformTest, RejectShapeNamesTypesAndHidesKeysThatAreNotIdentifiers) {
  Rejection r =
      Reject(R"({"user_id":"u","ip":null,"n":1.5,"b":true,"o":{"ip":"10.9.8.7"},"a":[1],"203.0.113.9":"x",)"
             R"("a@b.example":1,"has space":2,"_ok.name-1":null,"":3})");
  EXPECT_EQ(r.body_shape,
            R"({"user_id":"string","ip":"null","n":"number","b":"boolean","o":"object","a":"array",)"
            R"("#7":"string","#8":"number","#9":"number","_ok.name-1":"null","#11":"number"})");
  EXPECT_THAT(r.body_shape, Not(HasSubstr("10.9.8.7")));
  EXPECT_THAT(r.body_shape, Not(HasSubstr("203.0.113")));
  EXPECT_THAT(r.reason, Not(HasSubstr("10.9.8.7")));
}

TEST_F(LoginTransformTest, RejectShapeKeepsDuplicateKeysAndCapsLongObjects) {
  EXPECT_EQ(Reject(R"({"ip":"1.2.3.4","ip":"5.6.7.8"})").body_shape, R"({"ip":"string","ip":"string"})");
  std::string wide = "{";
  for (int i = 0; i < 100; ++i) wide += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":0";
  wide += "}";
  Rejection r = Reject(wide);
  EXPECT_THAT(r.body_shape, HasSubstr(R"("k63":"number")"));
  EXPECT_THAT(r.body_shape, Not(HasSubstr(R"("k64")")));
  EXPECT_THAT(r.body_shape, HasSubstr(R"("...":"36 more keys")"));
}

TEST_F(LoginTransformTest, NonObjectBodiesHaveTheirTypeAsShape) {
  EXPECT_EQ(Reject(R"([{"ip":"1.2.3.4"}])").body_shape, "array");
  EXPECT_EQ(Reject(R"("203.0.113.5")").body_shape, "string");
  EXPECT_EQ(Reject("42").body_shape, "number");
  EXPECT_EQ(Reject("true").body_shape, "boolean");
  EXPECT_EQ(Reject("null").body_shape, "null");
  EXPECT_EQ(Reject("{oops").body_shape, "invalid JSON");
  for (const char* body : {R"([{"ip":"1.2.3.4"}])", R"("203.0.113.5")", "{oops"}) {
    Rejection r = Reject(body);
    EXPECT_TRUE(r.body_encrypted) << body;
    EXPECT_EQ(Unmask(r.safe_body), body);
  }
}

TEST_F(LoginTransformTest, DeepNestingAndHugeNumbersAreRejectedNotCrashed) {
  std::string deep = std::string(10'000, '[') + std::string(10'000, ']');
  Rejection r = Reject(deep);
  EXPECT_THAT(r.reason, HasSubstr("not valid JSON"));
  EXPECT_EQ(r.body_bytes, 20'000u);
  std::string deep_object;
  for (int i = 0; i < 10'000; ++i) deep_object += R"({"a":)";
  deep_object += "1" + std::string(10'000, '}');
  EXPECT_THAT(Reject(deep_object).reason, HasSubstr("not valid JSON"));
  // Numbers no double or 64-bit integer holds, in a member sqs2pg would otherwise ignore.
  for (const char* body :
       {R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","n":1e999999})",
        R"({"user_id":"u","ip":"1.2.3.4","device_id":"d","n":123456789012345678901234567890})"}) {
    EXPECT_THAT(Reject(body).reason, HasSubstr("not valid JSON")) << body;
  }
}

TEST_F(LoginTransformTest, UnparseableBodyIsStoredEncryptedAndRecoverable) {
  std::string body = R"({"user_id":"u","ip":"10.1.1.1", oops)";
  Rejection r = Reject(body);
  EXPECT_THAT(r.reason, HasSubstr("body is not valid JSON"));
  EXPECT_TRUE(r.body_encrypted);
  EXPECT_THAT(r.safe_body, Not(HasSubstr("10.1.1.1")));
  EXPECT_EQ(Unmask(r.safe_body), body);
}

TEST_F(LoginTransformTest, InvalidUtf8IsRejectedAsUnparseable) {
  Rejection r = Reject("{\"user_id\":\"\xff\",\"ip\":\"1.2.3.4\",\"device_id\":\"d\"}");
  EXPECT_THAT(r.reason, HasSubstr("not valid JSON"));
  EXPECT_TRUE(r.body_encrypted);
}

TEST_F(LoginTransformTest, EmptyBodyIsRejectedWithNothingToKeep) {
  Rejection r = Reject("");
  EXPECT_THAT(r.reason, HasSubstr("not valid JSON"));
  EXPECT_EQ(r.safe_body, "");
  EXPECT_FALSE(r.body_encrypted);
  EXPECT_EQ(r.body_shape, "empty");
  EXPECT_EQ(r.body_bytes, 0u);
}

// Issue 17 item 15: key names that are identifier values (a map keyed by user, device or
// address) are not kept in the clear shape; ordinary names still are.
TEST_F(LoginTransformTest, RejectShapeHidesKeyNamesThatAreIdentifierValues) {
  Rejection r = Reject(
      R"({"a1b2c3d4-e5f6-4789-abcd-ef0123456789":1,"deadbeef00112233":2,"_4155550123":3,"dev_9f8e7d6c":4,)"
      R"("user@example.com":5,"198.51.100.7":6,"fe80::1":7,"from_10.1.2.3":8,"user_id":"u","app_version2":"x",)"
      R"("sha256":9,"v1.2.3":10})");
  EXPECT_EQ(r.body_shape,
            R"({"#1":"number","#2":"number","#3":"number","#4":"number","#5":"number","#6":"number",)"
            R"("#7":"number","#8":"number","user_id":"string","app_version2":"string","sha256":"number",)"
            R"("v1.2.3":"number"})");
}

// Issue 17 item 9: with hmac for a field, a reject's sealed body holds that field's hmac (the one
// the row would hold), never its value, so unmasking the body with the key does not recover what
// the rows keep one-way.
TEST(LoginTransformOneWayTest, AnHmacFieldIsHashedInTheSealedRejectBody) {
  std::string text = "sqs2pg-key-v1 " + Keyring::KeyIdFor(testing::Material(0)) + " " +
                     HexEncode(testing::Material(0)) + "\n";
  const std::string hmac = testing::Material(100).substr(0, 32);  // hmac keys are 32 bytes
  const std::string hmac_id = Keyring::KeyIdFor(hmac, MaskMode::kHmac);
  text += "sqs2pg-key-v2 " + hmac_id + " hmac " + HexEncode(hmac) + "\nsqs2pg-field ip " + hmac_id +
          "\nsqs2pg-field device_id " + hmac_id + "\n";
  auto ring = Keyring::Parse(text);
  ASSERT_TRUE(ring.ok()) << ring.status().message();
  auto made = Masker::Create(*ring, {.ip_mode = MaskMode::kHmac, .device_id_mode = MaskMode::kHmac});
  ASSERT_TRUE(made.ok()) << made.status().message();
  Masker masker = std::move(made).value();
  LoginTransform transform(masker, {});

  // What the rows hold for these values: the body must hold the same, so it still joins.
  auto row = transform.Apply(R"({"user_id":"u1","ip":"203.0.113.77","device_id":"SECRET-DEV-1"})", kSentMs);
  ASSERT_TRUE(std::holds_alternative<LoginRow>(row));
  const LoginRow& stored = std::get<LoginRow>(row);

  // Rejected for its app_version; ip and device_id are valid.
  const std::string body =
      R"({"user_id":"u1","ip":"203.0.113.77","device_id":"SECRET-DEV-1","app_version":17,"ip2":"keep"})";
  auto outcome = transform.Apply(body, kSentMs);
  ASSERT_TRUE(std::holds_alternative<Rejection>(outcome));
  const Rejection& r = std::get<Rejection>(outcome);
  ASSERT_TRUE(r.body_encrypted) << r.reason;
  EXPECT_EQ(r.body_bytes, body.size());
  auto plain = masker.Unmask(r.safe_body);
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  EXPECT_THAT(*plain, AllOf(Not(HasSubstr("203.0.113.77")), Not(HasSubstr("SECRET-DEV-1"))));
  EXPECT_EQ(*plain, R"({"user_id":"u1","ip":")" + stored.masked_ip + R"(","device_id":")" +
                        stored.masked_device_id + R"(","app_version":17,"ip2":"keep"})");

  // An ip that is no address, or a value that is not a string, is hashed as text.
  auto odd = transform.Apply(R"({"ip":"203.0.113.77 ","device_id":{"id":"SECRET-DEV-1"}})", kSentMs);
  ASSERT_TRUE(std::holds_alternative<Rejection>(odd));
  auto odd_plain = masker.Unmask(std::get<Rejection>(odd).safe_body);
  ASSERT_TRUE(odd_plain.ok()) << odd_plain.status().message();
  EXPECT_THAT(*odd_plain, AllOf(Not(HasSubstr("203.0.113")), Not(HasSubstr("SECRET-DEV-1"))));

  // Not an object: where the ip is cannot be told, so the body is not kept.
  auto broken = transform.Apply(R"({"ip":"203.0.113.77",)", kSentMs);
  ASSERT_TRUE(std::holds_alternative<Rejection>(broken));
  EXPECT_FALSE(std::get<Rejection>(broken).body_encrypted);
  EXPECT_TRUE(std::get<Rejection>(broken).safe_body.empty());
  EXPECT_THAT(std::get<Rejection>(broken).reason,
              HasSubstr("the body was not kept: its ip is masked one-way"));
}

TEST(AppVersionTest, OrderPreservingInteger) {
  EXPECT_EQ(AppVersionToInteger("2.3.0"), 2'003'000);
  EXPECT_EQ(AppVersionToInteger("3"), 3'000'000);
  EXPECT_EQ(AppVersionToInteger("0.96"), 96'000);
  EXPECT_EQ(AppVersionToInteger("2147.483.647"), 2'147'483'647);
  EXPECT_LT(*AppVersionToInteger("1.9.9"), *AppVersionToInteger("1.10.0"));
}

TEST(AppVersionTest, RejectsWhatDoesNotFit) {
  EXPECT_FALSE(AppVersionToInteger("2147.483.648"));
  EXPECT_FALSE(AppVersionToInteger("1.1000"));
  EXPECT_FALSE(AppVersionToInteger("1.2.3.4"));
  EXPECT_FALSE(AppVersionToInteger("1..2"));
  EXPECT_FALSE(AppVersionToInteger(""));
  EXPECT_FALSE(AppVersionToInteger("v1.2"));
  EXPECT_FALSE(AppVersionToInteger("-1"));
  EXPECT_FALSE(AppVersionToInteger("99999999999"));
}

}  // namespace
}  // namespace sqs2pg::transform
