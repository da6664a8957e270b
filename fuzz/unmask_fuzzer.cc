// Fuzz target: masking both ways. The input as a plaintext must mask and unmask back to itself;
// the input as `sqs2pg unmask` input (a masked value "<key id>.<base64url>" from a table or stdin)
// must, if it unmasks at all, mask back to the very same text (one plaintext, one masked form, as
// joins and lookups assume), and otherwise get an error that does not echo the value.

#include "fuzz/fuzz_target.h"
#include "fuzz/test_keyring.h"

namespace sqs2pg::fuzz {

void FuzzUnmask(std::string_view data) {
  transform::Masker& masker = TestMasker();
  if (!data.empty()) {
    auto sealed = masker.Mask(data);
    FUZZ_CHECK(sealed.ok() && sealed->size() == transform::Masker::MaskedLength(data.size()));
    auto opened = masker.Unmask(*sealed);
    FUZZ_CHECK(opened.ok() && *opened == data);
  }
  auto plain = masker.Unmask(data);
  if (!plain.ok()) {
    // The payload (after "<8 hex id>.") must not be quoted. Only payloads with a character no fixed
    // error text uses are checked: libFuzzer's dictionary otherwise rebuilds pieces of the fixed
    // texts themselves ("asked value (expected <key-id>.<base"), which is no leak.
    constexpr std::string_view kNeverInMessages = "_=+/\\\"#$%&*;@[]^`{|}~!\t\n";
    if (data.size() > 9) {
      std::string_view payload = data.substr(9);
      bool distinctive = payload.find_first_of(kNeverInMessages) != std::string_view::npos;
      for (unsigned char c : payload) distinctive = distinctive || c >= 0x80;
      if (payload.size() >= 8 && distinctive) {
        FUZZ_CHECK(plain.status().message().find(payload) == std::string::npos);
      }
    }
    return;
  }
  auto masked = masker.Mask(*plain);
  FUZZ_CHECK(masked.ok() && *masked == data);
}

}  // namespace sqs2pg::fuzz

SQS2PG_FUZZ_ENTRY(sqs2pg::fuzz::FuzzUnmask)
