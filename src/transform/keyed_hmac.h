#pragma once
// HMAC-SHA256 under one key, keyed once: the one-way `hmac` mask. Equal inputs give equal outputs
// (countable, joinable), and nothing, not even the key, gives the input back.

#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sqs2pg::transform {

// Not thread-safe: calls reuse the keyed EVP_MAC context. One per thread.
class KeyedHmac {
 public:
  static constexpr size_t kMacBytes = 32;

  // Any key length (RFC 2104); sqs2pg's keys are 32 random bytes.
  static Result<KeyedHmac> Create(std::string_view key);
  KeyedHmac(KeyedHmac&&) noexcept;
  KeyedHmac& operator=(KeyedHmac&&) noexcept;
  ~KeyedHmac();

  // HMAC-SHA256 over the concatenation of `parts` (as if one message), appended to `out`.
  Status AppendMac(std::initializer_list<std::string_view> parts, std::string& out);

 private:
  struct Impl;
  explicit KeyedHmac(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sqs2pg::transform
