#include "transform/ip_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace sqs2pg::transform {
namespace {

constexpr std::uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

std::optional<IpAddress> ParseIp(std::string_view s) {
  // inet_pton needs a terminated string; the longest textual IPv6 form is 45 characters. An
  // embedded NUL would end the string early and let "198.51.100.16\0x" pass as an address.
  if (s.size() > 45 || s.find('\0') != std::string_view::npos) return std::nullopt;
  char text[64];
  s.copy(text, s.size());
  text[s.size()] = '\0';
  IpAddress ip;
  if (inet_pton(AF_INET, text, ip.bytes.data() + 12) == 1) {
    std::memcpy(ip.bytes.data(), kV4MappedPrefix, sizeof kV4MappedPrefix);
    ip.v4 = true;
    return ip;
  }
  if (inet_pton(AF_INET6, text, ip.bytes.data()) != 1) return std::nullopt;
  // ::ffff:a.b.c.d is how a dual-stack socket reports an IPv4 client: the same address.
  ip.v4 = std::equal(std::begin(kV4MappedPrefix), std::end(kV4MappedPrefix), ip.bytes.begin());
  return ip;
}

IpAddress IpFromBytes16(const std::uint8_t* bytes16) {
  IpAddress ip;
  std::memcpy(ip.bytes.data(), bytes16, 16);
  ip.v4 = std::equal(std::begin(kV4MappedPrefix), std::end(kV4MappedPrefix), ip.bytes.begin());
  return ip;
}

std::optional<IpAddress> IpFromBinary(std::string_view binary) {
  std::uint8_t bytes[16];
  if (binary.size() == 4) {
    std::memcpy(bytes, kV4MappedPrefix, sizeof kV4MappedPrefix);
    std::memcpy(bytes + 12, binary.data(), 4);
  } else if (binary.size() == 16) {
    std::memcpy(bytes, binary.data(), 16);
  } else {
    return std::nullopt;
  }
  return IpFromBytes16(bytes);
}

std::string FormatIp(const IpAddress& ip) {
  char out[INET6_ADDRSTRLEN];
  if (ip.v4) return inet_ntop(AF_INET, ip.bytes.data() + 12, out, sizeof out);
  return inet_ntop(AF_INET6, ip.bytes.data(), out, sizeof out);
}

}  // namespace sqs2pg::transform
