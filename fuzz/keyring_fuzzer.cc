// Fuzz target: the keyring text format, as read from a key file or SQS2PG_KEYS. A keyring that
// parses holds well-formed keys whose ids match their material and survives Serialize -> Parse
// unchanged; one that does not parse gets an error that quotes no key material.

#include "common/encoding.h"
#include "fuzz/fuzz_target.h"
#include "transform/keyring.h"
#include "transform/masker.h"

namespace sqs2pg::fuzz {
namespace {

// Runs of at least 16 hex digits in the input: what could be (part of) a key.
bool QuotesHexRunOf(std::string_view message, std::string_view input) {
  auto is_hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  };
  for (size_t i = 0; i < input.size();) {
    if (!is_hex(input[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < input.size() && is_hex(input[j])) ++j;
    if (j - i >= 16) {
      std::string_view run = input.substr(i, j - i);
      for (size_t k = 0; k + 16 <= run.size(); ++k) {
        if (message.find(run.substr(k, 16)) != std::string_view::npos) return true;
      }
    }
    i = j;
  }
  return false;
}

}  // namespace

void FuzzKeyring(std::string_view data) {
  using transform::Keyring;
  Result<Keyring> keyring = Keyring::Parse(data);
  Result<Keyring> from_env = Keyring::FromEnvironmentValue(data, "SQS2PG_KEYS");
  FUZZ_CHECK(keyring.ok() == from_env.ok());
  if (!keyring.ok()) {
    FUZZ_CHECK(!QuotesHexRunOf(keyring.status().message(), data));
    FUZZ_CHECK(!QuotesHexRunOf(from_env.status().message(), data));
    return;
  }
  FUZZ_CHECK(!keyring->keys().empty());
  for (const transform::Key& key : keyring->keys()) {
    FUZZ_CHECK(key.material.size() == transform::KeyBytesFor(key.mode));
    FUZZ_CHECK(key.id == Keyring::KeyIdFor(key.material, key.mode));
    FUZZ_CHECK(keyring->Find(key.id) != nullptr);
  }
  auto again = Keyring::Parse(keyring->Serialize());
  FUZZ_CHECK(again.ok() && again->keys().size() == keyring->keys().size());
  for (size_t i = 0; i < again->keys().size(); ++i) {
    FUZZ_CHECK(again->keys()[i].id == keyring->keys()[i].id);
    FUZZ_CHECK(again->keys()[i].material == keyring->keys()[i].material);
    FUZZ_CHECK(again->keys()[i].mode == keyring->keys()[i].mode);
  }
  // Whatever keys parsed, they must mask and unmask.
  auto masker = transform::Masker::Create(*keyring);
  FUZZ_CHECK(masker.ok());
  auto masked = masker->Mask("192.0.2.1");
  FUZZ_CHECK(masked.ok() && masked->starts_with(keyring->active().id + "."));
  auto plain = masker->Unmask(*masked);
  FUZZ_CHECK(plain.ok() && *plain == "192.0.2.1");
}

}  // namespace sqs2pg::fuzz

SQS2PG_FUZZ_ENTRY(sqs2pg::fuzz::FuzzKeyring)
