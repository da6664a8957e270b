#include "transform/aes_ecb.h"

#include <openssl/err.h>

namespace sqs2pg::transform {
namespace {

const char* EcbName(size_t key_bytes) {
  switch (key_bytes) {
    case 16:
      return "AES-128-ECB";
    case 24:
      return "AES-192-ECB";
    case 32:
      return "AES-256-ECB";
    default:
      return nullptr;
  }
}

bool Run(EVP_CIPHER_CTX* ctx, const std::uint8_t* in, std::uint8_t* out, size_t bytes) {
  int len = 0;
  return EVP_CipherUpdate(ctx, out, &len, in, static_cast<int>(bytes)) == 1 &&
         static_cast<size_t>(len) == bytes;
}

}  // namespace

Status OpenSslError(std::string_view what, std::string_view step) {
  unsigned long code = ERR_peek_last_error();
  char reason[256] = "no detail from OpenSSL";
  if (code != 0) ERR_error_string_n(code, reason, sizeof(reason));
  ERR_clear_error();
  return Status::Permanent(std::string(what) + ": OpenSSL " + std::string(step) + " failed (" + reason + ")");
}

Result<AesEcb> AesEcb::Create(std::string_view key, bool decrypt) {
  const char* name = EcbName(key.size());
  if (name == nullptr) return Status::InvalidInput("AES key must be 16, 24 or 32 bytes");
  Cipher ecb(EVP_CIPHER_fetch(nullptr, name, nullptr));
  if (!ecb) return OpenSslError("AES", std::string("fetch ") + name);
  const auto* k = reinterpret_cast<const unsigned char*>(key.data());
  AesEcb aes;
  aes.enc_.reset(EVP_CIPHER_CTX_new());
  if (!aes.enc_ || EVP_CipherInit_ex2(aes.enc_.get(), ecb.get(), k, nullptr, 1, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(aes.enc_.get(), 0) != 1) {
    return OpenSslError("AES", "encrypt init");
  }
  if (decrypt) {
    aes.dec_.reset(EVP_CIPHER_CTX_new());
    if (!aes.dec_ || EVP_CipherInit_ex2(aes.dec_.get(), ecb.get(), k, nullptr, 0, nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(aes.dec_.get(), 0) != 1) {
      return OpenSslError("AES", "decrypt init");
    }
  }
  return aes;
}

bool AesEcb::Encrypt(const std::uint8_t* in, std::uint8_t* out, size_t bytes) const {
  return Run(enc_.get(), in, out, bytes);
}

bool AesEcb::Decrypt(const std::uint8_t* in, std::uint8_t* out, size_t bytes) const {
  return dec_ && Run(dec_.get(), in, out, bytes);
}

}  // namespace sqs2pg::transform
