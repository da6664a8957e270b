#include "common/digest.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/encoding.h"

namespace sqs2pg {
namespace {

struct HmacCase {
  std::string name, key, data, expected_hex;
};

// Reads "Key = <hex> ...", "Data = <hex> ...", "HMAC-SHA-256 = <hex> ..." blocks from the RFC 4231 file.
std::vector<HmacCase> LoadRfc4231() {
  std::ifstream in(std::string(SQS2PG_TEST_VECTORS_DIR) + "/hmac_sha256_rfc4231.txt");
  std::vector<HmacCase> cases;
  std::string line;
  auto value_of = [](const std::string& l) {
    std::istringstream s(l.substr(l.find('=') + 1));
    std::string hex;
    s >> hex;
    return hex;
  };
  while (std::getline(in, line)) {
    if (line.starts_with("[Test Case")) cases.push_back({line.substr(1, line.find(']') - 1), "", "", ""});
    if (cases.empty()) continue;
    if (line.starts_with("Key ")) cases.back().key = *HexDecode(value_of(line));
    if (line.starts_with("Data ")) cases.back().data = *HexDecode(value_of(line));
    if (line.starts_with("HMAC-SHA-256 ")) cases.back().expected_hex = value_of(line);
  }
  return cases;
}

TEST(DigestTest, HmacSha256MatchesEveryRfc4231Case) {
  auto cases = LoadRfc4231();
  ASSERT_EQ(cases.size(), 7u);
  for (const auto& c : cases) {
    // Test case 5 publishes only the first 128 bits.
    std::string got = HexEncode(HmacSha256(c.key, c.data)).substr(0, c.expected_hex.size());
    EXPECT_EQ(got, c.expected_hex) << c.name;
  }
}

// Contexts are reused per thread, and OpenSSL reads a null key as "the previous key": an empty key
// after another one must still be the empty key.
TEST(DigestTest, HmacSha256WithAnEmptyKeyAfterAnotherKey) {
  constexpr std::string_view kEmptyKeyEmptyData =
      "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad";
  EXPECT_EQ(HexEncode(HmacSha256("some key", "")), HexEncode(HmacSha256("some key", "")));
  EXPECT_EQ(HexEncode(HmacSha256(std::string_view(), "")), kEmptyKeyEmptyData);
  (void)HmacSha256("another key", "data");
  EXPECT_EQ(HexEncode(HmacSha256("", "")), kEmptyKeyEmptyData);
}

TEST(DigestTest, Sha256OfKnownStrings) {
  EXPECT_EQ(HexEncode(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexEncode(Sha256("Param1=value1")),
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
}

TEST(DigestTest, Md5OfKnownString) {  // RFC 1321 appendix A.5
  EXPECT_EQ(HexEncode(Md5("abc")), "900150983cd24fb0d6963f7d28e17f72");
}

}  // namespace
}  // namespace sqs2pg
