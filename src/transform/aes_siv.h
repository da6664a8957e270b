#pragma once
// RFC 5297 AES-SIV: deterministic authenticated encryption. Equal (key, associated data, plaintext) give
// equal output, which is what lets a masked column be grouped and joined without being readable; a changed
// byte anywhere makes decryption fail instead of returning garbage.

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/status.h"

namespace sqs2pg::transform {

// One key's AES-SIV (RFC 5297: S2V over AES-CMAC, then AES-CTR), byte for byte what OpenSSL 3's
// "AES-128-SIV" / "AES-192-SIV" / "AES-256-SIV" produce. Both key halves are expanded once in Create();
// a call costs a few AES block encryptions and no allocation beyond the output.
// Not thread-safe: calls reuse the keyed OpenSSL contexts. Use one AesSiv per thread.
class AesSiv {
 public:
  // V, the synthetic IV: the first bytes of every output, and the authentication tag.
  static constexpr size_t kTagBytes = 16;

  // key: 32, 48 or 64 bytes (two AES-128/192/256 keys: the S2V/CMAC half first, then the CTR half).
  static Result<AesSiv> Create(std::string_view key);

  AesSiv(AesSiv&&) noexcept;
  AesSiv& operator=(AesSiv&&) noexcept;
  ~AesSiv();

  // Returns V || C (kTagBytes + plaintext.size() bytes), the RFC 5297 layout.
  // Each associated_data element is one S2V component, in order: no components and one empty component are
  // different inputs. REQUIRES: plaintext is not empty. RFC 5297 allows an empty one, but OpenSSL 3.0's own
  // AES-SIV cannot seal or open it, so refusing keeps every output readable by a plain OpenSSL 3.0 consumer.
  Result<std::string> Encrypt(std::string_view plaintext, std::span<const std::string_view> associated_data);
  // Encrypt into `out` (its old contents are replaced), so a caller can reuse the buffer's capacity.
  Status EncryptInto(std::string_view plaintext, std::span<const std::string_view> associated_data,
                     std::string& out);

  // Reverses Encrypt. kInvalidInput if `sealed` is too short or fails authentication (other key,
  // other associated data, or altered bytes); no plaintext is returned then.
  Result<std::string> Decrypt(std::string_view sealed, std::span<const std::string_view> associated_data);

 private:
  struct Impl;
  explicit AesSiv(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace sqs2pg::transform
