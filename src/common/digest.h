#pragma once
// One-shot digests over OpenSSL 3. Raw bytes in, raw bytes out (HexEncode for text).

#include <string>
#include <string_view>

namespace sqs2pg {

std::string Sha256(std::string_view data);
std::string HmacSha256(std::string_view key, std::string_view data);
// Only to check SQS's MD5OfBody integrity field; never for anything secret.
std::string Md5(std::string_view data);

}  // namespace sqs2pg
