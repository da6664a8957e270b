#pragma once
// An IP address in the fixed 16-byte form the address-valued masks work on, and back to text.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqs2pg::transform {

struct IpAddress {
  // Network byte order. An IPv4 address is held IPv4-mapped (::ffff:a.b.c.d), so every mode sees
  // one layout; `v4` says which family the address is.
  std::array<std::uint8_t, 16> bytes{};
  bool v4 = false;

  // Address bits: 32 or 128.
  int bits() const { return v4 ? 32 : 128; }
  // The 4 (IPv4) or 16 (IPv6) bytes of the address itself: the binary form siv v2 encrypts.
  std::string_view Binary() const {
    return {reinterpret_cast<const char*>(bytes.data()) + (v4 ? 12 : 0), v4 ? 4u : 16u};
  }
  bool operator==(const IpAddress&) const = default;
};

// IPv4 dotted decimal as glibc's inet_pton accepts it, or IPv6 text. An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is its IPv4 address. nullopt for anything else, including text holding U+0000.
std::optional<IpAddress> ParseIp(std::string_view text);
// From the 16-byte form: IPv4-mapped bytes give an IPv4 address, anything else IPv6.
IpAddress IpFromBytes16(const std::uint8_t* bytes16);
// From the binary form: 4 bytes are IPv4, 16 bytes IPv6 (mapped ones IPv4); nullopt otherwise.
std::optional<IpAddress> IpFromBinary(std::string_view binary);
// Canonical text: dotted decimal for IPv4, RFC 5952 for IPv6 (inet_ntop).
std::string FormatIp(const IpAddress& ip);
// The same, appended to `out`: no temporary string on the per-row path.
void AppendIp(std::string& out, const IpAddress& ip);

}  // namespace sqs2pg::transform
