// sqs2pg keygen, mask and unmask: the key holder's tools.

#include <fmt/format.h>

#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "transform/login_transform.h"
#include "transform/masker.h"

namespace sqs2pg::cli {
namespace {

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

Result<transform::Masker> LoadMasker(const std::string& key_file) {
  ASSIGN_OR_RETURN(transform::Keyring keyring, LoadKeyring(key_file));
  return transform::Masker::Create(keyring);
}

struct KeygenOptions {
  std::string out;
  bool rotate = false;
};

int Keygen(const KeygenOptions& o) {
  auto fresh = transform::Keyring::Generate();
  if (!fresh.ok()) return Fail(fresh.status());
  if (!o.rotate) {
    if (Status st = fresh->WriteNewFile(o.out); !st.ok()) return Fail(st);
    std::cout << fmt::format("wrote key {} to {}", fresh->active().id, o.out) << std::endl;
    return kExitOk;
  }
  auto existing = transform::Keyring::LoadFile(o.out);
  if (!existing.ok()) return Fail(existing.status());
  if (Status st = existing->Prepend(fresh->active()); !st.ok()) return Fail(st);
  if (Status st = existing->ReplaceFile(o.out); !st.ok()) return Fail(st);
  std::cout << fmt::format("added key {} to {}: it masks new values; the {} older key(s) still unmask",
                           fresh->active().id, o.out, existing->keys().size() - 1)
            << std::endl;
  return kExitOk;
}

struct MaskOptions {
  std::string key_file;
  std::string field;
  std::vector<std::string> values;
};

int Mask(const MaskOptions& o) {
  auto masker = LoadMasker(o.key_file);
  if (!masker.ok()) return Fail(masker.status());
  int exit_code = kExitOk;
  for (const std::string& value : ValuesOrStdin(o.values)) {
    std::string input = value;
    // The same canonical form the transform masks, or the lookup would miss.
    if (o.field == "ip") {
      auto canonical = transform::CanonicalIp(value);
      if (!canonical) {
        Complain("not an IPv4 or IPv6 address (line skipped)");
        exit_code = kExitFailure;
        std::cout << "\n";
        continue;
      }
      input = *canonical;
    }
    auto masked = masker->Mask(input);
    if (!masked.ok()) return Fail(masked.status());
    std::cout << *masked << "\n";
  }
  return exit_code;
}

struct UnmaskOptions {
  std::string key_file;
  std::vector<std::string> values;
};

int Unmask(const UnmaskOptions& o) {
  auto masker = LoadMasker(o.key_file);
  if (!masker.ok()) return Fail(masker.status());
  int exit_code = kExitOk;
  for (const std::string& value : ValuesOrStdin(o.values)) {
    auto plain = masker->Unmask(value);
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
  return {cmd, [o]() { return Keygen(*o); }};
}

Command AddMaskCommand(CLI::App& app) {
  auto o = std::make_shared<MaskOptions>();
  CLI::App* cmd = app.add_subcommand("mask", "Print the masked form of each value (to look up rows)");
  AddKeyFileOption(*cmd, o->key_file);
  AddOption(*cmd, "field", o->field)->check(CLI::IsMember({"ip", "device_id"}));
  cmd->add_option("values", o->values, "Values (default: one a line on stdin)");
  return {cmd, [o]() { return Mask(*o); }};
}

Command AddUnmaskCommand(CLI::App& app) {
  auto o = std::make_shared<UnmaskOptions>();
  CLI::App* cmd = app.add_subcommand("unmask", "Print the original of each masked value (needs the key)");
  AddKeyFileOption(*cmd, o->key_file);
  cmd->add_option("values", o->values, "Masked values (default: one a line on stdin)");
  return {cmd, [o]() { return Unmask(*o); }};
}

}  // namespace sqs2pg::cli
