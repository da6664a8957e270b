#include "common/encoding.h"

#include <gtest/gtest.h>

namespace sqs2pg {
namespace {

TEST(HexTest, RoundTrip) {
  std::string bytes("\x00\x01\xab\xff", 4);
  EXPECT_EQ(HexEncode(bytes), "0001abff");
  EXPECT_EQ(HexDecode("0001ABff"), bytes);
}

TEST(HexTest, RejectsBadInput) {
  EXPECT_FALSE(HexDecode("abc").has_value());
  EXPECT_FALSE(HexDecode("zz").has_value());
}

// RFC 4648 section 10 vectors, in the URL-safe alphabet without padding.
TEST(Base64UrlTest, Rfc4648Vectors) {
  EXPECT_EQ(Base64UrlEncode(""), "");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(Base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(Base64UrlEncode("foob"), "Zm9vYg");
  EXPECT_EQ(Base64UrlEncode("fooba"), "Zm9vYmE");
  EXPECT_EQ(Base64UrlEncode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
}

TEST(Base64UrlTest, AppendKeepsWhatIsThere) {
  std::string out = "k1.";
  AppendBase64Url(out, "foobar");
  EXPECT_EQ(out, "k1.Zm9vYmFy");
}

TEST(Base64UrlTest, DecodeInvertsEncode) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 37) {
    std::string part = all.substr(0, n);
    EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(part)), part);
  }
}

TEST(Base64UrlTest, RejectsNonCanonicalAndForeignCharacters) {
  EXPECT_FALSE(Base64UrlDecode("Zh").has_value());  // "Zg" with a stray low bit
  EXPECT_FALSE(Base64UrlDecode("Zm9v+").has_value());
  EXPECT_FALSE(Base64UrlDecode("Zm9vY").has_value());  // 5 chars cannot encode whole bytes
}

}  // namespace
}  // namespace sqs2pg

#include "common/json_writer.h"

namespace sqs2pg {
namespace {

TEST(JsonWriterTest, EscapesQuotesBackslashesAndControlCharacters) {
  std::string out;
  AppendJsonString(out, std::string("a\"b\\c\n\t\x01\x00z", 10));
  EXPECT_EQ(out, R"("a\"b\\c\n\t\u0001\u0000z")");
}

TEST(JsonWriterTest, KeepsUtf8AsIs) {
  std::string out;
  AppendJsonString(out, "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(out, "\"caf\xc3\xa9 \xe2\x82\xac\"");
}

}  // namespace
}  // namespace sqs2pg
