#pragma once
// AES in ECB mode over OpenSSL 3 EVP, keyed once: the single-block building block of the address
// masks. An ECB context keeps no per-call state, so one context serves every call without a reset.

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sqs2pg::transform {

struct CipherFree {
  void operator()(EVP_CIPHER* c) const noexcept { EVP_CIPHER_free(c); }
};
using Cipher = std::unique_ptr<EVP_CIPHER, CipherFree>;
struct CipherCtxFree {
  // Frees with the key schedule wiped (the provider's freectx clears it).
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

// Empties this thread's OpenSSL error queue too, so a stale entry is not blamed on a later call.
Status OpenSslError(std::string_view what, std::string_view step);

class AesEcb {
 public:
  static constexpr size_t kBlockBytes = 16;

  // key: 16, 24 or 32 bytes. `decrypt` also keys a decrypting context.
  static Result<AesEcb> Create(std::string_view key, bool decrypt);

  // `bytes` is a multiple of 16; in == out is allowed. One EVP call however many blocks: batching
  // blocks lets AES-NI pipeline them.
  bool Encrypt(const std::uint8_t* in, std::uint8_t* out, size_t bytes) const;
  bool Decrypt(const std::uint8_t* in, std::uint8_t* out, size_t bytes) const;

 private:
  CipherCtx enc_;
  CipherCtx dec_;
};

}  // namespace sqs2pg::transform
