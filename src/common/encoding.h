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

// `value` (0 <= value < 10^width, width <= 4) in exactly `width` digits, zero-padded. By hand, not
// fmt: dates and timestamps are written for every row, and fmt::format_to through a
// back_inserter appends one character at a time (push_back was 1.8 % of a drain's CPU).
void AppendFixedDigits(std::string& out, std::int64_t value, int width);

}  // namespace sqs2pg
