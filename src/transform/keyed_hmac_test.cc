// HMAC-SHA256 against RFC 4231's test cases 1-7, and the context's reuse across calls.

#include "transform/keyed_hmac.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/encoding.h"

namespace sqs2pg::transform {
namespace {

struct Case {
  std::string key, data, mac_hex;
};

// Blocks of "Key = <hex> ...", "Data = <hex> ...", "HMAC-SHA-256 = <hex> ..." lines.
std::vector<Case> Rfc4231Cases() {
  std::ifstream in(std::string(SQS2PG_TEST_VECTORS_DIR) + "/hmac_sha256_rfc4231.txt");
  EXPECT_TRUE(in);
  std::vector<Case> cases;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("[Test Case", 0) == 0) cases.emplace_back();
    auto value = [&](std::string_view name) -> std::optional<std::string> {
      if (line.rfind(name, 0) != 0) return std::nullopt;
      size_t start = line.find('=') + 1;
      start = line.find_first_not_of(' ', start);
      return line.substr(start, line.find(' ', start) - start);
    };
    if (cases.empty()) continue;
    if (auto v = value("Key ")) cases.back().key = *HexDecode(*v);
    if (auto v = value("Data ")) cases.back().data = *HexDecode(*v);
    if (auto v = value("HMAC-SHA-256 ")) cases.back().mac_hex = *v;
  }
  return cases;
}

TEST(KeyedHmacTest, ReproducesRfc4231) {
  auto cases = Rfc4231Cases();
  ASSERT_EQ(cases.size(), 7u);
  for (size_t i = 0; i < cases.size(); ++i) {
    auto hmac = KeyedHmac::Create(cases[i].key);
    ASSERT_TRUE(hmac.ok());
    // Twice on one context: the second call must not be affected by the first.
    for (int round = 0; round < 2; ++round) {
      std::string mac;
      ASSERT_TRUE(hmac->AppendMac({cases[i].data}, mac).ok());
      // Test case 5 publishes the first 128 bits only.
      EXPECT_EQ(HexEncode(mac).substr(0, cases[i].mac_hex.size()), cases[i].mac_hex) << "case " << i + 1;
    }
  }
}

TEST(KeyedHmacTest, PartsAreOneMessage) {
  auto hmac = KeyedHmac::Create("key");
  ASSERT_TRUE(hmac.ok());
  std::string whole, split;
  ASSERT_TRUE(hmac->AppendMac({"ip", std::string_view("\0", 1), "abc"}, split).ok());
  ASSERT_TRUE(hmac->AppendMac({std::string("ip\0abc", 6)}, whole).ok());
  EXPECT_EQ(whole, split);
}

}  // namespace
}  // namespace sqs2pg::transform
