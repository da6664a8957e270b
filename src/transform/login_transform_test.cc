#include "transform/login_transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "transform/app_version.h"
#include "transform/keyring.h"
#include "transform/masker.h"

namespace sqs2pg::transform {
namespace {

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

TEST_F(LoginTransformTest, CanonicalIp) {
  EXPECT_EQ(CanonicalIp("10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(CanonicalIp("::FFFF:10.0.0.1"), "::ffff:10.0.0.1");
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

TEST_F(LoginTransformTest, RejectedBodyKeepsNoPlaintextPii) {
  Rejection r = Reject(
      R"({"user_id":"u","ip":"10.9.8.7","device_id":"","locale":5,
          "nested":{"ip":"172.16.5.4","list":[{"device_id":"777-00-1234"}, {"device_id": 12345}]}})");
  EXPECT_FALSE(r.body_encrypted);
  EXPECT_THAT(r.safe_body, Not(HasSubstr("10.9.8.7")));
  EXPECT_THAT(r.safe_body, Not(HasSubstr("172.16.5.4")));
  EXPECT_THAT(r.safe_body, Not(HasSubstr("777-00-1234")));
  EXPECT_THAT(r.safe_body, Not(HasSubstr("12345")));
  EXPECT_THAT(r.safe_body, HasSubstr(R"("user_id":"u")"));
  EXPECT_THAT(r.safe_body, HasSubstr(R"("locale":5)"));
  EXPECT_THAT(r.safe_body, HasSubstr(R"("device_id":"")"));
  EXPECT_THAT(r.reason, Not(HasSubstr("10.9.8.7")));
}

TEST_F(LoginTransformTest, RejectedBodyMasksIpTheSameWayAsRows) {
  LoginRow row = Row(kGood);
  Rejection r = Reject(R"({"ip":"199.172.111.135","device_id":"593-47-5928"})");
  EXPECT_THAT(r.safe_body, HasSubstr(row.masked_device_id));
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
