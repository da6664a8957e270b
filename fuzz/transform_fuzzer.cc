// Fuzz target: the message transform. Input: 8 bytes of SentTimestamp (little endian), 1 byte of
// flags (bit 0: integer app_version column; bit 1: small column limits), then the SQS message body.
// Runs LoginTransform::Apply on the test keyring, then the COPY encoding of what came out, and
// checks what the README promises: rows are within limits, valid UTF-8 without NUL, masked values
// unmask to the canonical ip and the device_id, the COPY line reads back as the row, a reject keeps
// a body that is JSON (or unmasks to the original) and no plaintext ip or device_id survives.

#include <simdjson.h>

#include <cctype>
#include <cstring>
#include <vector>

#include "fuzz/copy_decode.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/test_keyring.h"
#include "sink/postgres/copy_format.h"
#include "transform/login_transform.h"

namespace sqs2pg::fuzz {
namespace {

constexpr std::int64_t kMillisPerDay = 86'400'000;

size_t Chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool CleanText(std::string_view s) {
  return simdjson::validate_utf8(s.data(), s.size()) && s.find('\0') == std::string_view::npos;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t DaysFromCivil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// "YYYY-MM-DD", year 1970-9999 (a login cannot predate the epoch, and PostgreSQL reads a five-digit or
// signed year differently), naming exactly `days`.
bool IsDate(std::string_view s, std::int32_t days) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (s[i] < '0' || s[i] > '9') return false;
  auto num = [&](size_t at, size_t len) {
    int v = 0;
    for (size_t i = at; i < at + len; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  int y = num(0, 4), m = num(5, 2), d = num(8, 2);
  if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31) return false;
  return DaysFromCivil(y, static_cast<unsigned>(m), static_cast<unsigned>(d)) == days;
}

// Strings of "ip"/"device_id" members at any depth, and every other key, string and scalar's text.
void Collect(simdjson::dom::element e, bool pii, std::vector<std::string>& secrets,
             std::vector<std::string>& others) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::OBJECT: {
      simdjson::dom::object object = e.get_object().value_unsafe();
      for (auto [key, value] : object) {
        others.emplace_back(key);
        Collect(value, key == "ip" || key == "device_id", secrets, others);
      }
      return;
    }
    case element_type::ARRAY: {
      simdjson::dom::array array = e.get_array().value_unsafe();
      for (auto item : array) Collect(item, false, secrets, others);
      return;
    }
    case element_type::STRING: {
      std::string_view s = e.get_string().value_unsafe();
      (pii ? secrets : others).emplace_back(s);
      return;
    }
    default:
      others.push_back(simdjson::to_string(e));
  }
}

// A plaintext we can look for without false alarms: long enough not to occur by chance, and made of
// characters that cannot straddle two JSON tokens of the output.
bool Searchable(std::string_view s) {
  if (s.size() < 8) return false;
  for (char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
              c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// The text with every masked value ("<key id>.<base64url>") cut out. Masked values are ciphertext,
// checked by unmasking them; libFuzzer, which sees every comparison, can grow an input whose
// device_id equals a piece of another value's ciphertext, and that is no leak.
std::string WithoutMaskedValues(std::string_view text) {
  const std::string prefix = TestMasker().active_key_id() + ".";
  std::string out;
  for (size_t at = 0; at < text.size();) {
    size_t hit = text.find(prefix, at);
    if (hit == std::string_view::npos) {
      out.append(text.substr(at));
      break;
    }
    out.append(text.substr(at, hit - at));
    at = hit + prefix.size();
    while (at < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[at])) || text[at] == '-' || text[at] == '_')) {
      ++at;
    }
    out.push_back('\x01');  // keeps the pieces on either side apart
  }
  return out;
}

void CheckNoPlaintext(std::string_view body, const std::vector<std::string_view>& outputs) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body.data(), body.size()).get(doc)) return;
  std::vector<std::string> secrets, others;
  Collect(doc, false, secrets, others);
  const std::string& key_id = TestMasker().active_key_id();
  for (const std::string& secret : secrets) {
    if (!Searchable(secret) || key_id.find(secret) != std::string::npos) continue;
    bool elsewhere = false;  // the same text may legitimately be kept as another field's value
    for (const std::string& other : others) elsewhere = elsewhere || other.find(secret) != std::string::npos;
    if (elsewhere) continue;
    for (std::string_view out : outputs) {
      FUZZ_CHECK(WithoutMaskedValues(out).find(secret) == std::string::npos);
    }
  }
}

transform::LoginTransform& TransformFor(unsigned flags) {
  static transform::LoginTransform* transforms[4] = {};
  if (transforms[flags] == nullptr) {
    transform::ColumnLimits limits;
    limits.app_version_is_integer = flags & 1;
    if (flags & 2) {
      limits.user_id = 8;
      limits.device_type = 4;
      limits.locale = 4;
      limits.app_version = 5;
      limits.masked_value = 64;
    }
    transforms[flags] = new transform::LoginTransform(TestMasker(), limits);  // lives as long as the process
  }
  return *transforms[flags];
}

void CheckRow(const LoginRow& row, std::int64_t sent_ms, unsigned flags) {
  transform::Masker& masker = TestMasker();
  bool small = flags & 2;
  FUZZ_CHECK(!row.user_id.empty() && CleanText(row.user_id) && Chars(row.user_id) <= (small ? 8u : 128u));
  for (const auto* field : {&row.device_type, &row.locale}) {
    if (*field) FUZZ_CHECK(CleanText(**field) && Chars(**field) <= (small ? 4u : 32u));
  }
  if (row.app_version) {
    FUZZ_CHECK(CleanText(*row.app_version));
    if (flags & 1) {
      FUZZ_CHECK(!row.app_version->empty() &&
                 row.app_version->find_first_not_of("0123456789") == std::string::npos);
    } else {
      FUZZ_CHECK(Chars(*row.app_version) <= (small ? 5u : 15u));
    }
  }
  size_t masked_max = small ? 64 : 256;
  FUZZ_CHECK(row.masked_ip.size() <= masked_max && row.masked_device_id.size() <= masked_max);
  auto ip = masker.Unmask(row.masked_ip);
  FUZZ_CHECK(ip.ok());
  auto canonical = transform::CanonicalIp(*ip);
  FUZZ_CHECK(canonical && *canonical == *ip);  // masked in canonical form, so equal ips mask equally
  auto device_id = masker.Unmask(row.masked_device_id);
  FUZZ_CHECK(device_id.ok() && !device_id->empty() && CleanText(*device_id));
  FUZZ_CHECK(sent_ms > 0 && row.create_date_days == sent_ms / kMillisPerDay);

  std::string line;
  sink::AppendCopyRow(line, "m-1", row);
  FUZZ_CHECK(line.ends_with('\n'));
  auto columns = DecodeCopyLine(std::string_view(line).substr(0, line.size() - 1));
  FUZZ_CHECK(columns && columns->size() == 8);
  const auto& c = *columns;
  FUZZ_CHECK(c[0] == "m-1" && c[1] == row.user_id && c[2] == row.device_type && c[3] == row.masked_ip &&
             c[4] == row.masked_device_id && c[5] == row.locale && c[6] == row.app_version);
  FUZZ_CHECK(c[7] && IsDate(*c[7], row.create_date_days));
}

void CheckRejection(const Rejection& r, std::string_view body) {
  FUZZ_CHECK(!r.reason.empty() && CleanText(r.reason));
  if (r.body_encrypted) {
    auto original = TestMasker().Unmask(r.safe_body);
    FUZZ_CHECK(original.ok() && *original == body);
  } else if (!r.safe_body.empty()) {
    FUZZ_CHECK(CleanText(r.safe_body));
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    FUZZ_CHECK(!parser.parse(r.safe_body.data(), r.safe_body.size()).get(doc));
  } else {
    FUZZ_CHECK(body.empty() || r.reason.find("could not be encrypted") != std::string::npos);
  }
  std::string line;
  sink::AppendCopyReject(line, "m-1", 1'700'000'000'000, r);
  FUZZ_CHECK(line.ends_with('\n'));
  auto columns = DecodeCopyLine(std::string_view(line).substr(0, line.size() - 1));
  FUZZ_CHECK(columns && columns->size() == 7);
  FUZZ_CHECK((*columns)[2] == r.reason && (*columns)[3] == r.safe_body);
  FUZZ_CHECK((*columns)[4] == (r.body_encrypted ? "t" : "f"));
  FUZZ_CHECK((*columns)[5] == std::to_string(r.body_bytes) && (*columns)[6] == r.body_shape);
  // The shape is kept in clear: it must be valid JSON (or a bare type name) and hold no value.
  FUZZ_CHECK(CleanText(r.body_shape));
}

}  // namespace

void FuzzTransform(std::string_view data) {
  if (data.size() < 9) return;
  std::int64_t sent_ms;
  std::memcpy(&sent_ms, data.data(), sizeof sent_ms);
  unsigned flags = static_cast<unsigned char>(data[8]) & 3;
  std::string_view body = data.substr(9);

  transform::TransformOutcome outcome = TransformFor(flags).Apply(body, sent_ms);
  std::vector<std::string_view> outputs;
  if (const auto* row = std::get_if<LoginRow>(&outcome)) {
    CheckRow(*row, sent_ms, flags);
    outputs = {row->user_id};  // the masked columns are checked by unmasking them
    for (const auto* f : {&row->device_type, &row->locale, &row->app_version})
      if (*f) outputs.push_back(**f);
  } else {
    const auto& r = std::get<Rejection>(outcome);
    CheckRejection(r, body);
    outputs = {r.safe_body, r.reason};
  }
  CheckNoPlaintext(body, outputs);
}

}  // namespace sqs2pg::fuzz

SQS2PG_FUZZ_ENTRY(sqs2pg::fuzz::FuzzTransform)
