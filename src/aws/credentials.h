#pragma once
// AWS credentials as the signer needs them. The secret and the session token are secrets:
// never log, print or put them in a Status message.

#include <string>

namespace sqs2pg::aws {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  // Empty for long-term keys; set for temporary (STS) credentials.
  std::string session_token;
};

}  // namespace sqs2pg::aws
