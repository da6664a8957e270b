#pragma once
// Test-only: key material that is easy to tell apart, for keyring and masker tests.

#include <string>

#include "transform/keyring.h"

namespace sqs2pg::transform::testing {

// 64 bytes counting up from `first`: a valid key, different for each `first`.
inline std::string Material(unsigned char first) {
  std::string m(Keyring::kKeyBytes, '\0');
  for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<char>(first + i);
  return m;
}

}  // namespace sqs2pg::transform::testing
