#include "transform/app_version.h"

#include <array>
#include <limits>

namespace sqs2pg::transform {
namespace {

// A part is 1-9 decimal digits: enough for any valid version, small enough not to overflow.
std::optional<std::int64_t> ParsePart(std::string_view part) {
  if (part.empty() || part.size() > 9) return std::nullopt;
  std::int64_t value = 0;
  for (char c : part) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

}  // namespace

std::optional<std::int32_t> AppVersionToInteger(std::string_view version) {
  std::array<std::int64_t, 3> parts{0, 0, 0};
  size_t count = 0;
  while (true) {
    if (count == parts.size()) return std::nullopt;  // a fourth part
    size_t dot = version.find('.');
    auto part = ParsePart(version.substr(0, dot));
    if (!part) return std::nullopt;
    parts[count++] = *part;
    if (dot == std::string_view::npos) break;
    version.remove_prefix(dot + 1);
  }
  if (parts[1] > 999 || parts[2] > 999) return std::nullopt;
  std::int64_t value = parts[0] * 1'000'000 + parts[1] * 1'000 + parts[2];
  if (value > std::numeric_limits<std::int32_t>::max()) return std::nullopt;
  return static_cast<std::int32_t>(value);
}

}  // namespace sqs2pg::transform
