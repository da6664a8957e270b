#include "transform/keyring.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include "common/digest.h"
#include "common/encoding.h"

namespace sqs2pg::transform {
namespace {

constexpr std::string_view kKeyIdLabel = "sqs2pg key id v1";
constexpr std::string_view kKeyIdLabelV2 = "sqs2pg key id v2 ";

struct ModeInfo {
  MaskMode mode;
  std::string_view name;
  size_t key_bytes;
};
constexpr ModeInfo kModes[] = {
    {MaskMode::kSiv, "siv", 64},
    {MaskMode::kIpcryptDeterministic, "ipcrypt-deterministic", 16},
    {MaskMode::kIpcryptPfx, "ipcrypt-pfx", 32},
    {MaskMode::kCryptoPan, "cryptopan", 32},
    {MaskMode::kHmac, "hmac", 32},
};
const ModeInfo& Info(MaskMode mode) { return kModes[static_cast<size_t>(mode)]; }
// A keyring of a thousand keys is ~150 KB; anything far larger is not a key file.
constexpr off_t kMaxKeyFileBytes = 1 << 20;

constexpr std::string_view kHeader =
    "# sqs2pg masking keys. Secret: keep this file mode 0600 and out of version control.\n"
    "# One key a line:  sqs2pg-key-v1 <key-id> <key>\n"
    "#   key     128 lowercase hex characters: a 64-byte AES-256-SIV key.\n"
    "#   key-id  first 8 hex characters of HMAC-SHA256(key, \"sqs2pg key id v1\"). It is derived from the\n"
    "#           key, so a line whose id does not match its key is refused as damaged.\n"
    "# The first key masks new values; every key can unmask. To rotate keys, put a new key first and keep\n"
    "# the old ones for as long as stored values use them.\n";
constexpr std::string_view kHeaderV2 =
    "# Keys of other modes:  sqs2pg-key-v2 <key-id> <mode> <key>\n"
    "#   mode    ipcrypt-deterministic (16-byte key), ipcrypt-pfx, cryptopan or hmac (32 bytes)\n"
    "#   key-id  first 8 hex characters of HMAC-SHA256(key, \"sqs2pg key id v2 <mode>\")\n"
    "# Which keys made a column's values:  sqs2pg-field <ip|device_id> <key-id> [<older key-id>...]\n"
    "#   the first masks new values. A field without such a line uses the siv keys above. Keep the\n"
    "#   older ids listed while the column holds their values: address-valued masks carry no key id.\n"
    "# A mapped column's keys:  sqs2pg-column <column> <key-id> [<older key-id>...] (keygen --column)\n"
    "# sqs2pg-key-v3 <key-id> cryptopan <key>: Crypto-PAn with IPv6 on a key and pad of its own; a v2\n"
    "#   cryptopan line is a key from before, whose IPv6 addresses shared IPv4's tree (still unmasks).\n";

// Closes on every return path, including the error ones.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Reports the close error, which on some file systems is where a failed write shows up.
  int Close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

std::string ErrnoText(int err) { return std::strerror(err); }

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  constexpr std::string_view kBlanks = " \t\r";
  size_t pos = line.find_first_not_of(kBlanks);
  while (pos != std::string_view::npos) {
    size_t end = line.find_first_of(kBlanks, pos);
    fields.push_back(line.substr(pos, end == std::string_view::npos ? end : end - pos));
    pos = line.find_first_not_of(kBlanks, end);
  }
  return fields;
}

// Never echoes a field: any of them may be key material pasted in the wrong place.
Result<Key> ParseKeyLine(const std::vector<std::string_view>& fields) {
  const bool v3 = !fields.empty() && fields[0] == Keyring::kLineTagV3;
  const bool v2 = v3 || (!fields.empty() && fields[0] == Keyring::kLineTagV2);
  if (v2 ? fields.size() != 4 : (fields.size() != 3 || fields[0] != Keyring::kLineTag)) {
    return Status::InvalidInput("expected '" + std::string(Keyring::kLineTag) + " <key-id> <key>' or '" +
                                std::string(Keyring::kLineTagV2) + " <key-id> <mode> <key>'");
  }
  std::string_view id = fields[1];
  MaskMode mode = MaskMode::kSiv;
  if (v2) {
    std::optional<MaskMode> parsed = ParseMode(fields[2]);
    if (!parsed) {
      return Status::InvalidInput(
          "unknown mode (expected siv, ipcrypt-deterministic, ipcrypt-pfx, cryptopan or hmac)");
    }
    mode = *parsed;
    if (v3 && mode != MaskMode::kCryptoPan) {
      return Status::InvalidInput("an " + std::string(Keyring::kLineTagV3) + " line is for a cryptopan key");
    }
  }
  std::string_view key_hex = fields.back();
  if (id.size() != Keyring::kKeyIdChars || !IsLowerHex(id)) {
    return Status::InvalidInput("the key id must be " + std::to_string(Keyring::kKeyIdChars) +
                                " lowercase hex characters");
  }
  const size_t key_bytes = KeyBytesFor(mode);
  if (key_hex.size() != 2 * key_bytes || !IsLowerHex(key_hex)) {
    return Status::InvalidInput("the key must be " + std::to_string(2 * key_bytes) +
                                " lowercase hex characters");
  }
  std::optional<std::string> material = HexDecode(key_hex);
  // A v2 cryptopan line is a key from before the families were kept apart.
  Result<Key> decoded = Keyring::KeyFromMaterial(*material, mode, mode == MaskMode::kCryptoPan && !v3);
  OPENSSL_cleanse(material->data(), material->size());
  ASSIGN_OR_RETURN(Key key, std::move(decoded));
  if (key.id != id) return Status::InvalidInput("key id does not match the key (file damaged?)");
  return key;
}

bool IsBlankOrComment(std::string_view line) {
  size_t first = line.find_first_not_of(" \t\r");
  return first == std::string_view::npos || line[first] == '#';
}

std::string ModeText(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof(text), "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

Result<std::string> ReadPrivateFile(const std::string& path, const std::string& origin) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound(origin + ": no such file");
    return Status::InvalidInput(origin + ": cannot open: " + ErrnoText(err));
  }
  // fstat on the open descriptor, so the file checked is the file read.
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::InvalidInput(origin + ": cannot stat: " + ErrnoText(errno));
  if (!S_ISREG(st.st_mode)) return Status::InvalidInput(origin + ": not a regular file");
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return Status::InvalidInput(origin + " is accessible to group or others (mode " + ModeText(st.st_mode) +
                                "); it holds secret keys: run chmod 600 " + path);
  }
  if (st.st_size > kMaxKeyFileBytes) return Status::InvalidInput(origin + ": too large to be a key file");

  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::InvalidInput(origin + ": read failed: " + ErrnoText(errno));
    if (n == 0) break;  // shrank while we read; parse what is there
    done += static_cast<size_t>(n);
  }
  text.resize(done);
  return text;
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::InvalidInput("write failed: " + ErrnoText(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd) != 0) return Status::InvalidInput("fsync failed: " + ErrnoText(errno));
  return Status::Ok();
}

}  // namespace

namespace {
void Wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}
}  // namespace

Key::Key(Key&& other) noexcept
    : id(std::move(other.id)),
      material(std::move(other.material)),
      mode(other.mode),
      shared_ipv6_tree(other.shared_ipv6_tree) {
  Wipe(other.material);  // a short string is copied, not moved: clear what stayed behind
}

Key& Key::operator=(const Key& other) {
  if (this == &other) return *this;
  Wipe(material);
  id = other.id;
  material = other.material;
  mode = other.mode;
  shared_ipv6_tree = other.shared_ipv6_tree;
  return *this;
}

Key& Key::operator=(Key&& other) noexcept {
  if (this == &other) return *this;
  Wipe(material);
  id = std::move(other.id);
  material = std::move(other.material);
  mode = other.mode;
  shared_ipv6_tree = other.shared_ipv6_tree;
  Wipe(other.material);  // a short string is copied, not moved: clear what stayed behind
  return *this;
}

Key::~Key() { Wipe(material); }

std::string_view ModeName(MaskMode mode) { return Info(mode).name; }

std::optional<MaskMode> ParseMode(std::string_view name) {
  for (const ModeInfo& info : kModes) {
    if (info.name == name) return info.mode;
  }
  return std::nullopt;
}

std::string_view FieldName(MaskField field) { return field == MaskField::kIp ? "ip" : "device_id"; }

std::optional<MaskField> ParseField(std::string_view name) {
  for (MaskField field : kMaskFields) {
    if (FieldName(field) == name) return field;
  }
  return std::nullopt;
}

size_t KeyBytesFor(MaskMode mode) { return Info(mode).key_bytes; }

bool AddressValued(MaskMode mode) {
  return mode == MaskMode::kIpcryptDeterministic || mode == MaskMode::kIpcryptPfx ||
         mode == MaskMode::kCryptoPan;
}

bool PrefixPreserving(MaskMode mode) { return mode == MaskMode::kIpcryptPfx || mode == MaskMode::kCryptoPan; }

std::string Keyring::KeyIdFor(std::string_view material, MaskMode mode, bool shared_ipv6_tree) {
  // siv keeps the v1 label: its ids are inside every value stored since version 1. A cryptopan key
  // that keeps the families apart gets an id of its own, so rows say which scheme made them.
  const bool v3 = mode == MaskMode::kCryptoPan && !shared_ipv6_tree;
  const std::string label = mode == MaskMode::kSiv ? std::string(kKeyIdLabel)
                            : v3                   ? "sqs2pg key id v3 cryptopan"
                                                   : std::string(kKeyIdLabelV2) + std::string(ModeName(mode));
  return HexEncode(HmacSha256(material, label)).substr(0, kKeyIdChars);
}

Result<Key> Keyring::KeyFromMaterial(std::string_view material, MaskMode mode, bool shared_ipv6_tree) {
  if (material.size() != KeyBytesFor(mode)) {
    return Status::InvalidInput("a " + std::string(ModeName(mode)) + " key must be " +
                                std::to_string(KeyBytesFor(mode)) + " bytes, not " +
                                std::to_string(material.size()));
  }
  if (mode == MaskMode::kIpcryptPfx && material.substr(0, 16) == material.substr(16)) {
    return Status::InvalidInput("an ipcrypt-pfx key's two 16-byte halves must differ");
  }
  const bool shared = mode == MaskMode::kCryptoPan && shared_ipv6_tree;
  return Key{KeyIdFor(material, mode, shared), std::string(material), mode, shared};
}

Result<Key> Keyring::GenerateKey(MaskMode mode) {
  std::string material(KeyBytesFor(mode), '\0');
  Result<Key> key = Status::Permanent("unreachable");
  do {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(material.data()), static_cast<int>(material.size())) !=
        1) {
      return Status::Permanent("generate key: RAND_bytes failed (no entropy source?)");
    }
    key = KeyFromMaterial(material, mode);
  } while (!key.ok() && mode == MaskMode::kIpcryptPfx);  // equal halves: a 2^-128 chance
  OPENSSL_cleanse(material.data(), material.size());
  return key;
}

Result<Keyring> Keyring::Generate() {
  ASSIGN_OR_RETURN(Key key, GenerateKey(MaskMode::kSiv));
  std::vector<Key> keys;
  keys.push_back(std::move(key));
  return Keyring(std::move(keys));
}

Result<Keyring> Keyring::FromKeys(std::vector<Key> keys) {
  if (std::none_of(keys.begin(), keys.end(), [](const Key& k) { return k.mode == MaskMode::kSiv; })) {
    return Status::InvalidInput("a keyring needs an siv key: it encrypts reject bodies");
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].id != KeyIdFor(keys[i].material, keys[i].mode, keys[i].shared_ipv6_tree)) {
      return Status::InvalidInput("key " + keys[i].id + ": the id does not match its material");
    }
    for (size_t j = 0; j < i; ++j) {
      if (keys[j].id == keys[i].id) return Status::InvalidInput("key id " + keys[i].id + " appears twice");
    }
  }
  return Keyring(std::move(keys));
}

Result<Keyring> Keyring::Parse(std::string_view text) { return ParseFrom(text, "keyring"); }

Result<Keyring> Keyring::LoadFile(const std::string& path) {
  const std::string origin = "key file " + path;
  ASSIGN_OR_RETURN(std::string text, ReadPrivateFile(path, origin));
  Result<Keyring> keyring = ParseFrom(text, origin);
  OPENSSL_cleanse(text.data(), text.size());
  return keyring;
}

Result<Keyring> Keyring::FromEnvironmentValue(std::string_view value, std::string_view variable) {
  return ParseFrom(value, "key variable " + std::string(variable));
}

Result<Keyring> Keyring::ParseFrom(std::string_view text, std::string_view origin) {
  std::vector<Key> keys;
  // Field lines are checked once every key is read: a field line may come before its keys.
  std::vector<std::pair<std::string, std::vector<std::string_view>>> field_lines;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (IsBlankOrComment(line)) continue;

    const std::string where = std::string(origin) + " line " + std::to_string(line_no);
    std::vector<std::string_view> fields = SplitFields(line);
    if (fields[0] == kFieldTag || fields[0] == kColumnTag) {
      field_lines.emplace_back(where, std::move(fields));
      continue;
    }
    Result<Key> key = ParseKeyLine(fields);
    if (!key.ok()) return key.status().Annotate(where);
    auto same_id = [&](const Key& k) { return k.id == key->id; };
    if (std::any_of(keys.begin(), keys.end(), same_id)) {
      return Status::InvalidInput(where + ": key id " + key->id + " appears twice");
    }
    keys.push_back(std::move(key).value());
  }
  if (keys.empty()) return Status::InvalidInput(std::string(origin) + " holds no key");
  if (std::none_of(keys.begin(), keys.end(), [](const Key& k) { return k.mode == MaskMode::kSiv; })) {
    return Status::InvalidInput(std::string(origin) +
                                " holds no siv key (an sqs2pg-key-v1 line): one is needed to encrypt reject "
                                "bodies");
  }
  Keyring keyring(std::move(keys));
  // A key id of a field or column line. Ids are public (every siv value starts with one), so naming
  // one is safe; anything else is not quoted, since a key pasted here must not be echoed.
  auto listed = [&keyring](std::string_view id, const std::string& where) -> Result<const Key*> {
    const Key* key = keyring.Find(id);
    if (key != nullptr) return key;
    const bool id_shaped = id.size() == kKeyIdChars && IsLowerHex(id);
    return Status::InvalidInput(where + ": no key with id " +
                                (id_shaped ? std::string(id) : std::string("(not a key id)")) +
                                " in the keyring");
  };
  for (const auto& [where, fields] : field_lines) {
    if (fields[0] == kColumnTag) {
      if (fields.size() < 3) {
        return Status::InvalidInput(where + ": expected '" + std::string(kColumnTag) +
                                    " <column> <key-id> [<key-id>...]'");
      }
      const std::string column(fields[1]);
      if (std::any_of(keyring.column_keys_.begin(), keyring.column_keys_.end(),
                      [&](const auto& line) { return line.first == column; })) {
        return Status::InvalidInput(where + ": a second line for column " + column);
      }
      // The line lists the newest first: assign from the oldest, each one going in front.
      for (size_t i = fields.size(); i-- > 2;) {
        auto key = listed(fields[i], where);
        if (!key.ok()) return key.status();
        if (Status st = keyring.AssignColumn(column, (*key)->id); !st.ok()) return st.Annotate(where);
      }
      continue;
    }
    std::optional<MaskField> field = fields.size() >= 3 ? ParseField(fields[1]) : std::nullopt;
    if (!field) {
      return Status::InvalidInput(where + ": expected '" + std::string(kFieldTag) +
                                  " <ip|device_id> <key-id> [<key-id>...]'");
    }
    auto& ids = keyring.field_keys_[static_cast<size_t>(*field)];
    if (!ids.empty())
      return Status::InvalidInput(where + ": a second line for field " + std::string(fields[1]));
    for (size_t i = 2; i < fields.size(); ++i) {
      auto listed_key = listed(fields[i], where);
      if (!listed_key.ok()) return listed_key.status();
      const Key* key = *listed_key;
      if (*field == MaskField::kDeviceId && AddressValued(key->mode)) {
        return Status::InvalidInput(where + ": device_id cannot use the address-valued mode " +
                                    std::string(ModeName(key->mode)));
      }
      if (std::find(ids.begin(), ids.end(), key->id) != ids.end()) {
        return Status::InvalidInput(where + ": key id " + key->id + " listed twice");
      }
      ids.push_back(key->id);
    }
  }
  return keyring;
}

std::string Keyring::Serialize() const {
  // Reserved up front: a reallocation would leave copies of the hex key material in freed memory.
  size_t size = kHeader.size() + 256;
  for (const Key& key : keys_) size += 64 + 2 * key.material.size();
  for (const auto& ids : field_keys_) size += 32 + ids.size() * (Keyring::kKeyIdChars + 1);
  for (const auto& [column, ids] : column_keys_)
    size += 32 + column.size() + ids.size() * (Keyring::kKeyIdChars + 1);
  std::string out;
  out.reserve(size);
  out.append(kHeader);
  const bool v2 =
      std::any_of(keys_.begin(), keys_.end(), [](const Key& k) { return k.mode != MaskMode::kSiv; }) ||
      HasFieldLine(MaskField::kIp) || HasFieldLine(MaskField::kDeviceId) || !column_keys_.empty();
  if (v2) out.append(kHeaderV2);
  for (const Key& key : keys_) {
    if (key.mode == MaskMode::kSiv) {
      out.append(kLineTag).append(" ").append(key.id);
    } else {
      const bool v3 = key.mode == MaskMode::kCryptoPan && !key.shared_ipv6_tree;
      out.append(v3 ? kLineTagV3 : kLineTagV2)
          .append(" ")
          .append(key.id)
          .append(" ")
          .append(ModeName(key.mode));
    }
    std::string hex = HexEncode(key.material);
    out.append(" ").append(hex).append("\n");
    OPENSSL_cleanse(hex.data(), hex.size());
  }
  for (MaskField field : kMaskFields) {
    if (!HasFieldLine(field)) continue;
    out.append(kFieldTag).append(" ").append(FieldName(field));
    for (const std::string& id : field_keys_[static_cast<size_t>(field)]) out.append(" ").append(id);
    out.append("\n");
  }
  for (const auto& [column, ids] : column_keys_) {
    out.append(kColumnTag).append(" ").append(column);
    for (const std::string& id : ids) out.append(" ").append(id);
    out.append("\n");
  }
  return out;
}

Status Keyring::WriteNewFile(const std::string& path) const {
  const std::string origin = "key file " + path;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    int err = errno;
    if (err == EEXIST) {
      return Status::InvalidInput(
          origin +
          " already exists; refusing to overwrite it (its keys may still be needed to "
          "unmask stored values)");
    }
    return Status::InvalidInput(origin + ": cannot create: " + ErrnoText(err));
  }
  std::string text = Serialize();
  Status written = WriteAll(fd.get(), text);
  OPENSSL_cleanse(text.data(), text.size());
  if (written.ok() && fd.Close() != 0) written = Status::InvalidInput("close failed: " + ErrnoText(errno));
  if (!written.ok()) {
    ::unlink(path.c_str());  // a half-written key file would fail later, far from the cause
    return std::move(written).Annotate(origin);
  }
  return Status::Ok();
}

Status Keyring::ReplaceFile(const std::string& path) const {
  // Write beside the old file, then rename over it: a crash leaves the old keyring or the new
  // one, never a torn file that would lose keys needed to unmask stored values. The temporary
  // name is fixed, so a crash leaves at most one such file, which the next rotation replaces:
  // it is a leftover of a rotation that never took effect.
  const std::string temp = path + ".tmp";
  const std::string origin = "key file " + path;
  if (::unlink(temp.c_str()) != 0 && errno != ENOENT) {
    return Status::InvalidInput(origin + ": cannot remove the leftover " + temp + ": " + ErrnoText(errno));
  }
  // WriteNewFile creates it 0600 with O_EXCL (no symlink followed, no file shared) and fsyncs it.
  RETURN_IF_ERROR(WriteNewFile(temp));
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return Status::InvalidInput(origin + ": cannot replace: " + ErrnoText(err));
  }
  // The rename is durable only once the directory is on disk.
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) {
    return Status::InvalidInput(origin + ": replaced, but syncing its directory failed: " + ErrnoText(errno));
  }
  return Status::Ok();
}

const Key* Keyring::Find(std::string_view id) const {
  auto it = std::find_if(keys_.begin(), keys_.end(), [&](const Key& k) { return k.id == id; });
  return it == keys_.end() ? nullptr : &*it;
}

const Key& Keyring::active() const {
  // Every factory refuses a keyring without an siv key.
  return *std::find_if(keys_.begin(), keys_.end(), [](const Key& k) { return k.mode == MaskMode::kSiv; });
}

std::vector<const Key*> Keyring::FieldKeys(MaskField field) const {
  std::vector<const Key*> out;
  const auto& ids = field_keys_[static_cast<size_t>(field)];
  if (!ids.empty()) {
    for (const std::string& id : ids) out.push_back(Find(id));
    return out;
  }
  for (const Key& key : keys_) {
    if (key.mode == MaskMode::kSiv) out.push_back(&key);
  }
  return out;
}

Status Keyring::AssignField(MaskField field, const std::string& id, bool keep_history) {
  const Key* key = Find(id);
  if (key == nullptr) return Status::InvalidInput("no key with id " + id + " in the keyring");
  if (field == MaskField::kDeviceId && AddressValued(key->mode)) {
    return Status::InvalidInput("device_id cannot use the address-valued mode " +
                                std::string(ModeName(key->mode)));
  }
  // The keys that made the field's values so far (the siv keys, without a line) stay listed.
  std::vector<std::string> ids{id};
  for (const Key* old : FieldKeys(field)) {
    if (keep_history && old->id != id) ids.push_back(old->id);
  }
  field_keys_[static_cast<size_t>(field)] = std::move(ids);
  return Status::Ok();
}

std::vector<const Key*> Keyring::ColumnKeys(std::string_view column) const {
  std::vector<const Key*> out;
  for (const auto& [name, ids] : column_keys_) {
    if (name != column) continue;
    for (const std::string& id : ids) out.push_back(Find(id));
  }
  return out;
}

Status Keyring::AssignColumn(const std::string& column, const std::string& id, bool keep_history) {
  auto name_char = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (column.empty() || column.size() > 63 || !std::all_of(column.begin(), column.end(), name_char)) {
    return Status::InvalidInput("a column name is 1 to 63 of A-Z a-z 0-9 _");
  }
  if (ParseField(column)) {
    return Status::InvalidInput(
        "ip and device_id are the login fields: give them keys with --ip-mask and "
        "--device-id-mask");
  }
  if (Find(id) == nullptr) return Status::InvalidInput("no key with id " + id + " in the keyring");
  auto line = std::find_if(column_keys_.begin(), column_keys_.end(),
                           [&](const auto& l) { return l.first == column; });
  if (line == column_keys_.end()) {
    column_keys_.emplace_back(column, std::vector<std::string>{id});
    return Status::Ok();
  }
  std::vector<std::string>& ids = line->second;
  if (std::find(ids.begin(), ids.end(), id) != ids.end()) {
    return Status::InvalidInput("key id " + id + " listed twice for column " + column);
  }
  if (!keep_history) ids.clear();
  ids.insert(ids.begin(), id);
  return Status::Ok();
}

Status Keyring::Insert(Key key, bool in_front, std::string_view what) {
  if (key.material.size() != KeyBytesFor(key.mode) ||
      key.id != KeyIdFor(key.material, key.mode, key.shared_ipv6_tree)) {
    return Status::InvalidInput(std::string(what) + ": the new key's id does not match its material");
  }
  if (Find(key.id) != nullptr) {
    return Status::InvalidInput(std::string(what) + ": key id " + key.id + " is already in the keyring");
  }
  keys_.insert(in_front ? keys_.begin() : keys_.end(), std::move(key));
  return Status::Ok();
}

Status Keyring::Append(Key key) { return Insert(std::move(key), false, "add key"); }
Status Keyring::Prepend(Key key) { return Insert(std::move(key), true, "rotate key"); }

}  // namespace sqs2pg::transform
