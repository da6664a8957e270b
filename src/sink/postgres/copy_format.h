#pragma once
// PostgreSQL COPY text format, written by hand because it is the fastest way to hand rows to
// the server and its rules are few: tab between columns, newline after a row, \N for NULL,
// and backslash, tab, newline and carriage return escaped.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/login_record.h"

namespace sqs2pg::sink {

// Appends one escaped column value (no separator).
void AppendCopyText(std::string& out, std::string_view value);
void AppendCopyNullable(std::string& out, const std::optional<std::string>& value);
// ISO date "YYYY-MM-DD" for days since 1970-01-01.
void AppendCopyDate(std::string& out, std::int32_t days_since_epoch);
// ISO timestamp in UTC with milliseconds, "YYYY-MM-DD HH:MM:SS.mmm+00".
void AppendCopyTimestamp(std::string& out, std::int64_t unix_millis);

// One line of the staging COPY: message_id, user_id, device_type, masked_ip, masked_device_id,
// locale, app_version, create_date.
void AppendCopyRow(std::string& out, std::string_view message_id, const LoginRow& row);
// The same for a mapped row: message_id, then each value (NULL for nullopt).
void AppendCopyMappedRow(std::string& out, std::string_view message_id, const MappedRow& row);
// One line of the rejects COPY: message_id, received_at, reason, body, body_encrypted, body_bytes,
// body_shape.
void AppendCopyReject(std::string& out, std::string_view message_id, std::int64_t received_at_ms,
                      const Rejection& rejection);

}  // namespace sqs2pg::sink
