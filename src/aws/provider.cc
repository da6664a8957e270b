#include "aws/provider.h"

#include <charconv>
#include <ctime>

namespace sqs2pg::aws {

std::optional<std::chrono::system_clock::time_point> ParseIso8601(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fff][Z|±hh:mm]
  auto number = [&text](size_t pos, size_t len, int& out) {
    if (pos + len > text.size()) return false;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + len, out);
    return ec == std::errc() && end == text.data() + pos + len;
  };
  std::tm tm{};
  int year = 0, month = 0, day = 0;
  if (!number(0, 4, year) || text.size() < 19 || text[4] != '-' || !number(5, 2, month) || text[7] != '-' ||
      !number(8, 2, day) || (text[10] != 'T' && text[10] != 't' && text[10] != ' ') ||
      !number(11, 2, tm.tm_hour) || text[13] != ':' || !number(14, 2, tm.tm_min) || text[16] != ':' ||
      !number(17, 2, tm.tm_sec)) {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
  }
  long offset_seconds = 0;
  std::string_view zone = text.substr(pos);
  if (zone == "Z" || zone == "z" || zone.empty()) {
    // UTC; AWS always sends Z, an absent zone is read as UTC too.
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int hh = 0, mm = 0;
    if (!number(pos + 1, 2, hh) || !number(pos + 4, 2, mm)) return std::nullopt;
    offset_seconds = (zone[0] == '+' ? 1 : -1) * (hh * 3600L + mm * 60L);
  } else {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
    return std::nullopt;
  }
  time_t t = timegm(&tm);
  return std::chrono::system_clock::from_time_t(t - offset_seconds);
}

}  // namespace sqs2pg::aws
