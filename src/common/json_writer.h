#pragma once
// Writing JSON text by hand is small enough not to need a library, but escaping must be exact:
// message bodies may hold quotes, backslashes, control characters and any Unicode.

#include <string>
#include <string_view>

namespace sqs2pg {

// Appends s as a quoted JSON string. s must be valid UTF-8; bytes >= 0x80 are copied unchanged.
void AppendJsonString(std::string& out, std::string_view s);

// The same for text that may not be valid UTF-8 (a log line quoting what a peer sent): each byte
// that does not start a well-formed UTF-8 sequence becomes \ufffd, so the output is always valid JSON.
void AppendJsonStringLossy(std::string& out, std::string_view s);

}  // namespace sqs2pg
