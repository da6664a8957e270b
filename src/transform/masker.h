#pragma once
// Deterministic masking of PII values (ip, device_id) and of reject bodies, one mode per field.
//
//   siv v2   <key-id> ".v2." base64url(V || C)   AES-256-SIV, associated data = (key id, field name).
//            Reversible. The field name ("ip", "device_id", "body") is bound in, so equal text in two
//            fields masks differently. An ip is encrypted in its binary form (4 or 16 bytes), so the
//            masked length says only IPv4 or IPv6, not how long the address's text was.
//   siv v1   <key-id> "." base64url(V || C)      associated data = the key id, plaintext = the text.
//            Written before v2; still unmasked, never written.
//   hmac     <key-id> ".hmac." base64url(HMAC-SHA256(key, field || 0x00 || value))   One-way (no
//            decryption); an ip is hashed in its binary form. Not secret from a key holder, who can
//            hash candidates and compare: all 2^32 IPv4 addresses, or any small space of ids, are
//            enumerated in minutes. It hides values from readers without the key, as siv does.
//   ipcrypt-deterministic, ipcrypt-pfx, cryptopan (ip only)   a bare IP address (see ip_ciphers.h);
//            the keyring's field line says which key made it.
// Deterministic, so equal values stay equal (countable, joinable) without being readable. A key id
// names the key that unmasks the value after rotation, and is bound into siv ciphertexts: editing it
// makes Unmask fail rather than decrypt under another key.

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/status.h"
#include "transform/aes_siv.h"
#include "transform/ip_address.h"
#include "transform/ip_ciphers.h"
#include "transform/keyed_hmac.h"
#include "transform/keyring.h"

namespace sqs2pg::transform {

// Which mode each field masks with. Unset: the mode of the keyring's key for the field. Set: the
// newest key of that mode the keyring lists for the field (an error if there is none).
struct MaskerOptions {
  std::optional<MaskMode> ip_mode;
  std::optional<MaskMode> device_id_mode;
};

// Not thread-safe: every key reuses its keyed OpenSSL contexts and scratch buffers.
// Build one Masker per thread.
class Masker {
  struct Keyed;  // one key with its keyed OpenSSL state (masker.cc)

 public:
  static Result<Masker> Create(const Keyring& keyring, const MaskerOptions& options = {});

  Masker(Masker&&) noexcept;
  Masker& operator=(Masker&&) noexcept;
  Masker(const Masker&) = delete;  // owns keyed OpenSSL state; build another from the Keyring instead
  Masker& operator=(const Masker&) = delete;
  ~Masker();

  // A reject body (or any free text): siv v2 under the keyring's first siv key, bound to "body".
  // kInvalidInput for an empty value (AES-SIV here cannot seal one).
  Result<std::string> Mask(std::string_view plaintext);
  // Mask into `out` (old contents replaced), reusing its capacity.
  Status MaskInto(std::string_view plaintext, std::string& out);

  // A field's value in the field's mode. An ip is parsed (any accepted spelling) and masked in its
  // canonical form; kInvalidInput if it is not an address.
  Result<std::string> MaskValue(MaskField field, std::string_view value);
  Status MaskValueInto(MaskField field, std::string_view value, std::string& out);
  // The per-row hot path for ip.
  Status MaskIpInto(const IpAddress& ip, std::string& out);
  // For a field masked with hmac: the hmac of any text (an ip that is not an address, a value that
  // is not a string), bound to the field as MaskValue's is. kInvalidInput for another mode. A
  // reject's sealed body holds this in place of the field's value (issue 17 item 9).
  Status HashTextInto(MaskField field, std::string_view text, std::string& out);
  // Prefix-preserving modes only: the masked network of the first `bits` bits of `ip`, as
  // "100.9.15.0/24". Every address in ip/bits masks into it.
  Result<std::string> MaskNetwork(const IpAddress& ip, int bits);

  // Reads the format from the value (a key id in front, or a bare address for the ip field's
  // address-valued keys). Errors never contain the value: malformed value, unknown key id,
  // authentication failure, or a one-way (hmac) value, which cannot be decrypted (only guessed and
  // checked, by a key holder: see the format above).
  // `address_key_id`, for a bare address only: the key that made it (a table's masked_ip_key_id),
  // instead of the keyring's field line. A value with a key id in front always uses that key.
  Result<std::string> Unmask(std::string_view masked, std::string_view address_key_id = {});

  // A mapping's masked column (issue 18): its key is chosen once, when the mapping is compiled, and
  // every value is masked with it. Valid as long as this Masker.
  class ColumnKey {
   public:
    const std::string& id() const;
    MaskMode mode() const;

   private:
    friend class Masker;
    explicit ColumnKey(Keyed* key) : key_(key) {}
    Keyed* key_;
  };
  // The key for the column whose values bind `field` (siv's associated data, hmac's prefix). For the
  // login fields "ip" and "device_id": the key MaskValue uses, when `mode` is unset or is its mode.
  // A mapped column with a keyring line (keygen --column): that line's newest key, which must be of
  // `mode` when one is given. Otherwise the newest key of `mode` in the keyring (unset: the active
  // siv key). kInvalidInput when the keyring has no key of that mode.
  Result<ColumnKey> KeyForColumn(std::string_view field, std::optional<MaskMode> mode) const;
  // siv v2 or hmac of `value`, bound to `field` exactly as MaskValue binds "ip" or "device_id", so
  // the login mapping's values equal LoginTransform's. Address-valued keys mask only addresses.
  Status MaskColumnInto(ColumnKey key, std::string_view field, std::string_view value, std::string& out);
  // An address in any mode: siv and hmac over its binary form, as MaskIpInto.
  Status MaskColumnIpInto(ColumnKey key, std::string_view field, const IpAddress& ip, std::string& out);
  // The longest text value whose masked form fits max_masked_chars (SIZE_MAX: any; 0: none).
  size_t MaxColumnBytes(ColumnKey key, size_t max_masked_chars) const;
  // A siv v2 value of a mapping column: Unmask tries the login fields only, and the column name is
  // not in the value.
  Result<std::string> UnmaskColumn(std::string_view masked, std::string_view field);

  MaskMode mode(MaskField field) const;
  const std::string& key_id(MaskField field) const;
  // The ip field's address-valued keys (the keyring's field line), the one in use first.
  std::vector<std::string> address_key_ids() const;
  // The key that seals reject bodies.
  const std::string& active_key_id() const;

  // Characters Mask() produces for a body of this many bytes.
  static size_t MaskedLength(size_t plaintext_bytes);
  // The longest body whose siv form fits in max_masked_chars (a varchar(n) column); 0 if none does.
  static size_t MaxPlaintextBytes(size_t max_masked_chars);
  // The longest value of `field` whose masked form fits max_masked_chars, in this masker's mode for it
  // (SIZE_MAX for a fixed-size form that fits, 0 if it does not).
  size_t MaxFieldBytes(MaskField field, size_t max_masked_chars) const;

 private:
  Masker(std::vector<std::unique_ptr<Keyed>> keys, std::array<Keyed*, 2> fields, Keyed* body,
         std::vector<Keyed*> address_keys);

  Status SealV2(Keyed& key, std::string_view field, std::string_view plaintext, std::string& out);
  Status Hash(Keyed& key, std::string_view field, std::string_view plaintext, std::string& out);
  Result<std::string> UnmaskAddress(const IpAddress& masked, std::string_view key_id);
  Keyed* FindKey(std::string_view id) const;  // nullptr if the keyring has no such key

  std::vector<std::unique_ptr<Keyed>> keys_;  // keyring order
  std::array<Keyed*, 2> fields_;              // per MaskField: the key that masks it
  Keyed* body_;                               // the first siv key
  // Mapped columns with a keyring line (sqs2pg-column): the key that masks each.
  std::vector<std::pair<std::string, Keyed*>> columns_;
  std::vector<Keyed*> address_keys_;  // the ip field's address-valued keys, the one in use first
  std::string sealed_;                // V || C scratch, reused across calls
};

}  // namespace sqs2pg::transform
