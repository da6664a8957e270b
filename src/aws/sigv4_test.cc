#include "aws/sigv4.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sqs2pg::aws {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// Parameters of the AWS suite (tests/vectors/sigv4/SUITE_INFO.txt).
constexpr char kAccessKey[] = "AKIDEXAMPLE";
constexpr char kSecretKey[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr char kAmzDate[] = "20150830T123600Z";
constexpr char kCredentialScope[] = "20150830/us-east-1/service/aws4_request";
constexpr char kVanillaToken[] = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
// The number of cases in the suite; a walk that finds fewer has silently lost some.
constexpr size_t kSuiteCases = 34;

const fs::path kSuiteDir = fs::path(SQS2PG_TEST_VECTORS_DIR) / "sigv4";

std::chrono::system_clock::time_point SuiteTime() {
  using namespace std::chrono;
  return sys_days{year{2015} / August / 30} + hours{12} + minutes{36};
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct ParsedRequest {
  std::string method, path, query, body;
  std::vector<HttpHeader> headers;
};

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (true) {
    size_t end = text.find('\n', pos);
    lines.push_back(text.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (end == std::string::npos) return lines;
    pos = end + 1;
  }
}

// The request line is split at its first and last space: get-space has a raw space in its path.
// A line starting with whitespace continues the previous header (get-header-value-multiline); it is
// kept with its line break so the signer's folding is what gets tested.
ParsedRequest ParseReq(const std::string& text) {
  std::vector<std::string> lines = SplitLines(text);
  ParsedRequest req;
  const std::string& line0 = lines[0];
  size_t first = line0.find(' ');
  size_t last = line0.rfind(' ');
  req.method = line0.substr(0, first);
  std::string target = line0.substr(first + 1, last - first - 1);
  size_t q = target.find('?');
  req.path = target.substr(0, q);
  if (q != std::string::npos) req.query = target.substr(q + 1);
  size_t i = 1;
  for (; i < lines.size() && !lines[i].empty(); ++i) {
    if (lines[i][0] == ' ' || lines[i][0] == '\t') {
      req.headers.back().value += "\n" + lines[i];
      continue;
    }
    size_t colon = lines[i].find(':');
    req.headers.push_back({lines[i].substr(0, colon), lines[i].substr(colon + 1)});
  }
  for (size_t b = i + 1; b < lines.size(); ++b) {
    if (b > i + 1) req.body.push_back('\n');
    req.body += lines[b];
  }
  return req;
}

std::string CaseName(const fs::path& req) { return req.stem().string(); }

struct SuiteCase {
  fs::path req;
  // Test names and ctest show the case name rather than the whole path.
  friend void PrintTo(const SuiteCase& c, std::ostream* os) { *os << CaseName(c.req); }
};

std::vector<SuiteCase> DiscoverCases() {
  std::vector<SuiteCase> cases;
  if (!fs::is_directory(kSuiteDir)) return cases;
  for (const auto& entry : fs::recursive_directory_iterator(kSuiteDir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".req") cases.push_back({entry.path()});
  }
  std::sort(cases.begin(), cases.end(), [](const auto& a, const auto& b) { return a.req < b.req; });
  return cases;
}

std::string SessionTokenFor(const std::string& name) {
  if (name == "get-vanilla-with-session-token") return kVanillaToken;
  if (name.starts_with("post-sts-")) {
    std::vector<std::string> lines = SplitLines(ReadFile(kSuiteDir / "post-sts-token" / "readme.txt"));
    return lines.back();
  }
  return "";
}

const HttpHeader* Find(const std::vector<HttpHeader>& headers, std::string_view name) {
  for (const HttpHeader& h : headers) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

TEST(SigV4SuiteTest, FindsEveryCase) {
  std::vector<SuiteCase> cases = DiscoverCases();
  EXPECT_EQ(cases.size(), kSuiteCases) << "in " << kSuiteDir;
  EXPECT_TRUE(
      std::any_of(cases.begin(), cases.end(), [](const auto& p) { return CaseName(p.req) == "get-space"; }));
  EXPECT_TRUE(std::any_of(cases.begin(), cases.end(),
                          [](const auto& p) { return CaseName(p.req) == "post-sts-header-after"; }));
}

class SigV4SuiteCaseTest : public ::testing::TestWithParam<SuiteCase> {};

TEST_P(SigV4SuiteCaseTest, MatchesCanonicalRequestStringToSignAndAuthorization) {
  const fs::path& req_path = GetParam().req;
  const std::string name = CaseName(req_path);
  ParsedRequest req = ParseReq(ReadFile(req_path));
  Credentials credentials{kAccessKey, kSecretKey, SessionTokenFor(name)};
  SigningOptions options;
  // The suite's example of a service that wants the token added after signing.
  options.sign_security_token = name != "post-sts-header-after";
  SigningRequest request{req.method, req.path, req.query, req.headers, req.body};

  Result<std::vector<HttpHeader>> added =
      SignRequest(request, credentials, {"us-east-1", "service"}, SuiteTime(), options);
  ASSERT_TRUE(added.ok()) << added.status().message();

  // The request as signed: what was given plus what the signer added, less what it left unsigned.
  std::vector<HttpHeader> signed_headers = req.headers;
  for (const HttpHeader& h : *added) {
    if (h.name == "Authorization" || (!options.sign_security_token && h.name == "X-Amz-Security-Token"))
      continue;
    signed_headers.push_back(h);
  }
  SigningRequest as_signed = request;
  as_signed.headers = signed_headers;
  const std::string creq = CanonicalRequest(as_signed);
  EXPECT_EQ(creq, ReadFile(fs::path(req_path).replace_extension(".creq")));
  EXPECT_EQ(StringToSign(kAmzDate, kCredentialScope, creq),
            ReadFile(fs::path(req_path).replace_extension(".sts")));
  const HttpHeader* authorization = Find(*added, "Authorization");
  ASSERT_NE(authorization, nullptr);
  EXPECT_EQ(authorization->value, ReadFile(fs::path(req_path).replace_extension(".authz")));

  EXPECT_EQ(Find(*added, "X-Amz-Date"), nullptr) << "every .req carries X-Amz-Date already";
  const HttpHeader* token = Find(*added, "X-Amz-Security-Token");
  bool request_has_token = Find(req.headers, "X-Amz-Security-Token") != nullptr;
  EXPECT_EQ(token != nullptr, !credentials.session_token.empty() && !request_has_token);
  if (token != nullptr) {
    EXPECT_EQ(token->value, credentials.session_token);
  }
}

INSTANTIATE_TEST_SUITE_P(Aws, SigV4SuiteCaseTest, ::testing::ValuesIn(DiscoverCases()),
                         [](const ::testing::TestParamInfo<SuiteCase>& info) {
                           std::string out = CaseName(info.param.req);
                           std::replace(out.begin(), out.end(), '-', '_');
                           return out;
                         });

// get-vanilla's request and expected signature, for the unit tests below.
constexpr char kVanillaAuthz[] =
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
    "SignedHeaders=host;x-amz-date, "
    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

Result<std::vector<HttpHeader>> SignGet(const std::vector<HttpHeader>& headers,
                                        std::chrono::system_clock::time_point now,
                                        const std::string& token = "") {
  return SignRequest({"GET", "/", "", headers, ""}, {kAccessKey, kSecretKey, token}, {"us-east-1", "service"},
                     now);
}

TEST(SigV4Test, FormatsAmzDateInUtc) {
  EXPECT_EQ(FormatAmzDate(SuiteTime()), kAmzDate);
  EXPECT_EQ(FormatAmzDate(SuiteTime() + std::chrono::milliseconds(999)), kAmzDate);
  EXPECT_EQ(FormatAmzDate(std::chrono::system_clock::time_point{}), "19700101T000000Z");
}

TEST(SigV4Test, AddsXAmzDateFromTheClockWhenAbsent) {
  auto added = SignGet({{"Host", "example.amazonaws.com"}}, SuiteTime());
  ASSERT_TRUE(added.ok());
  ASSERT_EQ(added->size(), 2u);
  EXPECT_EQ((*added)[0].name, "X-Amz-Date");
  EXPECT_EQ((*added)[0].value, kAmzDate);
  EXPECT_EQ((*added)[1].value, kVanillaAuthz);
}

TEST(SigV4Test, AnXAmzDateInTheRequestWinsOverTheClock) {
  auto added = SignGet({{"Host", "example.amazonaws.com"}, {"X-Amz-Date", kAmzDate}},
                       SuiteTime() + std::chrono::hours(30));
  ASSERT_TRUE(added.ok());
  ASSERT_EQ(added->size(), 1u);
  EXPECT_EQ((*added)[0].value, kVanillaAuthz);
}

TEST(SigV4Test, RejectsRequestsItCannotSign) {
  EXPECT_FALSE(SignGet({{"X-Amz-Date", kAmzDate}}, SuiteTime()).ok());
  EXPECT_FALSE(SignGet({{"Host", "h"}, {"Authorization", "x"}}, SuiteTime()).ok());
  auto bad_date = SignGet({{"Host", "h"}, {"X-Amz-Date", "2015-08-30T12:36:00Z"}}, SuiteTime());
  ASSERT_FALSE(bad_date.ok());
  EXPECT_EQ(bad_date.status().code(), Status::Code::kInvalidInput);
}

TEST(SigV4Test, TokenMismatchErrorDoesNotShowEitherToken) {
  auto mismatch = SignGet({{"Host", "h"}, {"X-Amz-Security-Token", "request-token-value"}}, SuiteTime(),
                          "credential-token-value");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_THAT(mismatch.status().message(), Not(HasSubstr("token-value")));
}

TEST(SigV4Test, SecretNeverAppearsInTheHeaders) {
  auto added = SignGet({{"Host", "h"}}, SuiteTime());
  ASSERT_TRUE(added.ok());
  for (const HttpHeader& h : *added) EXPECT_THAT(h.value, Not(HasSubstr(kSecretKey)));
}

std::string CanonicalPathAndQuery(std::string_view path, std::string_view query) {
  std::vector<HttpHeader> headers = {{"Host", "h"}};
  std::string creq = CanonicalRequest({"GET", path, query, headers, ""});
  size_t first = creq.find('\n');
  size_t third = creq.find('\n', creq.find('\n', first + 1) + 1);
  return creq.substr(first + 1, third - first - 1);
}

TEST(SigV4Test, EncodesAnAlreadyEncodedPathAgainAsNonS3ServicesExpect) {
  EXPECT_EQ(CanonicalPathAndQuery("/a%20b", ""), "/a%2520b\n");
  EXPECT_EQ(CanonicalPathAndQuery("", ""), "/\n");
  EXPECT_EQ(CanonicalPathAndQuery("/a/./b/../c/.", ""), "/a/c/\n");
  EXPECT_EQ(CanonicalPathAndQuery("/../..", ""), "/\n");
}

TEST(SigV4Test, NormalizesQueryParameters) {
  EXPECT_EQ(CanonicalPathAndQuery("/", "b=2&&a&a=%zz&c=x+y&d=%41"), "/\na=&a=%25zz&b=2&c=x%2By&d=A");
}

TEST(SigV4Test, CombinesRepeatedHeadersAndFoldsWhitespace) {
  std::vector<HttpHeader> headers = {
      {"Host", "h"}, {"X-B", " 1 "}, {"x-a", "\tq  \r\n r "}, {"X-b", ""}, {"x-B", "2"}};
  std::string creq = CanonicalRequest({"GET", "/", "", headers, ""});
  EXPECT_THAT(creq, HasSubstr("\nhost:h\nx-a:q r\nx-b:1,,2\n\nhost;x-a;x-b\n"));
}

}  // namespace
}  // namespace sqs2pg::aws
