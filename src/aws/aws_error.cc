#include "aws/aws_error.h"

#include <pugixml.hpp>

#include <algorithm>
#include <array>

namespace sqs2pg::aws {
namespace {

template <size_t N>
bool OneOf(std::string_view code, const std::array<std::string_view, N>& codes) {
  return std::find(codes.begin(), codes.end(), code) != codes.end();
}

constexpr std::array<std::string_view, 3> kExpired = {"ExpiredToken", "ExpiredTokenException",
                                                      "RequestExpired"};
constexpr std::array<std::string_view, 4> kUnknownKey = {
    "InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId", "InvalidToken"};
constexpr std::array<std::string_view, 3> kBadSignature = {
    "SignatureDoesNotMatch", "InvalidSignatureException", "IncompleteSignature"};
constexpr std::array<std::string_view, 2> kUnsigned = {"MissingAuthenticationToken",
                                                       "MissingAuthenticationTokenException"};
constexpr std::array<std::string_view, 4> kDenied = {"AccessDenied", "AccessDeniedException",
                                                     "AuthorizationError", "KMS.AccessDeniedException"};
constexpr std::array<std::string_view, 2> kClock = {"RequestTimeTooSkewed", "InvalidSignatureTimestamp"};

std::string Source(std::string_view source) {
  return source.empty() ? std::string("the configured credentials")
                        : "credentials from " + std::string(source);
}

}  // namespace

std::optional<XmlError> ParseXmlError(std::string_view body) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return std::nullopt;
  // Both shapes have an <Error> element holding <Code> and <Message>; the namespace a server
  // puts on the root does not change element names for pugixml.
  pugi::xpath_node error = doc.select_node("//Error[Code]");
  if (!error) return std::nullopt;
  XmlError out;
  out.code = error.node().child("Code").text().as_string();
  out.message = error.node().child("Message").text().as_string();
  if (out.code.empty()) return std::nullopt;
  return out;
}

bool IsExpiredTokenCode(std::string_view code) { return OneOf(code, kExpired); }

bool IsCredentialErrorCode(std::string_view code) {
  return OneOf(code, kExpired) || OneOf(code, kUnknownKey) || OneOf(code, kBadSignature) ||
         OneOf(code, kUnsigned) || OneOf(code, kDenied) || OneOf(code, kClock);
}

std::string CredentialErrorHint(std::string_view code, std::string_view credential_source,
                                std::string_view action) {
  const std::string from = Source(credential_source);
  if (OneOf(code, kBadSignature)) {
    return "the secret access key does not match the access key id (" + from +
           "); check the secret, and that this machine's clock is right";
  }
  if (OneOf(code, kUnknownKey)) {
    return "AWS does not know the access key id or session token (" + from +
           "): it is mistyped, deleted or deactivated, or meant for another endpoint or partition";
  }
  if (OneOf(code, kExpired)) {
    return "the temporary credentials (" + from +
           ") have expired and could not be replaced by fresh ones; renew them where they come from";
  }
  if (OneOf(code, kUnsigned)) {
    return "the request carried no signature AWS accepts (" + from + ")";
  }
  if (OneOf(code, kDenied)) {
    return "the credentials are valid (" + from + "), but their IAM identity may not call " +
           std::string(action) + ": allow it in the identity's policy (and the queue policy, if any)";
  }
  if (OneOf(code, kClock)) {
    return "this machine's clock is too far from AWS's: synchronise it (NTP) and try again";
  }
  return "";
}

}  // namespace sqs2pg::aws
