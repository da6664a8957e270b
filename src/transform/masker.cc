#include "transform/masker.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "common/encoding.h"

namespace sqs2pg::transform {
namespace {

constexpr char kSeparator = '.';
constexpr size_t kPrefixChars = Keyring::kKeyIdChars + 1;  // "<key-id>."
constexpr std::string_view kV2Tag = "v2.";
constexpr std::string_view kHmacTag = "hmac.";
constexpr std::string_view kBodyField = "body";
// Every field siv v2 binds, tried in turn when unmasking (the value does not say which it is).
constexpr std::string_view kSivFields[] = {"ip", "device_id", kBodyField};
// The longest text an address-valued mode produces (an IPv6 address).
constexpr size_t kMaxAddressChars = 39;

constexpr size_t Base64UrlChars(size_t bytes) { return (bytes * 4 + 2) / 3; }
constexpr size_t kHmacChars = kPrefixChars + kHmacTag.size() + Base64UrlChars(KeyedHmac::kMacBytes);

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Status Malformed() {
  return Status::InvalidInput(
      "unmask: not a masked value (expected <key-id>.v2.<base64url>, <key-id>.<base64url> or an IP address)");
}

}  // namespace

struct Masker::Keyed {
  std::string id;
  MaskMode mode;
  std::optional<AesSiv> siv;
  std::unique_ptr<IpCipher> ip;
  std::optional<KeyedHmac> hmac;

  static Result<std::unique_ptr<Keyed>> Create(const Key& key) {
    auto k = std::make_unique<Keyed>();
    k->id = key.id;
    k->mode = key.mode;
    switch (key.mode) {
      case MaskMode::kSiv: {
        ASSIGN_OR_RETURN(AesSiv siv, AesSiv::Create(key.material));
        k->siv.emplace(std::move(siv));
        break;
      }
      case MaskMode::kHmac: {
        ASSIGN_OR_RETURN(KeyedHmac hmac, KeyedHmac::Create(key.material));
        k->hmac.emplace(std::move(hmac));
        break;
      }
      case MaskMode::kCryptoPan: {
        // Keys from before issue 17 item 11 keep their one tree, so their values still unmask.
        ASSIGN_OR_RETURN(k->ip, key.shared_ipv6_tree ? MakeCryptoPan(key.material)
                                                     : MakeCryptoPanFamiliesApart(key.material));
        break;
      }
      case MaskMode::kIpcryptDeterministic: {
        ASSIGN_OR_RETURN(k->ip, MakeIpcryptDeterministic(key.material));
        break;
      }
      case MaskMode::kIpcryptPfx: {
        ASSIGN_OR_RETURN(k->ip, MakeIpcryptPfx(key.material));
        break;
      }
    }
    return k;
  }
};

Masker::Masker(std::vector<std::unique_ptr<Keyed>> keys, std::array<Keyed*, 2> fields, Keyed* body,
               std::vector<Keyed*> address_keys)
    : keys_(std::move(keys)), fields_(fields), body_(body), address_keys_(std::move(address_keys)) {}
Masker::Masker(Masker&&) noexcept = default;
Masker& Masker::operator=(Masker&&) noexcept = default;
Masker::~Masker() = default;

Result<Masker> Masker::Create(const Keyring& keyring, const MaskerOptions& options) {
  std::vector<std::unique_ptr<Keyed>> keys;
  keys.reserve(keyring.keys().size());
  for (const Key& key : keyring.keys()) {
    auto keyed = Keyed::Create(key);
    if (!keyed.ok()) return keyed.status().Annotate("masking key " + key.id);
    keys.push_back(std::move(keyed).value());
  }
  auto keyed_for = [&](const Key* key) {
    return std::find_if(keys.begin(), keys.end(), [&](const auto& k) { return k->id == key->id; })->get();
  };

  std::array<Keyed*, 2> fields{};
  for (MaskField field : kMaskFields) {
    std::optional<MaskMode> wanted = field == MaskField::kIp ? options.ip_mode : options.device_id_mode;
    std::vector<const Key*> candidates = keyring.FieldKeys(field);
    const Key* chosen = candidates.front();
    if (wanted) {
      auto it = std::find_if(candidates.begin(), candidates.end(),
                             [&](const Key* k) { return k->mode == *wanted; });
      if (it == candidates.end()) {
        return Status::InvalidInput(fmt::format(
            "the keyring has no {} key for field {}; add one with: sqs2pg keygen --rotate --{}-mask {} --out "
            "KEYFILE",
            ModeName(*wanted), FieldName(field), field == MaskField::kIp ? "ip" : "device-id",
            ModeName(*wanted)));
      }
      chosen = *it;
    }
    if (field == MaskField::kDeviceId && AddressValued(chosen->mode)) {
      return Status::InvalidInput(
          fmt::format("{} is for ip only: device_id masks with siv or hmac", ModeName(chosen->mode)));
    }
    fields[static_cast<size_t>(field)] = keyed_for(chosen);
  }

  // Bare addresses carry no key id: the key in use first, then the rest of the field's record, then
  // any other address-valued key.
  std::vector<Keyed*> address_keys;
  auto add_address_key = [&](Keyed* k) {
    if (AddressValued(k->mode) &&
        std::find(address_keys.begin(), address_keys.end(), k) == address_keys.end())
      address_keys.push_back(k);
  };
  add_address_key(fields[static_cast<size_t>(MaskField::kIp)]);
  for (const Key* key : keyring.FieldKeys(MaskField::kIp)) add_address_key(keyed_for(key));
  for (auto& k : keys) add_address_key(k.get());

  Keyed* body = keyed_for(&keyring.active());
  std::vector<std::pair<std::string, Keyed*>> columns;
  for (const auto& [column, ids] : keyring.column_lines()) {
    columns.emplace_back(column, keyed_for(keyring.ColumnKeys(column).front()));
  }
  Masker masker(std::move(keys), fields, body, std::move(address_keys));
  masker.columns_ = std::move(columns);
  return masker;
}

MaskMode Masker::mode(MaskField field) const { return fields_[static_cast<size_t>(field)]->mode; }
const std::string& Masker::key_id(MaskField field) const { return fields_[static_cast<size_t>(field)]->id; }
const std::string& Masker::active_key_id() const { return body_->id; }

Status Masker::SealV2(Keyed& key, std::string_view field, std::string_view plaintext, std::string& out) {
  out.clear();
  if (plaintext.empty()) return Status::InvalidInput("mask: refusing an empty value");
  const std::string_view associated_data[] = {key.id, field};
  RETURN_IF_ERROR(key.siv->EncryptInto(plaintext, associated_data, sealed_));
  out.reserve(kPrefixChars + kV2Tag.size() + Base64UrlChars(sealed_.size()));
  out.append(key.id).push_back(kSeparator);
  out.append(kV2Tag);
  AppendBase64Url(out, sealed_);
  return Status::Ok();
}

Status Masker::Hash(Keyed& key, std::string_view field, std::string_view plaintext, std::string& out) {
  out.clear();
  if (plaintext.empty()) return Status::InvalidInput("mask: refusing an empty value");
  sealed_.clear();
  // The NUL ends the field name, so ("ip", "x") and ("i", "px") never hash alike.
  RETURN_IF_ERROR(key.hmac->AppendMac({field, std::string_view("\0", 1), plaintext}, sealed_));
  out.reserve(kHmacChars);
  out.append(key.id).push_back(kSeparator);
  out.append(kHmacTag);
  AppendBase64Url(out, sealed_);
  return Status::Ok();
}

Result<std::string> Masker::Mask(std::string_view plaintext) {
  std::string out;
  RETURN_IF_ERROR(MaskInto(plaintext, out));
  return out;
}

Status Masker::MaskInto(std::string_view plaintext, std::string& out) {
  return SealV2(*body_, kBodyField, plaintext, out);
}

Result<std::string> Masker::MaskValue(MaskField field, std::string_view value) {
  std::string out;
  RETURN_IF_ERROR(MaskValueInto(field, value, out));
  return out;
}

Status Masker::MaskValueInto(MaskField field, std::string_view value, std::string& out) {
  if (field == MaskField::kIp) {
    std::optional<IpAddress> ip = ParseIp(value);
    if (!ip) return Status::InvalidInput("mask: not an IPv4 or IPv6 address");
    return MaskIpInto(*ip, out);
  }
  Keyed& key = *fields_[static_cast<size_t>(field)];
  if (key.mode == MaskMode::kHmac) return Hash(key, FieldName(field), value, out);
  return SealV2(key, FieldName(field), value, out);
}

Status Masker::HashTextInto(MaskField field, std::string_view text, std::string& out) {
  Keyed& key = *fields_[static_cast<size_t>(field)];
  if (key.mode != MaskMode::kHmac) return Status::InvalidInput("mask: the field is not masked with hmac");
  return Hash(key, FieldName(field), text, out);
}

Status Masker::MaskIpInto(const IpAddress& ip, std::string& out) {
  Keyed& key = *fields_[static_cast<size_t>(MaskField::kIp)];
  switch (key.mode) {
    case MaskMode::kSiv:
      return SealV2(key, "ip", ip.Binary(), out);
    case MaskMode::kHmac:
      return Hash(key, "ip", ip.Binary(), out);
    default:
      break;
  }
  ASSIGN_OR_RETURN(IpAddress masked, key.ip->Encrypt(ip));
  out.clear();
  AppendIp(out, masked);
  return Status::Ok();
}

Result<std::string> Masker::MaskNetwork(const IpAddress& ip, int bits) {
  Keyed& key = *fields_[static_cast<size_t>(MaskField::kIp)];
  if (!PrefixPreserving(key.mode)) {
    return Status::InvalidInput(fmt::format(
        "--prefix needs a prefix-preserving ip mode (ipcrypt-pfx or cryptopan); the ip key {} is {}", key.id,
        ModeName(key.mode)));
  }
  if (bits < 0 || bits > ip.bits()) {
    return Status::InvalidInput(
        fmt::format("--prefix must be 0 to {} for an IPv{} address", ip.bits(), ip.v4 ? 4 : 6));
  }
  ASSIGN_OR_RETURN(IpAddress masked, key.ip->Encrypt(NetworkOf(ip, bits)));
  return fmt::format("{}/{}", FormatIp(NetworkOf(masked, bits)), bits);
}

std::vector<std::string> Masker::address_key_ids() const {
  std::vector<std::string> ids;
  for (const Keyed* key : address_keys_) ids.push_back(key->id);
  return ids;
}

Masker::Keyed* Masker::FindKey(std::string_view id) const {
  auto it = std::find_if(keys_.begin(), keys_.end(), [&](const auto& k) { return k->id == id; });
  return it == keys_.end() ? nullptr : it->get();
}

Result<std::string> Masker::UnmaskAddress(const IpAddress& masked, std::string_view key_id) {
  Keyed* key = nullptr;
  if (!key_id.empty()) {
    // The table's masked_ip_key_id column said which key made this address.
    key = FindKey(key_id);
    if (key == nullptr) return Status::NotFound(fmt::format("unmask: key {} is not in the keyring", key_id));
    if (!key->ip) {
      return Status::InvalidInput(
          fmt::format("unmask: key {} is a {} key; a bare address needs an "
                      "address-valued one (ipcrypt-deterministic, ipcrypt-pfx, cryptopan)",
                      key->id, ModeName(key->mode)));
    }
  } else if (address_keys_.empty()) {
    return Status::InvalidInput(
        "unmask: the value is a bare IP address, but the keyring has no address-valued key "
        "(ipcrypt-deterministic, ipcrypt-pfx or cryptopan) for the ip field");
  } else if (address_keys_.size() > 1) {
    // Issue 17 item 12: an address-valued mode has no authentication, so decrypting with the wrong
    // key answers with a plausible wrong address. With several such keys, which one made this
    // value is not known: refuse rather than guess.
    std::string ids;
    for (const Keyed* k : address_keys_) ids += (ids.empty() ? "" : ", ") + k->id;
    return Status::InvalidInput(fmt::format(
        "unmask: the value is a bare address and the keyring holds {} address-valued keys ({}); which one "
        "made it is not known, and a wrong key would give a wrong address: name it with --address-key-id "
        "(the row's masked_ip_key_id)",
        address_keys_.size(), ids));
  } else {
    key = address_keys_.front();  // the only address-valued key: no other could have made it
  }
  Result<IpAddress> plain = key->ip->Decrypt(masked);
  if (!plain.ok()) return plain.status().Annotate("unmask with key " + key->id);
  return FormatIp(*plain);
}

Result<std::string> Masker::Unmask(std::string_view masked, std::string_view address_key_id) {
  if (std::optional<IpAddress> ip = ParseIp(masked)) return UnmaskAddress(*ip, address_key_id);
  if (masked.size() <= kPrefixChars || masked[Keyring::kKeyIdChars] != kSeparator) return Malformed();
  std::string_view id = masked.substr(0, Keyring::kKeyIdChars);
  // Checked first so that the id may be quoted below: a hex id is not a fragment of someone's ip.
  if (!IsLowerHex(id)) return Malformed();
  Keyed* found = FindKey(id);
  if (found == nullptr) {
    return Status::NotFound("unmask: no key with id " + std::string(id) +
                            " in the keyring (removed by a rotation, or the wrong key file?)");
  }
  Keyed& key = *found;
  std::string_view rest = masked.substr(kPrefixChars);
  if (rest.starts_with(kHmacTag) || key.mode == MaskMode::kHmac) {
    return Status::InvalidInput("unmask: this value was masked with hmac (key " + key.id +
                                "), which is one-way: it cannot be decrypted, with this key or any other. "
                                "Mask a candidate value and compare instead");
  }
  if (key.mode != MaskMode::kSiv) return Malformed();
  const bool v2 = rest.starts_with(kV2Tag);
  std::optional<std::string> sealed = Base64UrlDecode(v2 ? rest.substr(kV2Tag.size()) : rest);
  if (!sealed) return Malformed();
  if (!v2) {
    const std::string_view associated_data[] = {key.id};
    Result<std::string> plaintext = key.siv->Decrypt(*sealed, associated_data);
    if (!plaintext.ok()) return plaintext.status().Annotate("unmask with key " + key.id);
    return plaintext;
  }
  Status last;
  for (std::string_view field : kSivFields) {
    const std::string_view associated_data[] = {key.id, field};
    Result<std::string> plaintext = key.siv->Decrypt(*sealed, associated_data);
    if (!plaintext.ok()) {
      last = plaintext.status();
      continue;
    }
    if (field != "ip") return plaintext;
    std::optional<IpAddress> ip = IpFromBinary(*plaintext);
    if (!ip) return Malformed();
    return FormatIp(*ip);
  }
  return std::move(last).Annotate("unmask with key " + key.id);
}

const std::string& Masker::ColumnKey::id() const { return key_->id; }
MaskMode Masker::ColumnKey::mode() const { return key_->mode; }

Result<Masker::ColumnKey> Masker::KeyForColumn(std::string_view field, std::optional<MaskMode> mode) const {
  if (std::optional<MaskField> login = ParseField(field)) {
    Keyed* key = fields_[static_cast<size_t>(*login)];
    if (!mode || key->mode == *mode) return ColumnKey(key);
  }
  for (const auto& [column, key] : columns_) {
    if (column != field) continue;
    if (mode && key->mode != *mode) {
      return Status::InvalidInput(fmt::format(
          "the keyring's key for column {} is {} (its sqs2pg-column line), not {}: sqs2pg keygen --rotate "
          "--column {} --mode {} adds one",
          field, ModeName(key->mode), ModeName(*mode), field, ModeName(*mode)));
    }
    return ColumnKey(key);
  }
  if (!mode) return ColumnKey(body_);
  // keys_ is in keyring order, newest first.
  for (const auto& k : keys_) {
    if (k->mode == *mode) return ColumnKey(k.get());
  }
  return Status::InvalidInput(fmt::format(
      "the keyring has no {} key (for {}); add one with sqs2pg keygen --rotate", ModeName(*mode), field));
}

Status Masker::MaskColumnInto(ColumnKey key, std::string_view field, std::string_view value,
                              std::string& out) {
  Keyed& k = *key.key_;
  if (k.mode == MaskMode::kSiv) return SealV2(k, field, value, out);
  if (k.mode == MaskMode::kHmac) return Hash(k, field, value, out);
  std::optional<IpAddress> ip = ParseIp(value);
  if (!ip) return Status::InvalidInput("mask: not an IPv4 or IPv6 address");
  return MaskColumnIpInto(key, field, *ip, out);
}

Status Masker::MaskColumnIpInto(ColumnKey key, std::string_view field, const IpAddress& ip,
                                std::string& out) {
  Keyed& k = *key.key_;
  if (k.mode == MaskMode::kSiv) return SealV2(k, field, ip.Binary(), out);
  if (k.mode == MaskMode::kHmac) return Hash(k, field, ip.Binary(), out);
  ASSIGN_OR_RETURN(IpAddress masked, k.ip->Encrypt(ip));
  out.clear();
  AppendIp(out, masked);
  return Status::Ok();
}

size_t Masker::MaxColumnBytes(ColumnKey key, size_t max_masked_chars) const {
  auto fits = [&](size_t chars) { return chars <= max_masked_chars ? SIZE_MAX : 0; };
  switch (key.key_->mode) {
    case MaskMode::kSiv:
      return MaxPlaintextBytes(max_masked_chars);
    case MaskMode::kHmac:
      return fits(kHmacChars);
    default:
      return fits(kMaxAddressChars);
  }
}

Result<std::string> Masker::UnmaskColumn(std::string_view masked, std::string_view field) {
  if (masked.size() <= kPrefixChars || masked[Keyring::kKeyIdChars] != kSeparator) return Malformed();
  std::string_view id = masked.substr(0, Keyring::kKeyIdChars);
  if (!IsLowerHex(id)) return Malformed();
  Keyed* key = FindKey(id);
  if (key == nullptr)
    return Status::NotFound("unmask: no key with id " + std::string(id) + " in the keyring");
  std::string_view rest = masked.substr(kPrefixChars);
  if (key->mode != MaskMode::kSiv || !rest.starts_with(kV2Tag)) return Malformed();
  std::optional<std::string> sealed = Base64UrlDecode(rest.substr(kV2Tag.size()));
  if (!sealed) return Malformed();
  const std::string_view associated_data[] = {key->id, field};
  Result<std::string> plaintext = key->siv->Decrypt(*sealed, associated_data);
  if (!plaintext.ok()) return plaintext.status().Annotate("unmask with key " + key->id);
  return plaintext;
}

size_t Masker::MaskedLength(size_t plaintext_bytes) {
  return kPrefixChars + kV2Tag.size() + Base64UrlChars(AesSiv::kTagBytes + plaintext_bytes);
}

size_t Masker::MaxPlaintextBytes(size_t max_masked_chars) {
  const size_t prefix = kPrefixChars + kV2Tag.size();
  if (max_masked_chars <= prefix) return 0;
  // floor(3L/4) bytes are the most whose unpadded base64 fits in L characters.
  size_t sealed_bytes = (max_masked_chars - prefix) * 3 / 4;
  return sealed_bytes > AesSiv::kTagBytes ? sealed_bytes - AesSiv::kTagBytes : 0;
}

size_t Masker::MaxFieldBytes(MaskField field, size_t max_masked_chars) const {
  auto fits = [&](size_t chars) { return chars <= max_masked_chars ? SIZE_MAX : 0; };
  switch (mode(field)) {
    case MaskMode::kSiv:
      return field == MaskField::kIp ? fits(MaskedLength(16)) : MaxPlaintextBytes(max_masked_chars);
    case MaskMode::kHmac:
      return fits(kHmacChars);
    default:
      return fits(kMaxAddressChars);
  }
}

}  // namespace sqs2pg::transform
