#include "transform/masker.h"

#include <algorithm>
#include <optional>

#include "common/encoding.h"

namespace sqs2pg::transform {
namespace {

constexpr char kSeparator = '.';
constexpr size_t kPrefixChars = Keyring::kKeyIdChars + 1;  // "<key-id>."

constexpr size_t Base64UrlChars(size_t bytes) { return (bytes * 4 + 2) / 3; }

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Status Malformed() {
  return Status::InvalidInput("unmask: not a masked value (expected <key-id>.<base64url>)");
}

}  // namespace

Result<Masker> Masker::Create(const Keyring& keyring) {
  std::vector<KeyedSiv> keys;
  keys.reserve(keyring.keys().size());
  for (const Key& key : keyring.keys()) {
    Result<AesSiv> siv = AesSiv::Create(key.material);
    if (!siv.ok()) return siv.status().Annotate("masking key " + key.id);
    keys.push_back(KeyedSiv{key.id, std::move(siv).value()});
  }
  return Masker(std::move(keys));
}

Result<std::string> Masker::Mask(std::string_view plaintext) {
  std::string out;
  RETURN_IF_ERROR(MaskInto(plaintext, out));
  return out;
}

Status Masker::MaskInto(std::string_view plaintext, std::string& out) {
  out.clear();
  if (plaintext.empty()) return Status::InvalidInput("mask: refusing an empty value");
  KeyedSiv& active = keys_.front();
  const std::string_view associated_data[] = {active.id};
  RETURN_IF_ERROR(active.siv.EncryptInto(plaintext, associated_data, sealed_));
  out.reserve(MaskedLength(plaintext.size()));
  out.append(active.id).push_back(kSeparator);
  AppendBase64Url(out, sealed_);
  return Status::Ok();
}

Result<std::string> Masker::Unmask(std::string_view masked) {
  if (masked.size() <= kPrefixChars || masked[Keyring::kKeyIdChars] != kSeparator) return Malformed();
  std::string_view id = masked.substr(0, Keyring::kKeyIdChars);
  // Checked first so that the id may be quoted below: a hex id is not a fragment of someone's ip.
  if (!IsLowerHex(id)) return Malformed();
  auto key = std::find_if(keys_.begin(), keys_.end(), [&](const KeyedSiv& k) { return k.id == id; });
  if (key == keys_.end()) {
    return Status::NotFound("unmask: no key with id " + std::string(id) +
                            " in the keyring (removed by a rotation, or the wrong key file?)");
  }
  std::optional<std::string> sealed = Base64UrlDecode(masked.substr(kPrefixChars));
  if (!sealed) return Malformed();
  const std::string_view associated_data[] = {key->id};
  Result<std::string> plaintext = key->siv.Decrypt(*sealed, associated_data);
  if (!plaintext.ok()) return plaintext.status().Annotate("unmask with key " + key->id);
  return plaintext;
}

size_t Masker::MaskedLength(size_t plaintext_bytes) {
  return kPrefixChars + Base64UrlChars(AesSiv::kTagBytes + plaintext_bytes);
}

size_t Masker::MaxPlaintextBytes(size_t max_masked_chars) {
  if (max_masked_chars <= kPrefixChars) return 0;
  // floor(3L/4) bytes are the most whose unpadded base64 fits in L characters.
  size_t sealed_bytes = (max_masked_chars - kPrefixChars) * 3 / 4;
  return sealed_bytes > AesSiv::kTagBytes ? sealed_bytes - AesSiv::kTagBytes : 0;
}

}  // namespace sqs2pg::transform
