#include "sink/postgres/copy_format.h"

#include <fmt/format.h>

#include <chrono>

#include "common/encoding.h"

namespace sqs2pg::sink {

void AppendCopyText(std::string& out, std::string_view value) {
  size_t start = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    const char* escape = nullptr;
    switch (value[i]) {
      case '\\':
        escape = "\\\\";
        break;
      case '\t':
        escape = "\\t";
        break;
      case '\n':
        escape = "\\n";
        break;
      case '\r':
        escape = "\\r";
        break;
      default:
        continue;
    }
    out.append(value.substr(start, i - start));
    out.append(escape);
    start = i + 1;
  }
  out.append(value.substr(start));
}

void AppendCopyNullable(std::string& out, const std::optional<std::string>& value) {
  if (value) {
    AppendCopyText(out, *value);
  } else {
    out.append("\\N");
  }
}

void AppendCopyDate(std::string& out, std::int32_t days_since_epoch) {
  std::chrono::year_month_day ymd{std::chrono::sys_days{std::chrono::days{days_since_epoch}}};
  AppendIsoDate(out, static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()));
}

void AppendCopyTimestamp(std::string& out, std::int64_t unix_millis) {
  using namespace std::chrono;
  // Day and time of day by integer floor division: std::chrono's floor<days> and `t - day` convert
  // the day back to milliseconds, which overflows int64 near its ends (UBSan, found by
  // fuzz_copy_format). Years outside 1-9999 are not written correctly, but no value is undefined.
  constexpr std::int64_t kMillisPerDay = 86'400'000;
  std::int64_t day_number = unix_millis / kMillisPerDay;
  std::int64_t millis_of_day = unix_millis % kMillisPerDay;
  if (millis_of_day < 0) {
    millis_of_day += kMillisPerDay;
    --day_number;
  }
  year_month_day ymd{sys_days{days{day_number}}};
  AppendIsoDate(out, static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()));
  out.push_back(' ');
  AppendIsoTimeOfDay(out, millis_of_day);
  out.append("+00");
}

void AppendCopyRow(std::string& out, std::string_view message_id, const LoginRow& row) {
  AppendCopyText(out, message_id);
  out += '\t';
  AppendCopyText(out, row.user_id);
  out += '\t';
  AppendCopyNullable(out, row.device_type);
  out += '\t';
  AppendCopyText(out, row.masked_ip);
  out += '\t';
  AppendCopyText(out, row.masked_device_id);
  out += '\t';
  AppendCopyNullable(out, row.locale);
  out += '\t';
  AppendCopyNullable(out, row.app_version);
  out += '\t';
  AppendCopyDate(out, row.create_date_days);
  out += '\n';
}

void AppendCopyMappedRow(std::string& out, std::string_view message_id, const MappedRow& row) {
  AppendCopyText(out, message_id);
  for (const std::optional<std::string>& value : row.values) {
    out += '\t';
    AppendCopyNullable(out, value);
  }
  out += '\n';
}

void AppendCopyReject(std::string& out, std::string_view message_id, std::int64_t received_at_ms,
                      const Rejection& rejection) {
  AppendCopyText(out, message_id);
  out += '\t';
  AppendCopyTimestamp(out, received_at_ms);
  out += '\t';
  AppendCopyText(out, rejection.reason);
  out += '\t';
  AppendCopyText(out, rejection.safe_body);
  out += rejection.body_encrypted ? "\tt\t" : "\tf\t";
  char digits[24];
  out.append(digits, static_cast<size_t>(fmt::format_to(digits, "{}", rejection.body_bytes) - digits));
  out += '\t';
  AppendCopyText(out, rejection.body_shape);
  out += '\n';
}

}  // namespace sqs2pg::sink
