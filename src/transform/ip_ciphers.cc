#include "transform/ip_ciphers.h"

#include <endian.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "common/digest.h"
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

// The flips of the first kTableBits address bits, looked up by those bits: entry v holds, in its top
// bits first, which of bits start..start+15 flip for an address whose bits there are v. Each of
// those flips depends only on the bits above it, so 2^16 - 1 prefix evaluations (about 1 ms, once
// per key) replace 16 AES blocks per address (32 for ipcrypt-pfx): half an IPv4 address's work.
// The table is as secret as the key (it is the mask of every /16), so it is wiped when freed.
class PrefixTable {
 public:
  static constexpr int kTableBits = 16;

  // flips_at(bit, xs, count, out) sets out[j] to whether address bit `bit` (from the top of the
  // 128-bit word) flips for xs[j]; only the bits of xs[j] above `bit` may matter. `base` holds the
  // bits above `start` (the IPv4-mapped prefix for ipcrypt-pfx's IPv4). Empty if the cipher failed.
  template <class FlipsAt>
  static std::optional<PrefixTable> Build(U128 base, int start, FlipsAt&& flips_at) {
    PrefixTable t(start);
    constexpr std::uint32_t kEntries = 1u << kTableBits;
    std::vector<U128> xs(kEntries / 2);
    std::vector<std::uint8_t> flips(kEntries / 2);
    for (int len = 0; len < kTableBits; ++len) {
      const std::uint32_t count = 1u << len;
      for (std::uint32_t v = 0; v < count; ++v)
        xs[v] = base | (len == 0 ? U128(0) : U128(v) << (128 - start - len));
      if (!flips_at(start + len, xs.data(), count, flips.data())) return std::nullopt;
      const std::uint16_t bit = static_cast<std::uint16_t>(1u << (kTableBits - 1 - len));
      for (std::uint32_t e = 0; e < kEntries; ++e) {
        if (flips[e >> (kTableBits - len)]) t.flips_[e] |= bit;
      }
    }
    OPENSSL_cleanse(flips.data(), flips.size());
    return t;
  }

  PrefixTable(PrefixTable&&) noexcept = default;
  PrefixTable& operator=(PrefixTable&&) noexcept = default;
  ~PrefixTable() {
    if (flips_) OPENSSL_cleanse(flips_.get(), sizeof(std::uint16_t) << kTableBits);
  }

  // The flips of bits start..start+15 of x, in place in a 128-bit word.
  U128 FlipsFor(U128 x) const { return U128(flips_[Index(x)]) << Shift(); }

  // Decryption: the flip of bit start+len once x holds the bits recovered above it (the bits from
  // start+len down are still zero, and the entry's bit for start+len depends only on those above).
  bool FlipAt(U128 x, int len) const { return (flips_[Index(x)] >> (kTableBits - 1 - len)) & 1; }

 private:
  explicit PrefixTable(int start)
      : start_(start), flips_(std::make_unique<std::uint16_t[]>(std::size_t{1} << kTableBits)) {}
  int Shift() const { return 128 - start_ - kTableBits; }
  std::uint32_t Index(U128 x) const { return static_cast<std::uint32_t>(x >> Shift()) & 0xffff; }

  int start_;
  std::unique_ptr<std::uint16_t[]> flips_;
};

// Blocks per ECB call while building a prefix table (a stack buffer's worth).
constexpr size_t kChunkBlocks = 256;

// Crypto-PAn: the address sits in the top n bits of a 128-bit block (n = 32 for IPv4, as the
// reference code does, or 128). Block i is the address's first i bits over the padding block's
// remaining bits; the top bit of its encryption flips address bit i. IPv4 and IPv6 share their
// first 16 blocks' layout, so one prefix table serves both.
class CryptoPan final : public IpCipher {
 public:
  static Result<std::unique_ptr<IpCipher>> Create(AesEcb aes, U128 pad) {
    auto cipher = std::unique_ptr<CryptoPan>(new CryptoPan(std::move(aes), pad));
    auto table = PrefixTable::Build(0, 0, [&](int bit, const U128* xs, size_t count, std::uint8_t* out) {
      return cipher->FlipsAt(bit, xs, count, out);
    });
    if (!table) return CipherFailed("Crypto-PAn");
    cipher->table_ = std::move(table);
    return std::unique_ptr<IpCipher>(std::move(cipher));
  }
  ~CryptoPan() override { OPENSSL_cleanse(&pad_, sizeof pad_); }

  // The loops shift by one bit a step, never by a variable count: a variable 128-bit shift is
  // several instructions and a branch, and these loops run 112 times for an IPv6 address.
  Result<IpAddress> Encrypt(const IpAddress& ip) override {
    constexpr int kFrom = PrefixTable::kTableBits;
    const int n = ip.bits();
    const U128 x = AddressBits(ip);
    std::uint8_t blocks[kMaxBits * kBlock];
    const U128 differs = x ^ pad_;
    U128 keep = TopBits(kFrom);  // the address bits block i takes: its first i
    for (int i = kFrom; i < n; ++i) {
      Store(pad_ ^ (differs & keep), blocks + (i - kFrom) * kBlock);
      keep = (keep >> 1) | Bit(0);
    }
    if (!aes_.Encrypt(blocks, blocks, (n - kFrom) * kBlock)) return CipherFailed("Crypto-PAn");
    U128 flips = 0;  // bits kFrom..n-1, the last one lowest
    for (int i = kFrom; i < n; ++i) flips = (flips << 1) | (blocks[(i - kFrom) * kBlock] >> 7);
    return WithAddressBits(ip, x ^ table_->FlipsFor(x) ^ (flips << (128 - n)));
  }

  Result<IpAddress> Decrypt(const IpAddress& masked) override {
    const int n = masked.bits();
    const U128 y = AddressBits(masked);
    U128 x = 0;
    std::uint8_t block[kBlock];
    for (int i = 0; i < n; ++i) {
      bool flip;
      if (i < PrefixTable::kTableBits) {
        flip = table_->FlipAt(x, i);
      } else {
        Store(Block(x, i), block);
        if (!aes_.Encrypt(block, block, kBlock)) return CipherFailed("Crypto-PAn");
        flip = (block[0] & 0x80) != 0;
      }
      if (((y & Bit(i)) != 0) != flip) x |= Bit(i);
    }
    return WithAddressBits(masked, x);
  }

  bool PrefixPreserving() const override { return true; }

 private:
  CryptoPan(AesEcb aes, U128 pad) : aes_(std::move(aes)), pad_(pad) {}

  U128 Block(U128 x, int i) const { return (x & TopBits(i)) | (pad_ & ~TopBits(i)); }

  // The table build's evaluations, a stack-sized chunk per ECB call.
  bool FlipsAt(int bit, const U128* xs, size_t count, std::uint8_t* out) const {
    std::uint8_t blocks[kChunkBlocks * kBlock];
    for (size_t done = 0; done < count; done += kChunkBlocks) {
      const size_t n = std::min(kChunkBlocks, count - done);
      for (size_t j = 0; j < n; ++j) Store(Block(xs[done + j], bit), blocks + j * kBlock);
      if (!aes_.Encrypt(blocks, blocks, n * kBlock)) return false;
      for (size_t j = 0; j < n; ++j) out[done + j] = (blocks[j * kBlock] & 0x80) != 0;
    }
    OPENSSL_cleanse(blocks, sizeof blocks);
    return true;
  }

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
  std::optional<PrefixTable> table_;
};

// ipcrypt-pfx works on the 16-byte form; an IPv4 address's 96-bit mapped prefix is kept and only
// its last 32 bits are encrypted. Block for bit L (counting from the top): 1 << L | the first L bits.
// IPv4 (from bit 96, under the mapped prefix) and IPv6 (from bit 0) each have a prefix table.
class IpcryptPfx final : public IpCipher {
 public:
  static Result<std::unique_ptr<IpCipher>> Create(AesEcb k1, AesEcb k2) {
    auto cipher = std::unique_ptr<IpcryptPfx>(new IpcryptPfx(std::move(k1), std::move(k2)));
    auto flips_at = [&](int bit, const U128* xs, size_t count, std::uint8_t* out) {
      return cipher->FlipsAt(bit, xs, count, out);
    };
    auto v4 = PrefixTable::Build(kV4MappedPrefix, 96, flips_at);
    auto v6 = PrefixTable::Build(0, 0, flips_at);
    if (!v4 || !v6) return CipherFailed("ipcrypt-pfx");
    cipher->v4_ = std::move(v4);
    cipher->v6_ = std::move(v6);
    return std::unique_ptr<IpCipher>(std::move(cipher));
  }

  // As in CryptoPan::Encrypt, every step shifts by one bit: the next block is this one shifted
  // left with the next address bit coming in (the marker bit moves up with it).
  Result<IpAddress> Encrypt(const IpAddress& ip) override {
    const int start = (ip.v4 ? 96 : 0) + PrefixTable::kTableBits;
    const int n = 128 - start;
    const U128 x = Load(ip.bytes.data());
    std::uint8_t p[kMaxBits * kBlock];
    std::uint8_t e2[kMaxBits * kBlock];
    U128 block = PaddedPrefix(x, start);
    U128 rest = x << start;  // the address bits still to come in, at the top
    for (int i = 0; i < n; ++i) {
      Store(block, p + i * kBlock);
      block = (block << 1) | (rest >> 127);
      rest <<= 1;
    }
    if (!k2_.Encrypt(p, e2, n * kBlock) || !k1_.Encrypt(p, p, n * kBlock)) {
      return CipherFailed("ipcrypt-pfx");
    }
    U128 flips = 0;  // bits start..127, in order, so it ends aligned
    for (int i = 0; i < n; ++i) flips = (flips << 1) | ((p[i * kBlock + 15] ^ e2[i * kBlock + 15]) & 1);
    return IpFromBytes16Keeping(ip, x ^ (ip.v4 ? *v4_ : *v6_).FlipsFor(x) ^ flips);
  }

  Result<IpAddress> Decrypt(const IpAddress& masked) override {
    const int start = masked.v4 ? 96 : 0;
    const PrefixTable& table = masked.v4 ? *v4_ : *v6_;
    const U128 y = Load(masked.bytes.data());
    U128 x = y & TopBits(start);
    std::uint8_t p[kBlock];
    std::uint8_t e1[kBlock];
    std::uint8_t e2[kBlock];
    for (int l = start; l < 128; ++l) {
      bool flip;
      if (l < start + PrefixTable::kTableBits) {
        flip = table.FlipAt(x, l - start);
      } else {
        Store(PaddedPrefix(x, l), p);
        if (!k1_.Encrypt(p, e1, kBlock) || !k2_.Encrypt(p, e2, kBlock)) return CipherFailed("ipcrypt-pfx");
        flip = ((e1[15] ^ e2[15]) & 1) != 0;
      }
      if (((y & Bit(l)) != 0) != flip) x |= Bit(l);
    }
    return IpFromBytes16Keeping(masked, x);
  }

  bool PrefixPreserving() const override { return true; }

 private:
  static constexpr U128 kV4MappedPrefix = U128(0xffff) << 32;

  IpcryptPfx(AesEcb k1, AesEcb k2) : k1_(std::move(k1)), k2_(std::move(k2)) {}

  // zeros || 1 || the first `len` bits of x.
  static U128 PaddedPrefix(U128 x, int len) {
    return len == 0 ? U128(1) : (U128(1) << len) | (x >> (128 - len));
  }

  bool FlipsAt(int bit, const U128* xs, size_t count, std::uint8_t* out) const {
    std::uint8_t p[kChunkBlocks * kBlock];
    std::uint8_t e2[kChunkBlocks * kBlock];
    for (size_t done = 0; done < count; done += kChunkBlocks) {
      const size_t n = std::min(kChunkBlocks, count - done);
      for (size_t j = 0; j < n; ++j) Store(PaddedPrefix(xs[done + j], bit), p + j * kBlock);
      if (!k2_.Encrypt(p, e2, n * kBlock) || !k1_.Encrypt(p, p, n * kBlock)) return false;
      for (size_t j = 0; j < n; ++j) out[done + j] = (p[j * kBlock + 15] ^ e2[j * kBlock + 15]) & 1;
    }
    OPENSSL_cleanse(p, sizeof p);
    OPENSSL_cleanse(e2, sizeof e2);
    return true;
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
  std::optional<PrefixTable> v4_;
  std::optional<PrefixTable> v6_;
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
  const U128 pad_block = Load(pad);
  OPENSSL_cleanse(pad, sizeof pad);
  return CryptoPan::Create(std::move(aes), pad_block);
}

namespace {

// IPv4 to one cipher, IPv6 to another: the families share no tree, key or pad.
class FamiliesApart final : public IpCipher {
 public:
  FamiliesApart(std::unique_ptr<IpCipher> v4, std::unique_ptr<IpCipher> v6)
      : v4_(std::move(v4)), v6_(std::move(v6)) {}
  Result<IpAddress> Encrypt(const IpAddress& ip) override { return (ip.v4 ? v4_ : v6_)->Encrypt(ip); }
  Result<IpAddress> Decrypt(const IpAddress& masked) override {
    return (masked.v4 ? v4_ : v6_)->Decrypt(masked);
  }
  bool PrefixPreserving() const override { return true; }

 private:
  std::unique_ptr<IpCipher> v4_, v6_;
};

}  // namespace

Result<std::unique_ptr<IpCipher>> MakeCryptoPanFamiliesApart(std::string_view key) {
  if (key.size() != 32) return WrongKeySize("cryptopan", 32, key.size());
  ASSIGN_OR_RETURN(std::unique_ptr<IpCipher> v4, MakeCryptoPan(key));
  std::string derived = HmacSha256(key, "sqs2pg cryptopan ipv6");
  auto v6 = MakeCryptoPan(derived);
  OPENSSL_cleanse(derived.data(), derived.size());
  if (!v6.ok()) return v6.status();
  return std::unique_ptr<IpCipher>(std::make_unique<FamiliesApart>(std::move(v4), std::move(v6).value()));
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
  return IpcryptPfx::Create(std::move(k1), std::move(k2));
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
