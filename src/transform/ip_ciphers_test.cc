// The address masks against their published vectors, bit for bit, and their properties on random
// addresses: prefixes kept exactly, every value round-trips.

#include "transform/ip_ciphers.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <openssl/evp.h>

#include <array>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/encoding.h"

namespace sqs2pg::transform {
namespace {

std::vector<std::vector<std::string>> TsvRows(const std::string& name) {
  std::ifstream in(std::string(SQS2PG_TEST_VECTORS_DIR) + "/" + name);
  EXPECT_TRUE(in) << name;
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    std::stringstream s(line);
    for (std::string f; std::getline(s, f, '\t');) fields.push_back(f);
    rows.push_back(fields);
  }
  return rows;
}

IpAddress Ip(const std::string& text) {
  auto ip = ParseIp(text);
  EXPECT_TRUE(ip) << text;
  return ip.value_or(IpAddress{});
}

std::unique_ptr<IpCipher> Make(Result<std::unique_ptr<IpCipher>> made) {
  EXPECT_TRUE(made.ok()) << made.status().message();
  return std::move(made).value();
}

TEST(CryptoPanTest, ReproducesTheReferenceSampleTrace) {
  auto rows = TsvRows("cryptopan.tsv");
  ASSERT_EQ(rows.size(), 101u);  // the key, then 100 pairs
  auto cipher = Make(MakeCryptoPan(*HexDecode(rows[0][0])));
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 2u);
    auto masked = cipher->Encrypt(Ip(rows[i][0]));
    ASSERT_TRUE(masked.ok());
    EXPECT_EQ(FormatIp(*masked), rows[i][1]) << "row " << i;
    auto plain = cipher->Decrypt(*masked);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(FormatIp(*plain), rows[i][0]) << "row " << i;
  }
}

TEST(IpcryptTest, ReproducesTheDraftVectors) {
  int deterministic = 0, pfx = 0;
  for (const auto& row : TsvRows("ipcrypt_draft.tsv")) {
    ASSERT_EQ(row.size(), 4u);
    std::string key = *HexDecode(row[1]);
    std::unique_ptr<IpCipher> cipher;
    if (row[0] == "ipcrypt-deterministic") {
      cipher = Make(MakeIpcryptDeterministic(key));
      ++deterministic;
    } else {
      ASSERT_EQ(row[0], "ipcrypt-pfx");
      cipher = Make(MakeIpcryptPfx(key));
      ++pfx;
    }
    auto masked = cipher->Encrypt(Ip(row[2]));
    ASSERT_TRUE(masked.ok());
    EXPECT_EQ(FormatIp(*masked), row[3]) << row[0] << " " << row[2];
    auto plain = cipher->Decrypt(Ip(row[3]));
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(FormatIp(*plain), FormatIp(Ip(row[2]))) << row[0] << " " << row[3];
  }
  EXPECT_EQ(deterministic, 5);
  EXPECT_EQ(pfx, 16);
}

TEST(IpCipherTest, RefusesWrongKeys) {
  EXPECT_FALSE(MakeCryptoPan(std::string(31, 'k')).ok());
  EXPECT_FALSE(MakeIpcryptDeterministic(std::string(32, 'k')).ok());
  EXPECT_FALSE(MakeIpcryptPfx(std::string(16, 'k')).ok());
  // K1 == K2 would make every flip bit zero: the address would come out unchanged.
  auto same = MakeIpcryptPfx(std::string(32, 'k'));
  ASSERT_FALSE(same.ok());
  EXPECT_NE(same.status().message().find("differ"), std::string::npos);
}

// Bits the two addresses share from the top, within the address's own bits.
int SharedPrefix(const IpAddress& a, const IpAddress& b) {
  const int start = a.v4 ? 96 : 0;
  for (int bit = start; bit < 128; ++bit) {
    int byte = bit / 8, shift = 7 - bit % 8;
    if (((a.bytes[byte] >> shift) & 1) != ((b.bytes[byte] >> shift) & 1)) return bit - start;
  }
  return a.bits();
}

// A random address, and a second one sharing exactly `shared` leading bits with it.
std::pair<IpAddress, IpAddress> RandomPair(std::mt19937_64& rng, bool v4) {
  IpAddress a;
  for (auto& b : a.bytes) b = static_cast<std::uint8_t>(rng());
  if (v4) {
    a = *IpFromBinary(std::string_view(reinterpret_cast<const char*>(a.bytes.data()), 4));
  } else if (a.v4 || a.bytes[0] == 0) {
    a.bytes[0] = 0x20;  // keep it clearly IPv6 (never IPv4-mapped)
    a.v4 = false;
  }
  const int bits = a.bits();
  const int shared = static_cast<int>(rng() % bits);
  IpAddress b = a;
  const int start = v4 ? 96 : 0;
  for (int bit = start + shared; bit < 128; ++bit) {
    int byte = bit / 8, shift = 7 - bit % 8;
    bool flip = bit == start + shared || (rng() & 1);
    if (flip) b.bytes[byte] ^= static_cast<std::uint8_t>(1 << shift);
  }
  return {a, b};
}

class PrefixPropertyTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<IpCipher> Cipher() {
    std::string key(32, '\0');
    for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<char>(i * 7 + 3);
    if (GetParam() == "cryptopan") return Make(MakeCryptoPan(key));
    if (GetParam() == "ipcrypt-pfx") return Make(MakeIpcryptPfx(key));
    return Make(MakeIpcryptDeterministic(key.substr(0, 16)));
  }
};

TEST_P(PrefixPropertyTest, RandomPairsKeepTheirSharedPrefixExactlyAndRoundTrip) {
  auto cipher = Cipher();
  std::mt19937_64 rng(20021107);
  for (bool v4 : {true, false}) {
    for (int i = 0; i < 2000; ++i) {
      auto [a, b] = RandomPair(rng, v4);
      auto ma = cipher->Encrypt(a);
      auto mb = cipher->Encrypt(b);
      ASSERT_TRUE(ma.ok() && mb.ok());
      if (cipher->PrefixPreserving()) {
        ASSERT_EQ(ma->v4, v4);
        ASSERT_EQ(SharedPrefix(*ma, *mb), SharedPrefix(a, b)) << FormatIp(a) << " " << FormatIp(b);
      }
      // Through text too, as a value read back from the table would be.
      auto back = cipher->Decrypt(*ParseIp(FormatIp(*ma)));
      ASSERT_TRUE(back.ok());
      ASSERT_EQ(*back, a) << FormatIp(a);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, PrefixPropertyTest,
                         ::testing::Values("cryptopan", "ipcrypt-pfx", "ipcrypt-deterministic"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

// The schemes as their texts state them, one AES call per bit and a byte array per block: the
// prefix table and the batched blocks must not change a single output bit.
std::array<std::uint8_t, 16> Aes128(std::string_view key, const std::array<std::uint8_t, 16>& in) {
  std::array<std::uint8_t, 16> out{};
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), nullptr,
                               reinterpret_cast<const unsigned char*>(key.data()), nullptr),
            1);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  EXPECT_EQ(EVP_EncryptUpdate(ctx, out.data(), &len, in.data(), 16), 1);
  EVP_CIPHER_CTX_free(ctx);
  return out;
}

bool GetBit(const std::uint8_t* bytes, int bit) { return (bytes[bit / 8] >> (7 - bit % 8)) & 1; }
void SetBit(std::uint8_t* bytes, int bit, bool on) {
  const auto mask = static_cast<std::uint8_t>(1 << (7 - bit % 8));
  bytes[bit / 8] = static_cast<std::uint8_t>(on ? bytes[bit / 8] | mask : bytes[bit / 8] & ~mask);
}

// Crypto-PAn: block i = the address's first i bits, then the encrypted pad's bits; its first bit
// flips address bit i. The address starts at the block's first bit (IPv4 in 32 bits).
IpAddress ReferenceCryptoPan(std::string_view key, const IpAddress& ip) {
  std::array<std::uint8_t, 16> pad_in{};
  std::memcpy(pad_in.data(), key.data() + 16, 16);
  const auto pad = Aes128(key.substr(0, 16), pad_in);
  const int n = ip.bits();
  const std::uint8_t* addr = ip.bytes.data() + (ip.v4 ? 12 : 0);
  IpAddress out = ip;
  std::uint8_t* masked = out.bytes.data() + (ip.v4 ? 12 : 0);
  for (int i = 0; i < n; ++i) {
    auto block = pad;
    for (int b = 0; b < i; ++b) SetBit(block.data(), b, GetBit(addr, b));
    const bool flip = Aes128(key.substr(0, 16), block)[0] & 0x80;
    SetBit(masked, i, GetBit(addr, i) != flip);
  }
  return out;
}

// ipcrypt-pfx: for bit position p of the 16-byte form (from 96 for IPv4), the block is the
// 128-bit number 2^p + (the first p bits), big-endian; AES(K1) xor AES(K2), last bit, flips bit p.
IpAddress ReferencePfx(std::string_view key, const IpAddress& ip) {
  IpAddress out = ip;
  for (int p = ip.v4 ? 96 : 0; p < 128; ++p) {
    std::array<std::uint8_t, 16> block{};
    // Bit k of the number (from the least significant) is bit 127 - k of the block.
    SetBit(block.data(), 127 - p, true);
    for (int b = 0; b < p; ++b) SetBit(block.data(), 127 - (p - 1 - b), GetBit(ip.bytes.data(), b));
    const bool flip = (Aes128(key.substr(0, 16), block)[15] ^ Aes128(key.substr(16), block)[15]) & 1;
    SetBit(out.bytes.data(), p, GetBit(ip.bytes.data(), p) != flip);
  }
  return out;
}

TEST(IpCipherTest, TableAndBatchesAgreeWithABitByBitReading) {
  std::mt19937_64 rng(1181415);
  std::string key(32, '\0');
  for (char& c : key) c = static_cast<char>(rng());
  auto cryptopan = Make(MakeCryptoPan(key));
  auto pfx = Make(MakeIpcryptPfx(key));
  for (bool v4 : {true, false}) {
    for (int i = 0; i < 300; ++i) {
      const IpAddress ip = RandomPair(rng, v4).first;
      EXPECT_EQ(FormatIp(*cryptopan->Encrypt(ip)), FormatIp(ReferenceCryptoPan(key, ip))) << FormatIp(ip);
      EXPECT_EQ(FormatIp(*pfx->Encrypt(ip)), FormatIp(ReferencePfx(key, ip))) << FormatIp(ip);
    }
  }
}

TEST(IpAddressTest, FormatIpMatchesInetNtop) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 20000; ++i) {
    IpAddress ip;
    // Words that are often zero, so every shape of zero run turns up.
    for (size_t w = 0; w < 8; ++w) {
      unsigned word = rng() % 3 == 0 ? 0 : static_cast<unsigned>(rng() % (rng() % 2 ? 0x10000 : 0x20));
      ip.bytes[2 * w] = static_cast<std::uint8_t>(word >> 8);
      ip.bytes[2 * w + 1] = static_cast<std::uint8_t>(word);
    }
    ip = IpFromBytes16(ip.bytes.data());
    char text[INET6_ADDRSTRLEN];
    const char* expected = ip.v4 ? inet_ntop(AF_INET, ip.bytes.data() + 12, text, sizeof text)
                                 : inet_ntop(AF_INET6, ip.bytes.data(), text, sizeof text);
    ASSERT_EQ(FormatIp(ip), expected);
  }
}

TEST(IpCipherTest, NetworkOfKeepsTheLeadingBits) {
  EXPECT_EQ(FormatIp(NetworkOf(Ip("100.9.15.210"), 24)), "100.9.15.0");
  EXPECT_EQ(FormatIp(NetworkOf(Ip("2001:db8:1:2:3:4:5:6"), 64)), "2001:db8:1:2::");
  EXPECT_EQ(FormatIp(NetworkOf(Ip("10.1.2.3"), 99)), "10.1.2.3");
}

}  // namespace
}  // namespace sqs2pg::transform
