#include "transform/aes_siv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/encoding.h"

namespace sqs2pg::transform {
namespace {

using ::testing::HasSubstr;

struct SivCase {
  std::string name;
  std::string key, plaintext, output;  // raw bytes
  std::vector<std::string> ad;         // one entry per S2V component, in order
};

// Reads the "<case>.key / .ad[i] / .plaintext / .output = <hex> [note]" lines of the vector file.
std::vector<SivCase> LoadSivVectors() {
  std::ifstream in(std::string(SQS2PG_TEST_VECTORS_DIR) + "/aes_siv_rfc5297.txt");
  std::vector<SivCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    size_t dot = line.find('.');
    size_t eq = line.find('=');
    if (line.empty() || line[0] == '#' || dot == std::string::npos || eq == std::string::npos || eq < dot)
      continue;
    std::string name = line.substr(0, dot);
    std::istringstream rest(line.substr(dot + 1, eq - dot - 1) + " " + line.substr(eq + 1));
    std::string field, hex;
    rest >> field >> hex;
    std::optional<std::string> bytes = HexDecode(hex);
    if (!bytes) continue;  // e.g. "X256.cipher = aes-256-siv"
    if (cases.empty() || cases.back().name != name) cases.emplace_back().name = name;
    SivCase& c = cases.back();
    if (field == "key") c.key = *bytes;
    if (field == "plaintext") c.plaintext = *bytes;
    if (field == "output") c.output = *bytes;
    if (field.starts_with("ad[")) {
      size_t i = std::stoul(field.substr(3));
      if (c.ad.size() <= i) c.ad.resize(i + 1);
      c.ad[i] = *bytes;
    }
  }
  return cases;
}

std::vector<std::string_view> Views(const std::vector<std::string>& strings) {
  return std::vector<std::string_view>(strings.begin(), strings.end());
}

std::string Hex(std::string_view hex) { return *HexDecode(hex); }

AesSiv MustCreate(std::string_view key) {
  Result<AesSiv> siv = AesSiv::Create(key);
  EXPECT_TRUE(siv.ok()) << siv.status().message();
  return std::move(siv).value();
}

const std::string kA1Key = Hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
const std::string kA1Ad = Hex("101112131415161718191a1b1c1d1e1f2021222324252627");
const std::string kA1Plaintext = Hex("112233445566778899aabbccddee");

TEST(AesSivTest, MatchesEveryVectorInTheFile) {
  std::vector<SivCase> cases = LoadSivVectors();
  ASSERT_EQ(cases.size(), 3u);  // RFC 5297 A.1 and A.2, OpenSSL's AES-256-SIV
  for (const SivCase& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_FALSE(c.key.empty() || c.plaintext.empty() || c.output.empty() || c.ad.empty());
    AesSiv siv = MustCreate(c.key);
    std::vector<std::string_view> ad = Views(c.ad);
    Result<std::string> sealed = siv.Encrypt(c.plaintext, ad);
    ASSERT_TRUE(sealed.ok()) << sealed.status().message();
    EXPECT_EQ(HexEncode(*sealed), HexEncode(c.output));
    Result<std::string> opened = siv.Decrypt(c.output, ad);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    EXPECT_EQ(*opened, c.plaintext);
  }
}

TEST(AesSivTest, VectorFileHasSeveralComponentsWithTheNonceLast) {
  for (const SivCase& c : LoadSivVectors()) {
    if (c.name == "A2") {
      ASSERT_EQ(c.ad.size(), 3u);
      EXPECT_EQ(HexEncode(c.ad[2]), "09f911029d74e35bd84156c5635688c0");
      return;
    }
  }
  FAIL() << "A.2 missing from the vector file";
}

// From OpenSSL's evpciph_aes_siv.txt, quoted in the vector file's notes.
TEST(AesSivTest, NoAssociatedDataDiffersFromOneEmptyComponent) {
  AesSiv siv = MustCreate(kA1Key);
  Result<std::string> none = siv.Encrypt(kA1Plaintext, {});
  const std::string_view one_empty[] = {""};
  Result<std::string> empty = siv.Encrypt(kA1Plaintext, one_empty);
  ASSERT_TRUE(none.ok() && empty.ok());
  EXPECT_EQ(HexEncode(*none),
            "f1c5fdeac1f15a26779c1501f9fb7588"
            "27e946c669088ab06da58c5c831c");
  EXPECT_EQ(HexEncode(*empty),
            "d1022f5b3664e5a4dfaf90f85be6f28a"
            "b66cff6b8eca0b79f083b39a0901");
}

TEST(AesSivTest, Aes192SivVector) {
  AesSiv siv = MustCreate(kA1Key + Hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0"));
  const std::string_view ad[] = {kA1Ad};
  Result<std::string> sealed = siv.Encrypt(kA1Plaintext, ad);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(HexEncode(*sealed),
            "89e869b93256785154f0963962fe0740"
            "eff356e42dec1f4febded36642f2");
}

// Every call reuses the keyed state; a leftover from the previous message would change the output.
TEST(AesSivTest, ManyCallsOnOneInstanceMatchFreshInstances) {
  std::string key(64, '\0');
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<char>(i * 37 + 5);
  AesSiv reused = MustCreate(key);
  for (int i = 1; i <= 300; ++i) {
    std::string plaintext(static_cast<size_t>(i % 70 + 1), static_cast<char>('a' + i % 26));
    plaintext[0] = static_cast<char>(i);
    std::string id = "id" + std::to_string(i % 3);
    const std::string_view ad[] = {id};
    Result<std::string> got = reused.Encrypt(plaintext, ad);
    Result<std::string> want = MustCreate(key).Encrypt(plaintext, ad);
    ASSERT_TRUE(got.ok() && want.ok()) << i;
    ASSERT_EQ(HexEncode(*got), HexEncode(*want)) << "value " << i;
    // Interleaved decryption shares the working context.
    Result<std::string> opened = reused.Decrypt(*got, ad);
    ASSERT_TRUE(opened.ok()) << i;
    ASSERT_EQ(*opened, plaintext);
  }
}

TEST(AesSivTest, EncryptIntoReplacesTheBuffer) {
  AesSiv siv = MustCreate(kA1Key);
  const std::string_view ad[] = {kA1Ad};
  std::string out = "previous contents that must go";
  ASSERT_TRUE(siv.EncryptInto(kA1Plaintext, ad, out).ok());
  EXPECT_EQ(HexEncode(out),
            "85632d07c6e8f37f950acd320a2ecc93"
            "40c02b9690c4dc04daef7f6afe5c");
}

TEST(AesSivTest, DecryptRejectsEveryFlippedBitPosition) {
  AesSiv siv = MustCreate(kA1Key);
  const std::string_view ad[] = {kA1Ad};
  std::string sealed = *siv.Encrypt(kA1Plaintext, ad);
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string tampered = sealed;
    tampered[i] = static_cast<char>(tampered[i] ^ (1 << (i % 8)));
    Result<std::string> opened = siv.Decrypt(tampered, ad);
    ASSERT_FALSE(opened.ok()) << "byte " << i;
    EXPECT_EQ(opened.status().code(), Status::Code::kInvalidInput);
    EXPECT_THAT(opened.status().message(), HasSubstr("authentication failed"));
  }
  // A failure leaves nothing behind: the untouched value still opens.
  Result<std::string> opened = siv.Decrypt(sealed, ad);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, kA1Plaintext);
}

TEST(AesSivTest, DecryptRejectsOtherAssociatedDataOrKey) {
  AesSiv siv = MustCreate(kA1Key);
  const std::string_view ad[] = {kA1Ad};
  std::string sealed = *siv.Encrypt(kA1Plaintext, ad);

  const std::string_view other_ad[] = {"something else"};
  EXPECT_FALSE(siv.Decrypt(sealed, other_ad).ok());
  EXPECT_FALSE(siv.Decrypt(sealed, {}).ok());
  const std::string_view extra_ad[] = {kA1Ad, ""};
  EXPECT_FALSE(siv.Decrypt(sealed, extra_ad).ok());

  std::string other_key = kA1Key;
  other_key[0] ^= 1;
  EXPECT_FALSE(MustCreate(other_key).Decrypt(sealed, ad).ok());
}

TEST(AesSivTest, RefusesAnEmptyPlaintext) {
  AesSiv siv = MustCreate(kA1Key);
  Result<std::string> sealed = siv.Encrypt("", {});
  ASSERT_FALSE(sealed.ok());
  EXPECT_EQ(sealed.status().code(), Status::Code::kInvalidInput);
  EXPECT_THAT(sealed.status().message(), HasSubstr("empty plaintext"));
}

TEST(AesSivTest, DecryptRejectsInputWithoutCiphertext) {
  AesSiv siv = MustCreate(kA1Key);
  for (size_t size : {0, 1, 15, 16}) {
    Result<std::string> opened = siv.Decrypt(std::string(size, 'x'), {});
    ASSERT_FALSE(opened.ok());
    EXPECT_THAT(opened.status().message(), HasSubstr("too short"));
  }
}

TEST(AesSivTest, RejectsKeysOfTheWrongLength) {
  for (size_t size : {0, 16, 31, 33, 65}) {
    Result<AesSiv> siv = AesSiv::Create(std::string(size, 'k'));
    ASSERT_FALSE(siv.ok()) << size;
    EXPECT_THAT(siv.status().message(), HasSubstr("32, 48 or 64 bytes"));
  }
}

TEST(AesSivTest, MovedInstanceKeepsItsKey) {
  AesSiv first = MustCreate(kA1Key);
  AesSiv second = std::move(first);
  const std::string_view ad[] = {kA1Ad};
  EXPECT_EQ(HexEncode(*second.Encrypt(kA1Plaintext, ad)),
            "85632d07c6e8f37f950acd320a2ecc93"
            "40c02b9690c4dc04daef7f6afe5c");
}

}  // namespace
}  // namespace sqs2pg::transform
