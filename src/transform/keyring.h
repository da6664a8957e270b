#pragma once
// The masking keys. Text form, one entry a line ('#' comments and blank lines ignored):
//   sqs2pg-key-v1 <key-id> <key: 128 lowercase hex chars = a 64-byte AES-256-SIV key>
//   sqs2pg-key-v2 <key-id> <mode> <key: lowercase hex, as many bytes as the mode needs>
//   sqs2pg-key-v3 <key-id> cryptopan <key>   a Crypto-PAn key whose IPv6 addresses use a key and pad
//                                           of their own (issue 17 item 11); a v2 cryptopan line is
//                                           a key from before, whose IPv6 shared IPv4's tree
//   sqs2pg-field <ip|device_id> <key-id> [<older key-id>...]
//   sqs2pg-column <column> <key-id> [<older key-id>...]     (a mapped column: docs/mapping.md)
// Modes (MaskMode): siv (64 bytes), ipcrypt-deterministic (16), ipcrypt-pfx (32), cryptopan (32),
// hmac (32). An siv key is always written as a v1 line, so older sqs2pg versions still read it.
// The key id is derived from the key (first 8 hex chars of HMAC-SHA256(key, "sqs2pg key id v1"), or
// "sqs2pg key id v2 <mode>" for the other modes), so a damaged line is caught on load instead of
// silently masking with the wrong key.
// The first siv key masks reject bodies, and every field without a field line. A field line says which
// keys made that column's values, newest first: the first masks new values. It is the record that
// matters for address-valued modes, whose masked values are bare addresses with no room for a key id.
// Every key can unmask. Rotation: add a key in front and keep the old ones while data uses them.
// No error message ever contains key material.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/status.h"

namespace sqs2pg::transform {

enum class MaskMode : std::uint8_t { kSiv, kIpcryptDeterministic, kIpcryptPfx, kCryptoPan, kHmac };
// The masked columns a keyring can assign keys to.
enum class MaskField : std::uint8_t { kIp, kDeviceId };
constexpr std::array<MaskField, 2> kMaskFields = {MaskField::kIp, MaskField::kDeviceId};

// "siv", "ipcrypt-deterministic", "ipcrypt-pfx", "cryptopan", "hmac".
std::string_view ModeName(MaskMode mode);
std::optional<MaskMode> ParseMode(std::string_view name);
// "ip", "device_id".
std::string_view FieldName(MaskField field);
std::optional<MaskField> ParseField(std::string_view name);
size_t KeyBytesFor(MaskMode mode);
// The masked value is itself an IP address (ip only; fits an inet column).
bool AddressValued(MaskMode mode);
// Equal k-bit prefixes stay equal k-bit prefixes.
bool PrefixPreserving(MaskMode mode);

// The material is wiped (OPENSSL_cleanse) before its memory is freed or overwritten, so a freed
// key does not linger in the heap for a core dump or a later allocation to reveal.
struct Key {
  std::string id;        // kKeyIdChars lowercase hex chars; public (every masked value starts with it)
  std::string material;  // KeyBytesFor(mode) raw bytes; secret
  MaskMode mode = MaskMode::kSiv;
  // cryptopan only: a key from before issue 17 item 11, whose IPv6 addresses go through the same
  // tree, key and pad as IPv4 (so a masked IPv6 prefix told the real prefix of masked IPv4
  // addresses). Read from a v2 line and kept for unmasking; new keys keep the families apart.
  bool shared_ipv6_tree = false;

  Key() = default;
  Key(std::string key_id, std::string key_material, MaskMode key_mode = MaskMode::kSiv,
      bool shared_tree = false)
      : id(std::move(key_id)),
        material(std::move(key_material)),
        mode(key_mode),
        shared_ipv6_tree(shared_tree) {}
  Key(const Key&) = default;
  Key(Key&& other) noexcept;
  Key& operator=(const Key& other);
  Key& operator=(Key&& other) noexcept;
  ~Key();
};

// Holds at least one siv key: every factory refuses a keyring without one, so active() is always valid.
class Keyring {
 public:
  static constexpr size_t kKeyBytes = 64;
  static constexpr size_t kKeyIdChars = 8;
  static constexpr std::string_view kLineTag = "sqs2pg-key-v1";
  static constexpr std::string_view kLineTagV2 = "sqs2pg-key-v2";
  static constexpr std::string_view kLineTagV3 = "sqs2pg-key-v3";
  static constexpr std::string_view kFieldTag = "sqs2pg-field";
  static constexpr std::string_view kColumnTag = "sqs2pg-column";

  // The id a key gets: first kKeyIdChars hex chars of HMAC-SHA256(material, "sqs2pg key id v1") for
  // siv, "sqs2pg key id v2 <mode>" for the other modes.
  // A cryptopan key that keeps the families apart uses "sqs2pg key id v3 cryptopan"; one from
  // before (shared_ipv6_tree) keeps its v2 id.
  static std::string KeyIdFor(std::string_view material, MaskMode mode = MaskMode::kSiv,
                              bool shared_ipv6_tree = false);
  // A Key from raw material (KeyBytesFor(mode) bytes), with its derived id.
  static Result<Key> KeyFromMaterial(std::string_view material, MaskMode mode = MaskMode::kSiv,
                                     bool shared_ipv6_tree = false);
  // A fresh random key (RAND_bytes). ipcrypt-pfx's two halves are drawn until they differ.
  static Result<Key> GenerateKey(MaskMode mode);

  // One fresh random siv key.
  static Result<Keyring> Generate();
  // These keys, in this order; at least one must be siv. No field lines.
  static Result<Keyring> FromKeys(std::vector<Key> keys);
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

  // The first siv key: it masks reject bodies, and the fields that have no field line.
  const Key& active() const;
  // The keys that made `field`'s values, newest first; the first masks new ones. Without a field line:
  // the siv keys, in keyring order.
  std::vector<const Key*> FieldKeys(MaskField field) const;
  const Key& ActiveFor(MaskField field) const { return *FieldKeys(field).front(); }
  // Whether a field line names the field's keys.
  bool HasFieldLine(MaskField field) const { return !field_keys_[static_cast<size_t>(field)].empty(); }
  // Makes key `id` (already in the keyring) mask `field` from now on. With keep_history, the keys that
  // made the field's values so far stay listed after it (a rotation); without, a new keyring's field
  // has no values yet. Refuses an address-valued mode for device_id.
  Status AssignField(MaskField field, const std::string& id, bool keep_history = true);
  // A mapped column's keys (its sqs2pg-column line), newest first: the first masks new values.
  // Empty without a line: the mapping's mode then picks the newest key of that mode.
  std::vector<const Key*> ColumnKeys(std::string_view column) const;
  // Makes key `id` mask mapped column `column` from now on; with keep_history the column's earlier
  // keys stay listed after it. A column name is 1-63 of A-Z a-z 0-9 _ (not ip or device_id, which
  // are fields).
  Status AssignColumn(const std::string& column, const std::string& id, bool keep_history = true);
  // Every column line: (column, key ids newest first).
  const std::vector<std::pair<std::string, std::vector<std::string>>>& column_lines() const {
    return column_keys_;
  }
  // nullptr if no key has this id.
  const Key* Find(std::string_view id) const;
  // Newest first.
  std::span<const Key> keys() const { return keys_; }

  // Rotation: `key` goes in front (an siv key becomes the active key); the others stay for unmasking.
  // Refuses an id already present.
  Status Prepend(Key key);
  // A key for one mapped column only: it goes last, so it never becomes the active siv key (which
  // seals reject bodies) nor the newest key of its mode for columns without a line.
  Status Append(Key key);

 private:
  explicit Keyring(std::vector<Key> keys) : keys_(std::move(keys)) {}

  static Result<Keyring> ParseFrom(std::string_view text, std::string_view origin);
  // Prepend and Append: checks the key's id against its material and that it is new.
  Status Insert(Key key, bool in_front, std::string_view what);

  std::vector<Key> keys_;
  // Per MaskField: key ids from its field line, newest first; empty without one.
  std::array<std::vector<std::string>, kMaskFields.size()> field_keys_;
  // sqs2pg-column lines, in file order.
  std::vector<std::pair<std::string, std::vector<std::string>>> column_keys_;
};

}  // namespace sqs2pg::transform
