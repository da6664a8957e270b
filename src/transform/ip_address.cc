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

namespace {

void AppendDecimal(std::string& out, unsigned v) {
  if (v >= 100) out.push_back(static_cast<char>('0' + v / 100));
  if (v >= 10) out.push_back(static_cast<char>('0' + v / 10 % 10));
  out.push_back(static_cast<char>('0' + v % 10));
}

void AppendHexWord(std::string& out, unsigned v) {
  static constexpr char kHex[] = "0123456789abcdef";
  bool started = false;
  for (int shift = 12; shift >= 0; shift -= 4) {
    unsigned nibble = (v >> shift) & 0xf;
    if (nibble == 0 && !started && shift > 0) continue;
    started = true;
    out.push_back(kHex[nibble]);
  }
}

}  // namespace

// By hand rather than inet_ntop, which formats through sprintf: the address-valued masks print an
// address per row. The output is inet_ntop's, byte for byte (the tests compare the two).
std::string FormatIp(const IpAddress& ip) {
  std::string out;
  AppendIp(out, ip);
  return out;
}

void AppendIp(std::string& out, const IpAddress& ip) {
  if (ip.v4) {
    for (int i = 12; i < 16; ++i) {
      if (i > 12) out.push_back('.');
      AppendDecimal(out, ip.bytes[i]);
    }
    return;
  }
  unsigned words[8];
  for (int i = 0; i < 8; ++i) words[i] = (unsigned{ip.bytes[2 * i]} << 8) | ip.bytes[2 * i + 1];
  // RFC 5952: the longest run of two or more zero words becomes "::", the first of equal runs.
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (words[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && words[j] == 0) ++j;
    if (j - i > best_len && j - i >= 2) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  // glibc prints ::a.b.c.d and ::ffff:0:a.b.c.d style forms with a dotted tail; leave those rare
  // shapes to it.
  if (best == 0 && best_len >= 5) {
    char text[INET6_ADDRSTRLEN];
    out.append(inet_ntop(AF_INET6, ip.bytes.data(), text, sizeof text));
    return;
  }
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out.append(i == 0 ? "::" : ":");
      i += best_len - 1;
      continue;
    }
    AppendHexWord(out, words[i]);
    if (i < 7) out.push_back(':');
  }
}

}  // namespace sqs2pg::transform
