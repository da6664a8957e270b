// Fuzz target: the COPY text encoding. Input: 8 bytes of a timestamp in ms and 4 bytes of a day
// number (little endian), 1 byte saying which nullable columns are NULL, then up to seven text
// values separated by 0xFF. Every row and reject line must read back, with PostgreSQL's COPY text
// rules, as exactly the values written; dates and timestamps in years 1-9999 must name the same
// instant; any other value must at least not crash or overflow.

#include <cstring>
#include <vector>

#include "fuzz/copy_decode.h"
#include "fuzz/fuzz_target.h"
#include "sink/postgres/copy_format.h"

namespace sqs2pg::fuzz {
namespace {

// 0001-01-01 and 9999-12-31 as days since 1970-01-01.
constexpr std::int64_t kFirstDay = -719162;
constexpr std::int64_t kLastDay = 2932896;
constexpr std::int64_t kMillisPerDay = 86'400'000;

std::int64_t DaysFromCivil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool Digits(std::string_view s) { return !s.empty() && s.find_first_not_of("0123456789") == s.npos; }
int Num(std::string_view s) { return std::stoi(std::string(s)); }

// "YYYY-MM-DD" -> days, or nullopt.
std::optional<std::int64_t> ReadDate(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  auto y = s.substr(0, 4), m = s.substr(5, 2), d = s.substr(8, 2);
  if (!Digits(y) || !Digits(m) || !Digits(d)) return std::nullopt;
  if (Num(m) < 1 || Num(m) > 12 || Num(d) < 1 || Num(d) > 31) return std::nullopt;
  return DaysFromCivil(Num(y), static_cast<unsigned>(Num(m)), static_cast<unsigned>(Num(d)));
}

// "YYYY-MM-DD HH:MM:SS.mmm+00" -> ms, or nullopt.
std::optional<std::int64_t> ReadTimestamp(std::string_view s) {
  if (s.size() != 26 || s[10] != ' ' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s.substr(23) != "+00")
    return std::nullopt;
  auto days = ReadDate(s.substr(0, 10));
  auto h = s.substr(11, 2), mi = s.substr(14, 2), se = s.substr(17, 2), ms = s.substr(20, 3);
  if (!days || !Digits(h) || !Digits(mi) || !Digits(se) || !Digits(ms)) return std::nullopt;
  if (Num(h) > 23 || Num(mi) > 59 || Num(se) > 59) return std::nullopt;
  return *days * kMillisPerDay + ((Num(h) * 60 + Num(mi)) * 60 + Num(se)) * 1000 + Num(ms);
}

}  // namespace

void FuzzCopyFormat(std::string_view data) {
  if (data.size() < 13) return;
  std::int64_t millis;
  std::int32_t days;
  std::memcpy(&millis, data.data(), sizeof millis);
  std::memcpy(&days, data.data() + 8, sizeof days);
  unsigned nulls = static_cast<unsigned char>(data[12]);
  std::vector<std::string> values;
  for (std::string_view rest = data.substr(13); values.size() < 7;) {
    size_t sep = rest.find('\xff');
    values.emplace_back(rest.substr(0, sep));
    if (sep == std::string_view::npos) break;
    rest.remove_prefix(sep + 1);
  }
  values.resize(7);

  LoginRow row;
  row.user_id = values[1];
  if (!(nulls & 1)) row.device_type = values[2];
  row.masked_ip = values[3];
  row.masked_device_id = values[4];
  if (!(nulls & 2)) row.locale = values[5];
  if (!(nulls & 4)) row.app_version = values[6];
  row.create_date_days = days;
  std::string line;
  sink::AppendCopyRow(line, values[0], row);
  FUZZ_CHECK(line.ends_with('\n'));
  auto c = DecodeCopyLine(std::string_view(line).substr(0, line.size() - 1));
  FUZZ_CHECK(c && c->size() == 8);
  FUZZ_CHECK((*c)[0] == values[0] && (*c)[1] == row.user_id && (*c)[2] == row.device_type &&
             (*c)[3] == row.masked_ip && (*c)[4] == row.masked_device_id && (*c)[5] == row.locale &&
             (*c)[6] == row.app_version);
  FUZZ_CHECK((*c)[7].has_value());
  if (days >= kFirstDay && days <= kLastDay) FUZZ_CHECK(ReadDate(*(*c)[7]) == days);

  Rejection rejection{values[1], values[2], (nulls & 8) != 0};
  line.clear();
  sink::AppendCopyReject(line, values[0], millis, rejection);
  FUZZ_CHECK(line.ends_with('\n'));
  c = DecodeCopyLine(std::string_view(line).substr(0, line.size() - 1));
  FUZZ_CHECK(c && c->size() == 7);
  FUZZ_CHECK((*c)[0] == values[0] && (*c)[2] == rejection.reason && (*c)[3] == rejection.safe_body &&
             (*c)[4] == (rejection.body_encrypted ? "t" : "f"));
  FUZZ_CHECK((*c)[5] == std::to_string(rejection.body_bytes) && (*c)[6] == rejection.body_shape);
  FUZZ_CHECK((*c)[1].has_value());
  if (millis >= kFirstDay * kMillisPerDay && millis < (kLastDay + 1) * kMillisPerDay) {
    FUZZ_CHECK(ReadTimestamp(*(*c)[1]) == millis);
  }
}

}  // namespace sqs2pg::fuzz

SQS2PG_FUZZ_ENTRY(sqs2pg::fuzz::FuzzCopyFormat)
