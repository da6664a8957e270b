#include "transform/keyed_hmac.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "transform/aes_ecb.h"

namespace sqs2pg::transform {
namespace {

struct MacFree {
  void operator()(EVP_MAC* m) const noexcept { EVP_MAC_free(m); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};

}  // namespace

struct KeyedHmac::Impl {
  std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx;
};

KeyedHmac::KeyedHmac(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KeyedHmac::KeyedHmac(KeyedHmac&&) noexcept = default;
KeyedHmac& KeyedHmac::operator=(KeyedHmac&&) noexcept = default;
KeyedHmac::~KeyedHmac() = default;

Result<KeyedHmac> KeyedHmac::Create(std::string_view key) {
  std::unique_ptr<EVP_MAC, MacFree> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) return OpenSslError("HMAC", "fetch");
  auto impl = std::make_unique<Impl>();
  impl->ctx.reset(EVP_MAC_CTX_new(mac.get()));
  if (!impl->ctx) return OpenSslError("HMAC", "EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(impl->ctx.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) !=
      1) {
    return OpenSslError("HMAC", "init");
  }
  return KeyedHmac(std::move(impl));
}

Status KeyedHmac::AppendMac(std::initializer_list<std::string_view> parts, std::string& out) {
  EVP_MAC_CTX* ctx = impl_->ctx.get();
  // A null key re-arms the context with the key it already holds: no re-keying per value.
  if (EVP_MAC_init(ctx, nullptr, 0, nullptr) != 1) return OpenSslError("HMAC", "init");
  for (std::string_view part : parts) {
    if (EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(part.data()), part.size()) != 1) {
      return OpenSslError("HMAC", "update");
    }
  }
  unsigned char mac[kMacBytes];
  size_t len = 0;
  if (EVP_MAC_final(ctx, mac, &len, sizeof mac) != 1 || len != kMacBytes)
    return OpenSslError("HMAC", "final");
  out.append(reinterpret_cast<const char*>(mac), len);
  return Status::Ok();
}

}  // namespace sqs2pg::transform
