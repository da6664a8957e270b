#pragma once
// AWS Signature Version 4 for header-signed requests to non-S3 services (SQS among them).
// Pure functions: no clock, no I/O. See
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aws/credentials.h"
#include "aws/http.h"
#include "common/result.h"

namespace sqs2pg::aws {

// A request as it will go on the wire.
struct SigningRequest {
  std::string_view method;
  // As in the request line, before any '?'. Every byte outside RFC 3986's unreserved set is
  // percent-encoded, so a path that is already percent-encoded gets encoded twice, as SigV4 wants
  // for non-S3 services. Dot segments and empty segments ("//") are removed first.
  std::string_view path;
  // As in the request line, after the '?', without it. Keys and values are percent-decoded and
  // re-encoded, so both "%E1%88%B4" and the raw UTF-8 sign the same. '+' is a literal plus.
  std::string_view query;
  // In the order given; must include Host. Every header given is signed.
  std::span<const HttpHeader> headers;
  std::string_view body;
};

struct SigningScope {
  std::string region;   // "us-east-1"
  std::string service;  // "sqs"
};

struct SigningOptions {
  // false leaves X-Amz-Security-Token out of the signature (added after signing), as a few
  // services want; SQS accepts it signed, which is the default.
  bool sign_security_token = true;
};

// Returns the headers to add to the request: X-Amz-Date (unless the request has one, whose value
// is then used as the signing time), X-Amz-Security-Token (when the credentials carry a session
// token and the request does not), and Authorization.
// Errors: no Host header, an Authorization header already present, a malformed X-Amz-Date, or an
// X-Amz-Security-Token that differs from the credentials' session token.
Result<std::vector<HttpHeader>> SignRequest(const SigningRequest& request, const Credentials& credentials,
                                            const SigningScope& scope,
                                            std::chrono::system_clock::time_point now,
                                            const SigningOptions& options = {});

// The canonical request over every header of `request` (task 1 of SigV4).
std::string CanonicalRequest(const SigningRequest& request);

// Task 2 of SigV4. amz_date is "YYYYMMDDTHHMMSSZ"; credential_scope is "date/region/service/aws4_request".
std::string StringToSign(std::string_view amz_date, std::string_view credential_scope,
                         std::string_view canonical_request);

// "YYYYMMDDTHHMMSSZ" in UTC.
std::string FormatAmzDate(std::chrono::system_clock::time_point time);

}  // namespace sqs2pg::aws
