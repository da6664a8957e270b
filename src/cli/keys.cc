// sqs2pg keygen, mask and unmask: the key holder's tools.

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <iostream>
#include <optional>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "common/encoding.h"
#include "transform/ip_address.h"
#include "transform/login_transform.h"
#include "transform/mapping/mapping.h"
#include "transform/masker.h"

namespace sqs2pg::cli {
namespace {

using transform::Key;
using transform::Keyring;
using transform::MaskField;
using transform::MaskMode;

// Values from the command line, or else one a line from stdin.
std::vector<std::string> ValuesOrStdin(const std::vector<std::string>& given) {
  if (!given.empty()) return given;
  std::vector<std::string> values;
  for (std::string line; std::getline(std::cin, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) values.push_back(line);
  }
  return values;
}

struct KeygenOptions {
  std::string out;
  bool rotate = false;
  std::string import_hex;
  CLI::Option* import_hex_option = nullptr;  // CLI11 keeps its own copy of the hex: wiped too
  MaskModeOptions modes;
  std::string column;  // a mapped column to give a key of its own (--mode)
  std::string mode;
};

// Wipes every copy of --import-hex's text this process holds: ours, CLI11's, and the environment's
// (config.cc already unset SQS2PG_IMPORT_HEX when it read it).
void WipeImportHex(KeygenOptions& o) {
  if (!o.import_hex.empty()) OPENSSL_cleanse(o.import_hex.data(), o.import_hex.size());
  if (o.import_hex_option != nullptr) {
    // results() is const only to keep callers from changing what was parsed; the strings are
    // ours to wipe once the key is decoded.
    for (const std::string& r : o.import_hex_option->results()) {
      auto& text = const_cast<std::string&>(r);
      if (!text.empty()) OPENSSL_cleanse(text.data(), text.size());
    }
  }
}

// Wipes the imported material however keygen ends.
struct Material {
  std::string bytes;
  ~Material() {
    if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
  }
};

// The mode --import-hex's key is for: the one non-siv mode given, else siv.
Result<MaskMode> ImportMode(const std::optional<MaskMode>& ip, const std::optional<MaskMode>& device_id) {
  std::optional<MaskMode> mode;
  for (const auto& m : {ip, device_id}) {
    if (!m || *m == MaskMode::kSiv) continue;
    if (mode && *mode != *m) {
      return Status::InvalidInput(
          "--import-hex imports one key, but --ip-mask and --device-id-mask name two different modes: import "
          "each with its own keygen --rotate");
    }
    mode = m;
  }
  return mode.value_or(MaskMode::kSiv);
}

// A key of `mode`: the imported one if it is for this mode, else a fresh one.
Result<Key> KeyFor(MaskMode mode, const std::optional<Key>& imported) {
  if (imported && imported->mode == mode) return *imported;
  return Keyring::GenerateKey(mode);
}

std::string Describe(const Keyring& keyring) {
  std::string text;
  for (MaskField field : transform::kMaskFields) {
    const Key& key = keyring.ActiveFor(field);
    text += fmt::format("{} {} key {}, ", transform::FieldName(field), transform::ModeName(key.mode), key.id);
  }
  for (const auto& [column, ids] : keyring.column_lines()) {
    const Key& key = *keyring.ColumnKeys(column).front();
    text += fmt::format("column {} {} key {}, ", column, transform::ModeName(key.mode), key.id);
  }
  return text + fmt::format("reject bodies siv key {}", keyring.active().id);
}

int Keygen(KeygenOptions& o) {
  const transform::MaskerOptions modes = ToMaskerOptions(o.modes);
  Material material;
  std::optional<Key> imported;
  struct WipeOnExit {
    KeygenOptions& o;
    ~WipeOnExit() { WipeImportHex(o); }
  } wipe_hex{o};
  std::optional<MaskMode> column_mode;
  if (!o.column.empty() || !o.mode.empty()) {
    if (o.column.empty() || o.mode.empty())
      return Fail(Status::InvalidInput("keygen: --column and --mode go together"));
    if (modes.ip_mode || modes.device_id_mode)
      return Fail(
          Status::InvalidInput("keygen: --column adds one column's key; --ip-mask and --device-id-mask "
                               "are for another keygen"));
    column_mode = transform::ParseMode(o.mode);
    if (!column_mode) {
      return Fail(
          Status::InvalidInput("--mode must be siv, hmac, ipcrypt-deterministic, ipcrypt-pfx or cryptopan"));
    }
  }
  if (!o.import_hex.empty()) {
    auto mode =
        column_mode ? Result<MaskMode>(*column_mode) : ImportMode(modes.ip_mode, modes.device_id_mode);
    if (!mode.ok()) return Fail(mode.status());
    // Never echoed: it is key material.
    std::optional<std::string> bytes = HexDecode(o.import_hex);
    WipeImportHex(o);
    if (!bytes) return Fail(Status::InvalidInput("--import-hex: not a hex string"));
    material.bytes = std::move(*bytes);
    // A moved-from string may keep a short value in its own buffer.
    OPENSSL_cleanse(bytes->data(), bytes->size());
    auto key = Keyring::KeyFromMaterial(material.bytes, *mode);
    if (!key.ok()) return Fail(key.status().Annotate("--import-hex"));
    imported = std::move(key).value();
  }

  std::optional<Keyring> keyring;
  if (o.rotate) {
    auto existing = Keyring::LoadFile(o.out);
    if (!existing.ok()) return Fail(existing.status());
    keyring.emplace(std::move(existing).value());
  } else {
    auto siv = KeyFor(MaskMode::kSiv, imported);
    if (!siv.ok()) return Fail(siv.status());
    auto fresh = Keyring::FromKeys({std::move(siv).value()});
    if (!fresh.ok()) return Fail(fresh.status());
    keyring.emplace(std::move(fresh).value());
  }
  if (column_mode) {
    // The column's own key goes last: it must not become the reject bodies' siv key, nor the
    // newest key of its mode for the columns without a line.
    auto key = KeyFor(*column_mode, imported);
    if (!key.ok()) return Fail(key.status());
    std::string id = key->id;
    if (keyring->Find(id) == nullptr) {
      if (Status st = keyring->Append(std::move(key).value()); !st.ok()) return Fail(st);
    }
    if (Status st = keyring->AssignColumn(o.column, id, o.rotate); !st.ok()) return Fail(st);
  }
  // Rotation with no mode named: a new siv key, which every field without a field line follows.
  const bool any_mode = modes.ip_mode || modes.device_id_mode || column_mode;
  if (o.rotate && !any_mode) {
    auto siv = KeyFor(MaskMode::kSiv, imported);
    if (!siv.ok()) return Fail(siv.status());
    if (Status st = keyring->Prepend(std::move(siv).value()); !st.ok()) return Fail(st);
  }
  std::optional<Key> added_siv;  // one new siv key serves every field named siv in a rotation
  for (MaskField field : transform::kMaskFields) {
    const std::optional<MaskMode>& mode = field == MaskField::kIp ? modes.ip_mode : modes.device_id_mode;
    if (!mode) continue;
    // A new keyring's siv key already masks every field without a field line.
    if (*mode == MaskMode::kSiv && !o.rotate) continue;
    std::string id;
    if (*mode == MaskMode::kSiv && added_siv) {
      id = added_siv->id;
    } else {
      auto key = KeyFor(*mode, imported);
      if (!key.ok()) return Fail(key.status());
      id = key->id;
      if (keyring->Find(id) == nullptr) {
        if (*mode == MaskMode::kSiv) added_siv = *key;
        if (Status st = keyring->Prepend(std::move(key).value()); !st.ok()) return Fail(st);
      }
    }
    // An siv field without a field line follows the new siv key already.
    if (*mode == MaskMode::kSiv && !keyring->HasFieldLine(field)) continue;
    if (Status st = keyring->AssignField(field, id, o.rotate); !st.ok()) return Fail(st);
  }

  Status written = o.rotate ? keyring->ReplaceFile(o.out) : keyring->WriteNewFile(o.out);
  if (!written.ok()) return Fail(written);
  if (o.rotate) {
    std::cout << fmt::format("rotated {}: {}; the older keys still unmask", o.out, Describe(*keyring))
              << std::endl;
  } else {
    std::cout << fmt::format("wrote {}: {}", o.out, Describe(*keyring)) << std::endl;
  }
  return kExitOk;
}

struct MaskOptions {
  std::string key_file;
  std::string field;
  std::string column;
  std::string mapping;
  std::vector<std::string> values;
  MaskModeOptions modes;
  int prefix = -1;
};

// mask's value as an address; one that is not is skipped with a complaint and an empty line, which
// keeps output lines aligned with input lines.
std::optional<transform::IpAddress> AddressOrSkip(const std::string& value, int& exit_code) {
  std::optional<transform::IpAddress> ip = transform::ParseIp(value);
  if (!ip) {
    Complain("not an IPv4 or IPv6 address (line skipped)");
    exit_code = kExitFailure;
    std::cout << "\n";
  }
  return ip;
}

// A mapping's column: the key and mode `run --mapping` masks it with, so the lookup matches.
int MaskColumn(const MaskOptions& o) {
  if (o.mapping.empty())
    return Fail(Status::InvalidInput("mask --column needs --mapping: its mask says how"));
  auto mapping = transform::mapping::LoadMappingFile(o.mapping);
  if (!mapping.ok()) return Fail(mapping.status());
  auto spec = std::find_if(mapping->columns.begin(), mapping->columns.end(),
                           [&](const transform::mapping::ColumnSpec& c) { return c.name == o.column; });
  if (spec == mapping->columns.end() || !spec->mask) {
    return Fail(Status::InvalidInput(fmt::format("{} has no masked column {}", o.mapping, o.column)));
  }
  auto masker = LoadMasker(o.key_file, o.modes);
  if (!masker.ok()) return Fail(masker.status());
  const std::string& bound = spec->mask_field.empty() ? spec->name : spec->mask_field;
  auto key = masker->KeyForColumn(bound, spec->mask->mode);
  if (!key.ok()) return Fail(key.status());
  int exit_code = kExitOk;
  std::string masked;
  for (const std::string& value : ValuesOrStdin(o.values)) {
    masked.clear();
    Status st;
    if (spec->type.kind == transform::mapping::TypeKind::kInet ||
        spec->input.value_or(spec->type).kind == transform::mapping::TypeKind::kInet) {
      std::optional<transform::IpAddress> ip = AddressOrSkip(value, exit_code);
      if (!ip) continue;
      st = masker->MaskColumnIpInto(*key, bound, *ip, masked);
    } else {
      st = masker->MaskColumnInto(*key, bound, value, masked);
    }
    if (!st.ok()) return Fail(st);
    std::cout << masked << "\n";
  }
  return exit_code;
}

int Mask(const MaskOptions& o) {
  if (o.field.empty() == o.column.empty()) {
    return Fail(Status::InvalidInput("mask needs --field ip|device_id (the login table) or --column NAME"));
  }
  if (!o.column.empty()) return MaskColumn(o);
  const MaskField field = *transform::ParseField(o.field);
  if (o.prefix >= 0 && field != MaskField::kIp)
    return Fail(Status::InvalidInput("--prefix is for --field ip"));
  auto masker = LoadMasker(o.key_file, o.modes);
  if (!masker.ok()) return Fail(masker.status());
  int exit_code = kExitOk;
  std::string masked;
  for (const std::string& value : ValuesOrStdin(o.values)) {
    Status st;
    if (field == MaskField::kIp) {
      // The same canonical form the transform masks, or the lookup would miss.
      std::optional<transform::IpAddress> ip = AddressOrSkip(value, exit_code);
      if (!ip) continue;
      if (o.prefix >= 0) {
        auto network = masker->MaskNetwork(*ip, o.prefix);
        if (!network.ok()) return Fail(network.status());
        masked = *network;
      } else {
        st = masker->MaskIpInto(*ip, masked);
      }
    } else {
      st = masker->MaskValueInto(field, value, masked);
    }
    if (!st.ok()) return Fail(st);
    std::cout << masked << "\n";
  }
  return exit_code;
}

struct UnmaskOptions {
  std::string key_file;
  std::string column;
  std::string address_key_id;
  std::vector<std::string> values;
  MaskModeOptions modes;
};

int Unmask(const UnmaskOptions& o) {
  auto masker = LoadMasker(o.key_file, o.modes);
  if (!masker.ok()) return Fail(masker.status());
  int exit_code = kExitOk;
  for (const std::string& value : ValuesOrStdin(o.values)) {
    auto unmask = [&]() -> Result<std::string> {
      if (o.column.empty()) return masker->Unmask(value, o.address_key_id);
      // A mapping column's bare address: only the row's <column>_key_id says which key made it, and
      // a wrong key would answer with a plausible wrong address.
      if (transform::ParseIp(value)) {
        if (o.address_key_id.empty()) {
          return Status::InvalidInput(
              "unmask --column: a masked address carries no key id; pass --address-key-id "
              "with the row's " +
              o.column + "_key_id");
        }
        return masker->Unmask(value, o.address_key_id);
      }
      return masker->UnmaskColumn(value, o.column);
    };
    Result<std::string> plain = unmask();
    if (!plain.ok()) {
      // An empty line keeps output lines aligned with input lines.
      Complain(plain.status().message());
      std::cout << "\n";
      exit_code = kExitFailure;
      continue;
    }
    std::cout << *plain << "\n";
  }
  return exit_code;
}

}  // namespace

Command AddKeygenCommand(CLI::App& app) {
  auto o = std::make_shared<KeygenOptions>();
  CLI::App* cmd = app.add_subcommand("keygen", "Write a new random masking key to a file (mode 0600)");
  AddOption(*cmd, "out", o->out);
  AddOption(*cmd, "rotate", o->rotate);
  o->import_hex_option = AddOption(*cmd, "import-hex", o->import_hex);
  AddMaskModeOptions(*cmd, o->modes);
  AddOption(*cmd, "column", o->column);
  AddOption(*cmd, "mode", o->mode)
      ->check(CLI::IsMember({"siv", "hmac", "ipcrypt-deterministic", "ipcrypt-pfx", "cryptopan"}));
  return {cmd, [o]() { return Keygen(*o); }};
}

Command AddMaskCommand(CLI::App& app) {
  auto o = std::make_shared<MaskOptions>();
  CLI::App* cmd = app.add_subcommand("mask", "Print the masked form of each value (to look up rows)");
  AddKeyFileOption(*cmd, o->key_file);
  AddOption(*cmd, "field", o->field)->check(CLI::IsMember({"ip", "device_id"}));
  AddOption(*cmd, "column", o->column);
  AddOption(*cmd, "mapping", o->mapping);
  AddOption(*cmd, "prefix", o->prefix)->check(CLI::Range(0, 128));
  AddMaskModeOptions(*cmd, o->modes);
  cmd->add_option("values", o->values, "Values (default: one a line on stdin)");
  return {cmd, [o]() { return Mask(*o); }};
}

Command AddUnmaskCommand(CLI::App& app) {
  auto o = std::make_shared<UnmaskOptions>();
  CLI::App* cmd = app.add_subcommand("unmask", "Print the original of each masked value (needs the key)");
  AddKeyFileOption(*cmd, o->key_file);
  AddMaskModeOptions(*cmd, o->modes);
  AddOption(*cmd, "column", o->column);
  AddOption(*cmd, "address-key-id", o->address_key_id);
  cmd->add_option("values", o->values, "Masked values (default: one a line on stdin)");
  return {cmd, [o]() { return Unmask(*o); }};
}

}  // namespace sqs2pg::cli
