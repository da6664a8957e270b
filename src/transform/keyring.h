#pragma once
// The masking keys. Text form, one key a line ('#' comments and blank lines ignored):
//   sqs2pg-key-v1 <key-id> <key: 128 lowercase hex chars = a 64-byte AES-256-SIV key>
// The key id is derived from the key (first 8 hex chars of HMAC-SHA256(key, "sqs2pg key id v1")), so a
// damaged line is caught on load instead of silently masking with the wrong key. The first key masks new
// values; every key can unmask. Rotation: prepend a new key and keep the old ones while data uses them.
// No error message ever contains key material.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/status.h"

namespace sqs2pg::transform {

// The material is wiped (OPENSSL_cleanse) before its memory is freed or overwritten, so a freed
// key does not linger in the heap for a core dump or a later allocation to reveal.
struct Key {
  std::string id;        // kKeyIdChars lowercase hex chars; public (every masked value starts with it)
  std::string material;  // kKeyBytes raw bytes; secret

  Key() = default;
  Key(std::string key_id, std::string key_material)
      : id(std::move(key_id)), material(std::move(key_material)) {}
  Key(const Key&) = default;
  Key(Key&& other) noexcept;
  Key& operator=(const Key& other);
  Key& operator=(Key&& other) noexcept;
  ~Key();
};

// Holds at least one key: every factory refuses an empty keyring, so active() is always valid.
class Keyring {
 public:
  static constexpr size_t kKeyBytes = 64;
  static constexpr size_t kKeyIdChars = 8;
  static constexpr std::string_view kLineTag = "sqs2pg-key-v1";

  // The id a key gets: first kKeyIdChars hex chars of HMAC-SHA256(material, "sqs2pg key id v1").
  static std::string KeyIdFor(std::string_view material);
  // A Key from raw material (kKeyBytes bytes), with its derived id.
  static Result<Key> KeyFromMaterial(std::string_view material);

  // One fresh random key (RAND_bytes).
  static Result<Keyring> Generate();
  // The text form above; errors name the line number.
  static Result<Keyring> Parse(std::string_view text);
  // Parse a file. Refuses a file that group or others may read or write (the message says to chmod 600).
  static Result<Keyring> LoadFile(const std::string& path);
  // Parse the value of an environment variable (same format, no permission check); `variable` names it
  // in errors.
  static Result<Keyring> FromEnvironmentValue(std::string_view value,
                                              std::string_view variable = "SQS2PG_KEYS");

  // The text form, with a header comment explaining it. Contains key material: treat it as a secret.
  std::string Serialize() const;
  // Creates `path` with mode 0600 (O_CREAT | O_EXCL): refuses to overwrite an existing file.
  Status WriteNewFile(const std::string& path) const;
  // Atomically replaces an existing key file with this keyring (mode 0600). For rotation only:
  // the caller must have loaded the file first, so no key in it is lost.
  Status ReplaceFile(const std::string& path) const;

  // The key that masks new values.
  const Key& active() const { return keys_.front(); }
  // nullptr if no key has this id.
  const Key* Find(std::string_view id) const;
  // Newest first.
  std::span<const Key> keys() const { return keys_; }

  // Rotation: `key` becomes the active key; the others stay for unmasking. Refuses an id already present.
  Status Prepend(Key key);

 private:
  explicit Keyring(std::vector<Key> keys) : keys_(std::move(keys)) {}

  static Result<Keyring> ParseFrom(std::string_view text, std::string_view origin);

  std::vector<Key> keys_;
};

}  // namespace sqs2pg::transform
