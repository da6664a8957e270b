#pragma once
// What AWS error answers mean for the credentials, and the XML error bodies of the Query
// protocol (STS, and any endpoint that rejects a request before it reaches SQS, such as IAM
// authentication in front of it).

#include <optional>
#include <string>
#include <string_view>

namespace sqs2pg::aws {

struct XmlError {
  std::string code;     // "SignatureDoesNotMatch"
  std::string message;  // AWS's sentence, as sent
};

// <ErrorResponse><Error><Code>…</Code><Message>…</Message></Error></ErrorResponse>, or the
// <Response><Errors><Error>… form; nullopt when the body is neither.
std::optional<XmlError> ParseXmlError(std::string_view body);

// ExpiredToken, ExpiredTokenException, RequestExpired: the credentials used have run out, so
// new ones may succeed.
bool IsExpiredTokenCode(std::string_view code);

// AWS refused who the caller is or what it may do: the credentials or the IAM policy are
// wrong, and trying again with the same ones will not help. Includes the expired-token codes.
bool IsCredentialErrorCode(std::string_view code);

// For a credential error code: what it means and what to do, naming where the credentials came
// from ("environment", "profile dev (...)"); "" for other codes. `action` is what was refused,
// e.g. "sqs:ReceiveMessage".
std::string CredentialErrorHint(std::string_view code, std::string_view credential_source,
                                std::string_view action);

}  // namespace sqs2pg::aws
