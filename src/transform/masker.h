#pragma once
// Reversible, deterministic masking of PII values (ip, device_id).
//   masked = <key-id> "." base64url-no-padding(V || C)      AES-256-SIV, associated data = the key id
// Deterministic, so equal values stay equal (countable, joinable) without being readable. The key id names
// the key that can unmask the value after rotation, and is bound into the ciphertext: editing it makes
// Unmask fail rather than decrypt under another key.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/status.h"
#include "transform/aes_siv.h"
#include "transform/keyring.h"

namespace sqs2pg::transform {

// Not thread-safe: every key's AesSiv reuses its keyed OpenSSL contexts and scratch buffers.
// Build one Masker per thread.
class Masker {
 public:
  static Result<Masker> Create(const Keyring& keyring);

  Masker(Masker&&) noexcept = default;
  Masker& operator=(Masker&&) noexcept = default;
  Masker(const Masker&) = delete;  // owns keyed OpenSSL state; build another from the Keyring instead
  Masker& operator=(const Masker&) = delete;

  // Under the active (first) key. Equal inputs give equal outputs.
  // kInvalidInput for an empty plaintext (ip and device_id are never empty; AES-SIV here cannot seal one).
  Result<std::string> Mask(std::string_view plaintext);
  // Mask into `out` (old contents replaced), reusing its capacity: for the per-row hot path.
  Status MaskInto(std::string_view plaintext, std::string& out);

  // Finds the key by the id in front. Errors (never containing the value): malformed value, unknown key id,
  // authentication failure.
  Result<std::string> Unmask(std::string_view masked);

  const std::string& active_key_id() const { return keys_.front().id; }

  // Characters Mask() produces for a plaintext of this many bytes.
  static size_t MaskedLength(size_t plaintext_bytes);
  // The longest plaintext whose masked form fits in max_masked_chars (a varchar(n) column); 0 if none does.
  static size_t MaxPlaintextBytes(size_t max_masked_chars);

 private:
  struct KeyedSiv {
    std::string id;
    AesSiv siv;
  };
  explicit Masker(std::vector<KeyedSiv> keys) : keys_(std::move(keys)) {}

  std::vector<KeyedSiv> keys_;  // keyring order: keys_.front() masks
  std::string sealed_;          // V || C scratch, reused across calls
};

}  // namespace sqs2pg::transform
