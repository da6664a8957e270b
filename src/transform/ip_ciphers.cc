#include "transform/ip_ciphers.h"

#include <endian.h>
#include <openssl/crypto.h>

#include <cstring>

#include "transform/aes_ecb.h"

namespace sqs2pg::transform {
namespace {

using U128 = unsigned __int128;
constexpr size_t kBlock = AesEcb::kBlockBytes;
constexpr int kMaxBits = 128;

// Big-endian 128-bit loads and stores: two byte-swapped 64-bit halves.
U128 Load(const std::uint8_t* b) {
  std::uint64_t hi, lo;
  std::memcpy(&hi, b, 8);
  std::memcpy(&lo, b + 8, 8);
  return (U128(be64toh(hi)) << 64) | be64toh(lo);
}

void Store(U128 v, std::uint8_t* b) {
  const std::uint64_t hi = htobe64(static_cast<std::uint64_t>(v >> 64));
  const std::uint64_t lo = htobe64(static_cast<std::uint64_t>(v));
  std::memcpy(b, &hi, 8);
  std::memcpy(b + 8, &lo, 8);
}

// The top `i` bits set (0 <= i <= 128).
U128 TopBits(int i) { return i == 0 ? U128(0) : ~U128(0) << (128 - i); }

U128 Bit(int from_top) { return U128(1) << (127 - from_top); }

Status CipherFailed(std::string_view what) { return OpenSslError(what, "AES-ECB"); }

// Crypto-PAn: the address sits in the top n bits of a 128-bit block (n = 32 for IPv4, as the
// reference code does, or 128). Block i is the address's first i bits over the padding block's
// remaining bits; the top bit of its encryption flips address bit i.
class CryptoPan final : public IpCipher {
 public:
  CryptoPan(AesEcb aes, U128 pad) : aes_(std::move(aes)), pad_(pad) {}
  ~CryptoPan() override { OPENSSL_cleanse(&pad_, sizeof pad_); }

  Result<IpAddress> Encrypt(const IpAddress& ip) override {
    const int n = ip.bits();
    const U128 x = AddressBits(ip);
    std::uint8_t blocks[kMaxBits * kBlock];
    for (int i = 0; i < n; ++i) Store((x & TopBits(i)) | (pad_ & ~TopBits(i)), blocks + i * kBlock);
    if (!aes_.Encrypt(blocks, blocks, n * kBlock)) return CipherFailed("Crypto-PAn");
    U128 flips = 0;
    for (int i = 0; i < n; ++i) {
      if (blocks[i * kBlock] & 0x80) flips |= Bit(i);
    }
    return WithAddressBits(ip, x ^ flips);
  }

  Result<IpAddress> Decrypt(const IpAddress& masked) override {
    const int n = masked.bits();
    const U128 y = AddressBits(masked);
    U128 x = 0;
    std::uint8_t block[kBlock];
    for (int i = 0; i < n; ++i) {
      Store((x & TopBits(i)) | (pad_ & ~TopBits(i)), block);
      if (!aes_.Encrypt(block, block, kBlock)) return CipherFailed("Crypto-PAn");
      const bool flip = (block[0] & 0x80) != 0;
      if (((y & Bit(i)) != 0) != flip) x |= Bit(i);
    }
    return WithAddressBits(masked, x);
  }

  bool PrefixPreserving() const override { return true; }

 private:
  // IPv4's 32 bits moved to the top of the block; IPv6 as is.
  static U128 AddressBits(const IpAddress& ip) {
    U128 all = Load(ip.bytes.data());
    return ip.v4 ? all << 96 : all;
  }
  static IpAddress WithAddressBits(const IpAddress& like, U128 bits) {
    IpAddress out = like;
    if (like.v4) {
      U128 all = Load(like.bytes.data());
      Store((all & TopBits(96)) | (bits >> 96), out.bytes.data());
    } else {
      Store(bits, out.bytes.data());
    }
    return out;
  }

  AesEcb aes_;
  U128 pad_;
};

// ipcrypt-pfx works on the 16-byte form; an IPv4 address's 96-bit mapped prefix is kept and only
// its last 32 bits are encrypted. Block for bit L (counting from the top): 1 << L | the first L bits.
class IpcryptPfx final : public IpCipher {
 public:
  IpcryptPfx(AesEcb k1, AesEcb k2) : k1_(std::move(k1)), k2_(std::move(k2)) {}

  Result<IpAddress> Encrypt(const IpAddress& ip) override {
    const int start = ip.v4 ? 96 : 0;
    const int n = 128 - start;
    const U128 x = Load(ip.bytes.data());
    std::uint8_t p[kMaxBits * kBlock];
    std::uint8_t e2[kMaxBits * kBlock];
    for (int i = 0; i < n; ++i) Store(PaddedPrefix(x, start + i), p + i * kBlock);
    if (!k2_.Encrypt(p, e2, n * kBlock) || !k1_.Encrypt(p, p, n * kBlock)) {
      return CipherFailed("ipcrypt-pfx");
    }
    U128 flips = 0;
    for (int i = 0; i < n; ++i) {
      if ((p[i * kBlock + 15] ^ e2[i * kBlock + 15]) & 1) flips |= Bit(start + i);
    }
    return IpFromBytes16Keeping(ip, x ^ flips);
  }

  Result<IpAddress> Decrypt(const IpAddress& masked) override {
    const int start = masked.v4 ? 96 : 0;
    const U128 y = Load(masked.bytes.data());
    U128 x = y & TopBits(start);
    std::uint8_t p[kBlock];
    std::uint8_t e1[kBlock];
    std::uint8_t e2[kBlock];
    for (int l = start; l < 128; ++l) {
      Store(PaddedPrefix(x, l), p);
      if (!k1_.Encrypt(p, e1, kBlock) || !k2_.Encrypt(p, e2, kBlock)) return CipherFailed("ipcrypt-pfx");
      const bool flip = ((e1[15] ^ e2[15]) & 1) != 0;
      if (((y & Bit(l)) != 0) != flip) x |= Bit(l);
    }
    return IpFromBytes16Keeping(masked, x);
  }

  bool PrefixPreserving() const override { return true; }

 private:
  // zeros || 1 || the first `len` bits of x.
  static U128 PaddedPrefix(U128 x, int len) {
    return len == 0 ? U128(1) : (U128(1) << len) | (x >> (128 - len));
  }
  // The family stays the input's: an IPv6 address whose masked form happens to be IPv4-mapped
  // (a 2^-96 chance) would print as IPv4, which the draft accepts.
  static IpAddress IpFromBytes16Keeping(const IpAddress& like, U128 bits) {
    IpAddress out = like;
    Store(bits, out.bytes.data());
    return out;
  }

  AesEcb k1_;
  AesEcb k2_;
};

class IpcryptDeterministic final : public IpCipher {
 public:
  explicit IpcryptDeterministic(AesEcb aes) : aes_(std::move(aes)) {}

  Result<IpAddress> Encrypt(const IpAddress& ip) override {
    std::uint8_t out[kBlock];
    if (!aes_.Encrypt(ip.bytes.data(), out, kBlock)) return CipherFailed("ipcrypt-deterministic");
    return IpFromBytes16(out);
  }
  Result<IpAddress> Decrypt(const IpAddress& masked) override {
    std::uint8_t out[kBlock];
    if (!aes_.Decrypt(masked.bytes.data(), out, kBlock)) return CipherFailed("ipcrypt-deterministic");
    return IpFromBytes16(out);
  }
  bool PrefixPreserving() const override { return false; }

 private:
  AesEcb aes_;
};

Status WrongKeySize(std::string_view mode, size_t want, size_t got) {
  return Status::InvalidInput(std::string(mode) + " needs a " + std::to_string(want) + "-byte key, not " +
                              std::to_string(got));
}

}  // namespace

Result<std::unique_ptr<IpCipher>> MakeCryptoPan(std::string_view key) {
  if (key.size() != 32) return WrongKeySize("cryptopan", 32, key.size());
  ASSIGN_OR_RETURN(AesEcb aes, AesEcb::Create(key.substr(0, 16), false));
  std::uint8_t pad[kBlock];
  std::memcpy(pad, key.data() + 16, kBlock);
  if (!aes.Encrypt(pad, pad, kBlock)) return CipherFailed("Crypto-PAn");
  auto cipher = std::make_unique<CryptoPan>(std::move(aes), Load(pad));
  OPENSSL_cleanse(pad, sizeof pad);
  return std::unique_ptr<IpCipher>(std::move(cipher));
}

Result<std::unique_ptr<IpCipher>> MakeIpcryptDeterministic(std::string_view key) {
  if (key.size() != 16) return WrongKeySize("ipcrypt-deterministic", 16, key.size());
  ASSIGN_OR_RETURN(AesEcb aes, AesEcb::Create(key, true));
  return std::unique_ptr<IpCipher>(std::make_unique<IpcryptDeterministic>(std::move(aes)));
}

Result<std::unique_ptr<IpCipher>> MakeIpcryptPfx(std::string_view key) {
  if (key.size() != 32) return WrongKeySize("ipcrypt-pfx", 32, key.size());
  if (key.substr(0, 16) == key.substr(16)) {
    return Status::InvalidInput("ipcrypt-pfx: the two 16-byte halves of the key must differ");
  }
  ASSIGN_OR_RETURN(AesEcb k1, AesEcb::Create(key.substr(0, 16), false));
  ASSIGN_OR_RETURN(AesEcb k2, AesEcb::Create(key.substr(16), false));
  return std::unique_ptr<IpCipher>(std::make_unique<IpcryptPfx>(std::move(k1), std::move(k2)));
}

IpAddress NetworkOf(const IpAddress& ip, int bits) {
  if (bits < 0) bits = 0;
  if (bits > ip.bits()) bits = ip.bits();
  const int keep = ip.v4 ? 96 + bits : bits;
  IpAddress out = ip;
  Store(Load(ip.bytes.data()) & TopBits(keep), out.bytes.data());
  return out;
}

}  // namespace sqs2pg::transform
