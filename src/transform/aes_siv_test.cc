#include "transform/aes_siv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
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

// OpenSSL's own AES-SIV as the reference, with a fresh context per value so nothing carries over.
std::string OpenSslSivEncrypt(std::string_view key, std::string_view plaintext,
                              std::span<const std::string_view> associated_data) {
  const char* name = key.size() == 32 ? "AES-128-SIV" : key.size() == 48 ? "AES-192-SIV" : "AES-256-SIV";
  std::unique_ptr<EVP_CIPHER, decltype(&EVP_CIPHER_free)> cipher(EVP_CIPHER_fetch(nullptr, name, nullptr),
                                                                 EVP_CIPHER_free);
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  auto bytes = [](std::string_view s) {
    static const unsigned char kNoBytes = 0;  // an empty component must still be passed, as one component
    return s.empty() ? &kNoBytes : reinterpret_cast<const unsigned char*>(s.data());
  };
  std::string out(AesSiv::kTagBytes + plaintext.size(), '\0');
  auto* tag = reinterpret_cast<unsigned char*>(out.data());
  int len = 0;
  int final_len = 0;
  bool ok = cipher && ctx && EVP_EncryptInit_ex2(ctx.get(), cipher.get(), bytes(key), nullptr, nullptr) == 1;
  for (std::string_view component : associated_data) {
    ok = ok && EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes(component),
                                 static_cast<int>(component.size())) == 1;
  }
  ok = ok &&
       EVP_EncryptUpdate(ctx.get(), tag + AesSiv::kTagBytes, &len, bytes(plaintext),
                         static_cast<int>(plaintext.size())) == 1 &&
       EVP_EncryptFinal_ex(ctx.get(), tag + AesSiv::kTagBytes + len, &final_len) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, AesSiv::kTagBytes, tag) == 1;
  EXPECT_TRUE(ok) << "OpenSSL " << name;
  return ok ? out : std::string();
}

// Fixed, once-random keys for the three SIV key sizes.
const std::string kRandomKeys[] = {
    Hex("2b2886258341a935e6ea5fb0a56e678963a565d8a855906250f439e5a5b23a34"),
    Hex("a6b451f691c58cbaab4eaf6ca1dadbdbba811045da472aacae02d611fcdd188ee76a6f422b52bec712f063e336038dfe"),
    Hex("f41ee387b70eb711126dc91f59d4da765265e3808d2ef75d309592263287397e"
        "3257331b5aff83a5ac235ad34f90fa59de60988891008a65082fc498058bd525"),
};

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(gen() & 0xff);
  return bytes;
}

// The S2V and CTR here are assembled by hand, so compare with OpenSSL's AES-SIV over every plaintext length
// around the block boundaries (pad vs xorend, partial last CTR block), several keystream chunks, a counter
// carry, and AD shapes whose components are empty, short, exactly one block, and several blocks.
TEST(AesSivTest, MatchesOpenSslAesSivForEveryLengthAndAssociatedDataShape) {
  const std::string block = RandomBytes(16, 1);
  const std::string long_ad = RandomBytes(100, 2);
  const std::string two_blocks_and_one = RandomBytes(33, 3);
  const std::vector<std::vector<std::string_view>> shapes = {
      {}, {"0a1b2c3d"}, {""}, {"header", block, two_blocks_and_one}, {"a", "", long_ad}, {block, block},
  };
  std::vector<size_t> lengths;
  for (size_t n = 1; n <= 100; ++n) lengths.push_back(n);
  // 8 keystream blocks go per EVP call; 4097+ bytes pass 256 blocks, so the counter's last byte carries.
  for (size_t n : {127, 128, 129, 255, 256, 1000, 4097, 5000}) lengths.push_back(n);
  const std::string all_plaintext = RandomBytes(5000, 4);

  for (const std::string& key : kRandomKeys) {
    AesSiv siv = MustCreate(key);
    for (size_t s = 0; s < shapes.size(); ++s) {
      for (size_t n : lengths) {
        SCOPED_TRACE("key bytes " + std::to_string(key.size()) + ", AD shape " + std::to_string(s) +
                     ", plaintext bytes " + std::to_string(n));
        std::string_view plaintext = std::string_view(all_plaintext).substr(5000 - n);
        Result<std::string> sealed = siv.Encrypt(plaintext, shapes[s]);
        ASSERT_TRUE(sealed.ok()) << sealed.status().message();
        ASSERT_EQ(HexEncode(*sealed), HexEncode(OpenSslSivEncrypt(key, plaintext, shapes[s])));
        Result<std::string> opened = siv.Decrypt(*sealed, shapes[s]);
        ASSERT_TRUE(opened.ok()) << opened.status().message();
        ASSERT_EQ(*opened, plaintext);
      }
    }
  }
}

// Multi-block value, several AD components, the 512-bit key the masker uses.
TEST(AesSivTest, DecryptRejectsEveryFlippedBitOfALongerValue) {
  AesSiv siv = MustCreate(kRandomKeys[2]);
  const std::string_view ad[] = {"0a1b2c3d", "", "third"};
  const std::string plaintext = "2001:0db8:85a3:0000:0000:8a2e:0370:7334";
  std::string sealed = *siv.Encrypt(plaintext, ad);
  ASSERT_EQ(sealed.size(), AesSiv::kTagBytes + plaintext.size());
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string tampered = sealed;
      tampered[i] = static_cast<char>(tampered[i] ^ (1 << bit));
      Result<std::string> opened = siv.Decrypt(tampered, ad);
      ASSERT_FALSE(opened.ok()) << "byte " << i << " bit " << bit;
      ASSERT_EQ(opened.status().code(), Status::Code::kInvalidInput);
    }
  }
  EXPECT_FALSE(siv.Decrypt(sealed.substr(0, sealed.size() - 1), ad).ok());
  EXPECT_FALSE(siv.Decrypt(sealed + "x", ad).ok());
  const std::string_view reordered[] = {"", "0a1b2c3d", "third"};
  EXPECT_FALSE(siv.Decrypt(sealed, reordered).ok());
  Result<std::string> opened = siv.Decrypt(sealed, ad);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, plaintext);
}

}  // namespace
}  // namespace sqs2pg::transform
