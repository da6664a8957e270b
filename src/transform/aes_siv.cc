#include "transform/aes_siv.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <climits>
#include <cstring>
#include <string>
#include <utility>

namespace sqs2pg::transform {
namespace {

struct CipherFree {
  void operator()(EVP_CIPHER* c) const noexcept { EVP_CIPHER_free(c); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using Cipher = std::unique_ptr<EVP_CIPHER, CipherFree>;
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

// EVP_EncryptUpdate and EVP_DecryptUpdate share this signature.
using UpdateFn = int (*)(EVP_CIPHER_CTX*, unsigned char*, int*, const unsigned char*, int);

constexpr size_t kMaxUpdateBytes = INT_MAX;  // EVP lengths are int

const char* CipherNameForKeyBytes(size_t key_bytes) {
  switch (key_bytes) {
    case 32:
      return "AES-128-SIV";
    case 48:
      return "AES-192-SIV";
    case 64:
      return "AES-256-SIV";
    default:
      return nullptr;
  }
}

// Empties this thread's OpenSSL error queue too, so a stale entry is not blamed on a later, unrelated call.
Status OpenSslError(std::string_view step) {
  unsigned long code = ERR_peek_last_error();
  char reason[256] = "no detail from OpenSSL";
  if (code != 0) ERR_error_string_n(code, reason, sizeof(reason));
  ERR_clear_error();
  return Status::Permanent("AES-SIV: OpenSSL " + std::string(step) + " failed (" + reason + ")");
}

// Never hand OpenSSL a null pointer: an empty associated-data component must still count as one.
const unsigned char* Bytes(std::string_view s) {
  static const unsigned char kNoBytes = 0;
  return s.empty() ? &kNoBytes : reinterpret_cast<const unsigned char*>(s.data());
}

Status AddAssociatedData(EVP_CIPHER_CTX* ctx, std::span<const std::string_view> associated_data,
                         UpdateFn update) {
  for (std::string_view component : associated_data) {
    if (component.size() > kMaxUpdateBytes) return Status::InvalidInput("AES-SIV: associated data too long");
    int ignored = 0;
    if (update(ctx, nullptr, &ignored, Bytes(component), static_cast<int>(component.size())) != 1) {
      return OpenSslError("associated data update");
    }
  }
  return Status::Ok();
}

}  // namespace

struct AesSiv::Impl {
  // Keyed once and never run, only copied: OpenSSL 3.0's SIV cannot be re-armed without re-keying.
  // EVP_EncryptInit_ex2(ctx, NULL, NULL, NULL, NULL) keeps the previous message's S2V state, after which
  // the next encryption fails and the tag left in the context is the old one.
  CipherCtx seal_template;
  CipherCtx open_template;
  CipherCtx work;  // overwritten with a template copy at the start of every call
};

AesSiv::AesSiv(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AesSiv::AesSiv(AesSiv&&) noexcept = default;
AesSiv& AesSiv::operator=(AesSiv&&) noexcept = default;
AesSiv::~AesSiv() = default;

Result<AesSiv> AesSiv::Create(std::string_view key) {
  const char* name = CipherNameForKeyBytes(key.size());
  if (name == nullptr) {
    return Status::InvalidInput("AES-SIV key must be 32, 48 or 64 bytes, not " + std::to_string(key.size()));
  }
  Cipher cipher(EVP_CIPHER_fetch(nullptr, name, nullptr));
  if (!cipher) return OpenSslError(std::string("fetch ") + name);

  auto impl = std::make_unique<Impl>();
  impl->seal_template.reset(EVP_CIPHER_CTX_new());
  impl->open_template.reset(EVP_CIPHER_CTX_new());
  impl->work.reset(EVP_CIPHER_CTX_new());
  if (!impl->seal_template || !impl->open_template || !impl->work) return OpenSslError("EVP_CIPHER_CTX_new");
  // The contexts keep their own reference to the cipher, so `cipher` may be freed on return.
  if (EVP_EncryptInit_ex2(impl->seal_template.get(), cipher.get(), Bytes(key), nullptr, nullptr) != 1) {
    return OpenSslError("EVP_EncryptInit_ex2");
  }
  if (EVP_DecryptInit_ex2(impl->open_template.get(), cipher.get(), Bytes(key), nullptr, nullptr) != 1) {
    return OpenSslError("EVP_DecryptInit_ex2");
  }
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
    return Status::InvalidInput("AES-SIV: refusing an empty plaintext (OpenSSL 3.0 cannot encrypt one)");
  }
  if (plaintext.size() > kMaxUpdateBytes - kTagBytes)
    return Status::InvalidInput("AES-SIV: plaintext too long");

  EVP_CIPHER_CTX* ctx = impl_->work.get();
  if (EVP_CIPHER_CTX_copy(ctx, impl_->seal_template.get()) != 1) return OpenSslError("EVP_CIPHER_CTX_copy");
  RETURN_IF_ERROR(AddAssociatedData(ctx, associated_data, EVP_EncryptUpdate));

  out.resize(kTagBytes + plaintext.size());
  auto* tag = reinterpret_cast<unsigned char*>(out.data());
  unsigned char* ciphertext = tag + kTagBytes;
  int len = 0;
  int final_len = 0;
  if (EVP_EncryptUpdate(ctx, ciphertext, &len, Bytes(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      static_cast<size_t>(len) != plaintext.size() ||
      EVP_EncryptFinal_ex(ctx, ciphertext + len, &final_len) != 1 || final_len != 0 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagBytes, tag) != 1) {
    out.clear();
    return OpenSslError("encrypt");
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
  if (sealed.size() > kMaxUpdateBytes) return Status::InvalidInput("AES-SIV: sealed value too long");
  std::string_view ciphertext = sealed.substr(kTagBytes);

  EVP_CIPHER_CTX* ctx = impl_->work.get();
  if (EVP_CIPHER_CTX_copy(ctx, impl_->open_template.get()) != 1) return OpenSslError("EVP_CIPHER_CTX_copy");
  unsigned char tag[kTagBytes];  // the ctrl takes a non-const pointer
  std::memcpy(tag, sealed.data(), kTagBytes);
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagBytes, tag) != 1) return OpenSslError("set tag");
  RETURN_IF_ERROR(AddAssociatedData(ctx, associated_data, EVP_DecryptUpdate));

  std::string plaintext(ciphertext.size(), '\0');
  auto* out = reinterpret_cast<unsigned char*>(plaintext.data());
  int len = 0;
  int final_len = 0;
  // A tag mismatch makes the update fail; OpenSSL has already wiped `out` then.
  bool authentic =
      EVP_DecryptUpdate(ctx, out, &len, Bytes(ciphertext), static_cast<int>(ciphertext.size())) == 1 &&
      static_cast<size_t>(len) == ciphertext.size() && EVP_DecryptFinal_ex(ctx, out + len, &final_len) == 1;
  if (!authentic) {
    ERR_clear_error();
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return Status::InvalidInput(
        "AES-SIV: authentication failed (wrong key, wrong associated data, or the value was altered)");
  }
  return plaintext;
}

}  // namespace sqs2pg::transform
