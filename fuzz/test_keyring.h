#pragma once
// The fixed keyring the fuzz targets mask with: deterministic, so a crash replays exactly.

#include "common/encoding.h"
#include "transform/keyring.h"
#include "transform/masker.h"
#include "transform/test_keys.h"

namespace sqs2pg::fuzz {

inline const transform::Keyring& TestKeyring() {
  static const transform::Keyring keyring = [] {
    std::string material = transform::testing::Material(1);
    std::string text = std::string(transform::Keyring::kLineTag) + " " +
                       transform::Keyring::KeyIdFor(material) + " " + HexEncode(material) + "\n";
    return transform::Keyring::Parse(text).value();
  }();
  return keyring;
}

// One Masker per process: fuzz targets run on one thread.
inline transform::Masker& TestMasker() {
  static transform::Masker masker = transform::Masker::Create(TestKeyring()).value();
  return masker;
}

}  // namespace sqs2pg::fuzz
