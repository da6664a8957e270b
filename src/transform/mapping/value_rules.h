#pragma once
// The input rules of each column type, as pure functions of one value (docs/mapping.md, "Types").
// Each writes the column's text form (what COPY takes) into `out`, or returns the rule that failed
// as a reason phrase ("is out of range for smallint") to which the caller prefixes the column's
// label. No phrase ever holds the value.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqs2pg::transform::mapping {

// Unix milliseconds of 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z: the dates Postgres and
// ISO 8601 agree on, and what every rule here keeps to.
constexpr std::int64_t kMinMillis = -62'135'596'800'000;
constexpr std::int64_t kEndMillis = 253'402'300'800'000;

// "YYYY-MM-DD" of the UTC day holding `unix_ms` (kMinMillis <= unix_ms < kEndMillis).
void AppendDate(std::string& out, std::int64_t unix_ms);
// "YYYY-MM-DD HH:MM:SS.mmm+00" for `unix_ms` (same range).
void AppendTimestamp(std::string& out, std::int64_t unix_ms);

// RFC 3339 full-date "YYYY-MM-DD", a real calendar day of years 0001-9999.
bool IsRfc3339Date(std::string_view s);
// RFC 3339 date-time: full-date, T (or t, or a space, RFC 3339 section 5.6's note), hh:mm:ss,
// optional fraction, then Z/z or +hh:mm/-hh:mm. Seconds up to 60 (a leap second).
bool IsRfc3339Timestamp(std::string_view s);
// -?digits, no sign on zero required, no spaces, no leading '+'.
std::optional<std::int64_t> ParseDecimalInteger(std::string_view s);
// Postgres numeric input without NaN/Infinity: -?digits[.digits][e[+-]digits], or .digits.
bool IsDecimalNumber(std::string_view s);
// 8-4-4-4-12 hex digits (either case) -> lower case; nullopt otherwise.
std::optional<std::string> CanonicalUuid(std::string_view s);
// Code points in valid UTF-8: what Postgres counts as characters.
std::size_t CountCharacters(std::string_view s);

}  // namespace sqs2pg::transform::mapping
