#include "common/digest.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <memory>
#include <new>

namespace sqs2pg {
namespace {

// OpenSSL 3 looks an algorithm up in its provider store (under a lock) every time EVP_sha256() or
// EVP_md5() is passed to a one-shot call, and HMAC() also fetches the MAC and builds and frees a
// context each call: that was more than half of signing a request (4.5 µs) and of checking a
// body's MD5. The algorithms are fetched once, and each thread reuses its contexts.
const EVP_MD* FetchedMd(const char* name) {
  const EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
  if (md == nullptr) throw std::bad_alloc();
  return md;
}

const EVP_MD* Sha256Md() {
  static const EVP_MD* md = FetchedMd("SHA256");
  return md;
}

const EVP_MD* Md5Md() {
  static const EVP_MD* md = FetchedMd("MD5");
  return md;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* ctx) const noexcept { EVP_MAC_CTX_free(ctx); }
};

std::string Digest(const EVP_MD* md, std::string_view data) {
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // These only fail on allocation failure inside OpenSSL; treat that like bad_alloc.
  if (!ctx || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out, &len) != 1) {
    throw std::bad_alloc();
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

EVP_MAC_CTX* NewHmacSha256Ctx() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) throw std::bad_alloc();
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  if (ctx == nullptr) throw std::bad_alloc();
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(ctx, params) != 1) {
    EVP_MAC_CTX_free(ctx);
    throw std::bad_alloc();
  }
  return ctx;
}

}  // namespace

std::string Sha256(std::string_view data) { return Digest(Sha256Md(), data); }

std::string Md5(std::string_view data) { return Digest(Md5Md(), data); }

std::string HmacSha256(std::string_view key, std::string_view data) {
  thread_local std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx(NewHmacSha256Ctx());
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  // EVP_MAC_init with a key starts a new MAC under that key (the digest stays as set). A null key
  // would mean "the previous key": an empty one must still point somewhere.
  static const unsigned char kEmpty = 0;
  const auto* key_bytes = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
  if (EVP_MAC_init(ctx.get(), key_bytes, key.size(), nullptr) != 1 ||
      EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1 ||
      EVP_MAC_final(ctx.get(), out, &len, sizeof(out)) != 1) {
    throw std::bad_alloc();
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

}  // namespace sqs2pg
