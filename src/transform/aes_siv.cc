#include "transform/aes_siv.h"

// RFC 5297 assembled from single AES block encryptions, instead of OpenSSL's own "AES-*-SIV" cipher.
// Why: OpenSSL 3.0's SIV context cannot be re-armed for the next message without re-keying (which redoes
// both key schedules and the CMAC subkeys), so every value needed an EVP_CIPHER_CTX_copy of a keyed
// template, measured at ~1.2 us per value, more than the whole 1 us per-message budget. Here each key half
// has one AES-ECB context, keyed once in Create(); an ECB context keeps no per-message state, so it needs
// no reset between calls, and one block costs ~0.02 us. S2V's CMAC subkeys and its constant starting
// value CMAC(<zero>) are computed once as well. The tests check the output against OpenSSL's AES-SIV.

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <utility>

#include "transform/aes_ecb.h"

namespace sqs2pg::transform {
namespace {

constexpr size_t kBlockBytes = 16;
using Block = std::array<unsigned char, kBlockBytes>;
static_assert(AesSiv::kTagBytes == kBlockBytes);

// CTR keystream blocks encrypted per EVP call; a stack buffer, so no allocation for long values.
constexpr size_t kCtrChunkBlocks = 8;

// AES-ECB with the key size of one half of the SIV key (the two halves use the same AES size).
const char* EcbNameForKeyBytes(size_t key_bytes) {
  switch (key_bytes) {
    case 32:
      return "AES-128-ECB";
    case 48:
      return "AES-192-ECB";
    case 64:
      return "AES-256-ECB";
    default:
      return nullptr;
  }
}

Status OpenSslError(std::string_view step) { return transform::OpenSslError("AES-SIV", step); }

const unsigned char* Bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

void XorInto(Block& x, const unsigned char* y) {
  for (size_t i = 0; i < kBlockBytes; ++i) x[i] ^= y[i];
}

// dbl() of RFC 5297 section 2.3 (and the CMAC subkey step of RFC 4493): multiply by x in GF(2^128).
void Dbl(Block& x) {
  const unsigned char carry = x[0] >> 7;
  for (size_t i = 0; i + 1 < kBlockBytes; ++i)
    x[i] = static_cast<unsigned char>((x[i] << 1) | (x[i + 1] >> 7));
  x[kBlockBytes - 1] = static_cast<unsigned char>((x[kBlockBytes - 1] << 1) ^ (carry ? 0x87 : 0));
}

// `bytes` is a multiple of kBlockBytes; in == out is allowed (ECB works block by block).
bool EncryptBlocks(EVP_CIPHER_CTX* ecb, const unsigned char* in, unsigned char* out, size_t bytes) {
  int len = 0;
  return EVP_EncryptUpdate(ecb, out, &len, in, static_cast<int>(bytes)) == 1 &&
         static_cast<size_t>(len) == bytes;
}

bool EncryptBlock(EVP_CIPHER_CTX* ecb, Block& x) {
  return EncryptBlocks(ecb, x.data(), x.data(), kBlockBytes);
}

// Adds 1 to a 128-bit big-endian counter, wrapping, as RFC 5297's CTR does.
void Increment(Block& counter) {
  for (size_t i = kBlockBytes; i-- > 0;) {
    if (++counter[i] != 0) return;
  }
}

}  // namespace

struct AesSiv::Impl {
  CipherCtx mac;  // AES-ECB under K1, the first key half: the CMAC blocks of S2V
  CipherCtx ctr;  // AES-ECB under K2, the second key half: the CTR keystream
  Block k1{};     // RFC 4493 CMAC subkeys of K1: K1 for a full last block, K2 for a padded one
  Block k2{};
  Block d0{};  // CMAC(K1, <zero>), where S2V starts: the same for every message under this key

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  // The contexts wipe their own key schedules when freed.
  ~Impl() {
    OPENSSL_cleanse(k1.data(), k1.size());
    OPENSSL_cleanse(k2.data(), k2.size());
    OPENSSL_cleanse(d0.data(), d0.size());
  }

  // Loads the block of `message` at `offset` (`bytes` <= 16 of it) into `block`, zero-filled after. If
  // `xorend` is set, XORs it onto the message's last 16 bytes first (S2V's xorend; message size >= 16).
  static void LoadBlock(const unsigned char* message, size_t size, size_t offset, size_t bytes,
                        const Block* xorend, Block& block) {
    block.fill(0);
    if (bytes == 0) return;  // an empty component: its data() may be null, which memcpy must not get
    std::memcpy(block.data(), message + offset, bytes);
    if (xorend == nullptr) return;
    const size_t tail = size - kBlockBytes;  // where the xorend region starts
    for (size_t pos = std::max(offset, tail); pos < offset + bytes; ++pos) {
      block[pos - offset] ^= (*xorend)[pos - tail];
    }
  }

  // RFC 4493 AES-CMAC under K1 of `message` (optionally with xorend applied, see LoadBlock) into `out`.
  bool Cmac(const unsigned char* message, size_t size, const Block* xorend, Block& out) const {
    // Every block but the last is chained as is; the last one is whitened with a subkey first.
    const size_t leading_blocks = size == 0 ? 0 : (size - 1) / kBlockBytes;
    Block x{};
    Block m;
    for (size_t i = 0; i < leading_blocks; ++i) {
      LoadBlock(message, size, i * kBlockBytes, kBlockBytes, xorend, m);
      XorInto(x, m.data());
      if (!EncryptBlock(mac.get(), x)) return false;
    }
    const size_t last_bytes = size - leading_blocks * kBlockBytes;  // 0 only for an empty message
    LoadBlock(message, size, leading_blocks * kBlockBytes, last_bytes, xorend, m);
    if (last_bytes == kBlockBytes) {
      XorInto(m, k1.data());
    } else {
      m[last_bytes] = 0x80;  // pad: 10*
      XorInto(m, k2.data());
    }
    XorInto(x, m.data());
    if (!EncryptBlock(mac.get(), x)) return false;
    out = x;
    return true;
  }

  // RFC 5297 S2V(K1, AD1, ..., ADn, plaintext) into `v`. The plaintext is always the last component, so
  // S2V's special case for zero components never arises.
  bool S2v(std::span<const std::string_view> associated_data, std::string_view plaintext, Block& v) const {
    Block d = d0;
    Block mac_of_component;
    for (std::string_view component : associated_data) {
      if (!Cmac(Bytes(component), component.size(), nullptr, mac_of_component)) return false;
      Dbl(d);
      XorInto(d, mac_of_component.data());
    }
    if (plaintext.size() >= kBlockBytes) return Cmac(Bytes(plaintext), plaintext.size(), &d, v);  // xorend
    Dbl(d);  // T = dbl(D) xor pad(Sn)
    Block t{};
    std::memcpy(t.data(), plaintext.data(), plaintext.size());
    t[plaintext.size()] = 0x80;
    XorInto(t, d.data());
    return Cmac(t.data(), t.size(), nullptr, v);
  }

  // RFC 5297 CTR under K2 starting at Q = V with bits 63 and 31 (counting from the right) cleared.
  // Encrypts and decrypts; in == out is allowed.
  bool Ctr(const Block& v, const unsigned char* in, size_t size, unsigned char* out) const {
    Block counter = v;
    counter[8] &= 0x7f;
    counter[12] &= 0x7f;
    unsigned char keystream[kCtrChunkBlocks * kBlockBytes];
    while (size > 0) {
      const size_t blocks = std::min(kCtrChunkBlocks, (size + kBlockBytes - 1) / kBlockBytes);
      for (size_t b = 0; b < blocks; ++b) {
        std::memcpy(keystream + b * kBlockBytes, counter.data(), kBlockBytes);
        Increment(counter);
      }
      if (!EncryptBlocks(ctr.get(), keystream, keystream, blocks * kBlockBytes)) return false;
      const size_t n = std::min(size, blocks * kBlockBytes);
      for (size_t i = 0; i < n; ++i) out[i] = in[i] ^ keystream[i];
      in += n;
      out += n;
      size -= n;
    }
    return true;
  }
};

AesSiv::AesSiv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AesSiv::AesSiv(AesSiv&&) noexcept = default;
AesSiv& AesSiv::operator=(AesSiv&&) noexcept = default;
AesSiv::~AesSiv() = default;

Result<AesSiv> AesSiv::Create(std::string_view key) {
  const char* name = EcbNameForKeyBytes(key.size());
  if (name == nullptr) {
    return Status::InvalidInput("AES-SIV key must be 32, 48 or 64 bytes, not " + std::to_string(key.size()));
  }
  Cipher ecb(EVP_CIPHER_fetch(nullptr, name, nullptr));
  if (!ecb) return OpenSslError(std::string("fetch ") + name);

  auto impl = std::make_unique<Impl>();
  impl->mac.reset(EVP_CIPHER_CTX_new());
  impl->ctr.reset(EVP_CIPHER_CTX_new());
  if (!impl->mac || !impl->ctr) return OpenSslError("EVP_CIPHER_CTX_new");
  // The contexts keep their own reference to the cipher, so `ecb` may be freed on return.
  const size_t half = key.size() / 2;
  if (EVP_EncryptInit_ex2(impl->mac.get(), ecb.get(), Bytes(key), nullptr, nullptr) != 1 ||
      EVP_EncryptInit_ex2(impl->ctr.get(), ecb.get(), Bytes(key) + half, nullptr, nullptr) != 1) {
    return OpenSslError("EVP_EncryptInit_ex2");
  }
  // Whole blocks only: padding would hold back or add bytes.
  if (EVP_CIPHER_CTX_set_padding(impl->mac.get(), 0) != 1 ||
      EVP_CIPHER_CTX_set_padding(impl->ctr.get(), 0) != 1) {
    return OpenSslError("EVP_CIPHER_CTX_set_padding");
  }

  // RFC 4493 subkeys: L = AES(K1, 0^128), K1 = dbl(L), K2 = dbl(K1).
  Block l{};
  if (!EncryptBlock(impl->mac.get(), l)) return OpenSslError("AES-ECB block");
  impl->k1 = l;
  Dbl(impl->k1);
  impl->k2 = impl->k1;
  Dbl(impl->k2);
  OPENSSL_cleanse(l.data(), l.size());
  const Block zero{};
  if (!impl->Cmac(zero.data(), zero.size(), nullptr, impl->d0)) return OpenSslError("AES-ECB block");
  return AesSiv(std::move(impl));
}

Result<std::string> AesSiv::Encrypt(std::string_view plaintext,
                                    std::span<const std::string_view> associated_data) {
  std::string out;
  RETURN_IF_ERROR(EncryptInto(plaintext, associated_data, out));
  return out;
}

Status AesSiv::EncryptInto(std::string_view plaintext, std::span<const std::string_view> associated_data,
                           std::string& out) {
  out.clear();
  if (plaintext.empty()) {
    return Status::InvalidInput(
        "AES-SIV: refusing an empty plaintext (OpenSSL 3.0's AES-SIV could not open it)");
  }
  Block v;
  if (!impl_->S2v(associated_data, plaintext, v)) return OpenSslError("AES-ECB block (S2V)");
  out.resize(kTagBytes + plaintext.size());
  auto* sealed = reinterpret_cast<unsigned char*>(out.data());
  std::memcpy(sealed, v.data(), kTagBytes);
  if (!impl_->Ctr(v, Bytes(plaintext), plaintext.size(), sealed + kTagBytes)) {
    out.clear();
    return OpenSslError("AES-ECB block (CTR)");
  }
  return Status::Ok();
}

Result<std::string> AesSiv::Decrypt(std::string_view sealed,
                                    std::span<const std::string_view> associated_data) {
  // Encrypt never produces an empty ciphertext, so exactly kTagBytes is as malformed as fewer.
  if (sealed.size() <= kTagBytes) {
    return Status::InvalidInput("AES-SIV: sealed value too short (" + std::to_string(sealed.size()) +
                                " bytes, needs more than " + std::to_string(kTagBytes) + ")");
  }
  Block v;
  std::memcpy(v.data(), sealed.data(), kTagBytes);
  std::string plaintext(sealed.size() - kTagBytes, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plaintext.data());
  // SIV authenticates the plaintext: decrypt with the received V, then recompute V from the result.
  Block expected;
  if (!impl_->Ctr(v, Bytes(sealed) + kTagBytes, plaintext.size(), out) ||
      !impl_->S2v(associated_data, plaintext, expected)) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return OpenSslError("AES-ECB block");
  }
  // Constant time, so the comparison does not tell an attacker how many leading tag bytes were right.
  if (CRYPTO_memcmp(v.data(), expected.data(), kTagBytes) != 0) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return Status::InvalidInput(
        "AES-SIV: authentication failed (wrong key, wrong associated data, or the value was altered)");
  }
  return plaintext;
}

}  // namespace sqs2pg::transform
