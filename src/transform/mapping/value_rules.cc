#include "transform/mapping/value_rules.h"

#include <charconv>

#include "common/encoding.h"

namespace sqs2pg::transform::mapping {
namespace {

constexpr std::int64_t kMillisPerDay = 86'400'000;

// H. Hinnant's civil_from_days / days_from_civil (proleptic Gregorian, any era).
struct Civil {
  std::int64_t y;
  unsigned m, d;
};
Civil CivilFromDays(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {y + (m <= 2), m, d};
}

std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

bool Digits(std::string_view s, std::size_t at, std::size_t n, int& value) {
  if (at + n > s.size()) return false;
  value = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  return true;
}

bool LeapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

bool ValidDate(int y, int m, int d) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  return d <= kDays[m - 1] + (m == 2 && LeapYear(y));
}

bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

}  // namespace

void AppendDate(std::string& out, std::int64_t unix_ms) {
  Civil c = CivilFromDays(FloorDiv(unix_ms, kMillisPerDay));
  AppendIsoDate(out, c.y, c.m, c.d);
}

void AppendTimestamp(std::string& out, std::int64_t unix_ms) {
  const std::int64_t days = FloorDiv(unix_ms, kMillisPerDay);
  const std::int64_t in_day = unix_ms - days * kMillisPerDay;
  Civil c = CivilFromDays(days);
  AppendIsoDate(out, c.y, c.m, c.d);
  out.push_back(' ');
  AppendIsoTimeOfDay(out, in_day);
  out.append("+00");
}

bool IsRfc3339Date(std::string_view s) {
  int y, m, d;
  return s.size() == 10 && Digits(s, 0, 4, y) && s[4] == '-' && Digits(s, 5, 2, m) && s[7] == '-' &&
         Digits(s, 8, 2, d) && ValidDate(y, m, d);
}

bool IsRfc3339Timestamp(std::string_view s) {
  if (s.size() < 20 || !IsRfc3339Date(s.substr(0, 10))) return false;
  if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return false;
  int hh, mm, ss;
  if (!Digits(s, 11, 2, hh) || s[13] != ':' || !Digits(s, 14, 2, mm) || s[16] != ':' ||
      !Digits(s, 17, 2, ss)) {
    return false;
  }
  if (hh > 23 || mm > 59 || ss > 60) return false;
  std::size_t at = 19;
  if (s[at] == '.') {
    std::size_t start = ++at;
    while (at < s.size() && s[at] >= '0' && s[at] <= '9') ++at;
    if (at == start) return false;
  }
  std::string_view zone = s.substr(at);
  if (zone == "Z" || zone == "z") return true;
  int oh, om;
  return zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && Digits(zone, 1, 2, oh) && zone[3] == ':' &&
         Digits(zone, 4, 2, om) && oh <= 23 && om <= 59;
}

std::optional<std::int64_t> ParseDecimalInteger(std::string_view s) {
  std::int64_t v = 0;
  if (s.empty() || s[0] == '+') return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

bool IsDecimalNumber(std::string_view s) {
  std::size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  std::size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    std::size_t exp_digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++exp_digits;
    // Postgres refuses exponents beyond about +-1000; four digits keep the check simple and safe.
    if (exp_digits == 0 || exp_digits > 4) return false;
  }
  return i == s.size();
}

std::optional<std::string> CanonicalUuid(std::string_view s) {
  if (s.size() != 36) return std::nullopt;
  std::string out(s);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (out[i] != '-') return std::nullopt;
      continue;
    }
    if (!IsHex(out[i])) return std::nullopt;
    if (out[i] >= 'A' && out[i] <= 'F') out[i] = static_cast<char>(out[i] - 'A' + 'a');
  }
  return out;
}

std::size_t CountCharacters(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace sqs2pg::transform::mapping
