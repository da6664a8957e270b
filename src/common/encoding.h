#pragma once
// Byte <-> text encodings shared by the signer (hex) and the masker (base64url), and fixed-width
// digits for the dates the sink and the mappings write.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqs2pg {

// Lower-case hex, two characters a byte.
std::string HexEncode(std::string_view bytes);
// Accepts upper or lower case; nullopt on odd length or a non-hex character.
std::optional<std::string> HexDecode(std::string_view hex);

// RFC 4648 section 5 alphabet ('-', '_'), no padding: safe in SQL, CSV, URLs and shells.
std::string Base64UrlEncode(std::string_view bytes);
// The same, appended to out: no temporary string on hot paths.
void AppendBase64Url(std::string& out, std::string_view bytes);
// nullopt on a character outside the alphabet or an impossible length.
std::optional<std::string> Base64UrlDecode(std::string_view text);

// The dates and times of COPY rows and mapped values, written digit by digit: one is written for
// every row, and fmt::format_to through a back_inserter appends a character at a time (its
// push_back was 1.8 % of a drain's CPU).
// "YYYY-MM-DD"; a year outside 0-9999 is written by fmt as "{:04}" writes it.
void AppendIsoDate(std::string& out, std::int64_t year, unsigned month, unsigned day);
// "HH:MM:SS.mmm" of a time of day given in milliseconds since midnight (0 to 86,399,999).
void AppendIsoTimeOfDay(std::string& out, std::int64_t millis_of_day);

}  // namespace sqs2pg
