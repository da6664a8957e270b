#include "transform/login_transform.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>

#include "common/json_writer.h"
#include "common/result.h"
#include "transform/app_version.h"
#include "transform/ip_address.h"
#include "transform/json_shape.h"
#include "transform/masker.h"

namespace sqs2pg::transform {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::int64_t kMillisPerDay = 86'400'000;
// 10000-01-01T00:00:00Z. A later SentTimestamp overflowed the day count (found by fuzz_transform)
// and stored a wrong create_date; ISO dates end at 9999-12-31 anyway.
constexpr std::int64_t kEndOfYear9999Ms = 253'402'300'800'000;

// Postgres counts characters; simdjson has already checked that strings are valid UTF-8,
// so counting the bytes that start a code point is exact.
size_t CountCharacters(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The fields we read. Anything else in the body is ignored.
enum Field { kUserId, kIp, kDeviceId, kDeviceType, kLocale, kAppVersion, kFieldCount };
constexpr std::array<std::string_view, kFieldCount> kFieldNames = {"user_id",     "ip",     "device_id",
                                                                   "device_type", "locale", "app_version"};

Status CheckText(std::string_view field, std::string_view value, size_t max_chars) {
  if (value.find('\0') != std::string_view::npos) {
    return Status::InvalidInput(fmt::format("field {} contains U+0000, which Postgres cannot store", field));
  }
  // A character is at least one byte, so short values need no counting.
  if (value.size() <= max_chars) return Status::Ok();
  size_t chars = CountCharacters(value);
  if (chars > max_chars) {
    return Status::InvalidInput(
        fmt::format("field {} is {} characters, longer than its column's {}", field, chars, max_chars));
  }
  return Status::Ok();
}

}  // namespace

std::optional<std::string> CanonicalIp(std::string_view s) {
  std::optional<IpAddress> ip = ParseIp(s);
  if (!ip) return std::nullopt;
  return FormatIp(*ip);
}

struct LoginTransform::Impl {
  Impl(Masker& m, ColumnLimits l) : masker(m), limits(l) {}

  Masker& masker;
  ColumnLimits limits;
  simdjson::dom::parser parser;
  std::string padded;  // the body plus simdjson's padding, reused so parsing does not allocate

  simdjson::simdjson_result<element> Parse(std::string_view body) {
    // RFC 8259 lets a parser ignore a UTF-8 byte order mark, which some producers (Windows
    // tools, Excel exports) put first; simdjson would refuse it.
    if (body.starts_with("\xEF\xBB\xBF")) body.remove_prefix(3);
    if (padded.capacity() < body.size() + simdjson::SIMDJSON_PADDING) {
      padded.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    }
    padded.assign(body);
    return parser.parse(padded.data(), body.size(), false);
  }

  TransformOutcome Apply(std::string_view body, std::int64_t sent_timestamp_ms);
  Result<LoginRow> Validate(simdjson::dom::object object, std::int64_t sent_timestamp_ms, bool mask);
  Status Check(std::string_view body, std::int64_t sent_timestamp_ms);
  Result<std::string> RequiredString(const std::array<std::optional<element>, kFieldCount>& fields, Field f);
  Result<std::optional<std::string>> OptionalString(
      const std::array<std::optional<element>, kFieldCount>& fields, Field f, size_t max_chars);
  Status MaskIp(const IpAddress& ip, std::string& out);
  Result<std::string> MaskDeviceId(std::string_view value);
  Result<std::optional<std::string>> AppVersion(
      const std::array<std::optional<element>, kFieldCount>& fields);
  // `object`: the body as parsed, when it is a JSON object (for the one-way fields).
  Rejection Reject(std::string reason, std::string_view body, std::string shape,
                   const simdjson::dom::object* object = nullptr);
};

TransformOutcome LoginTransform::Impl::Apply(std::string_view body, std::int64_t sent_timestamp_ms) {
  element doc;
  if (auto error = Parse(body).get(doc)) {
    return Reject(fmt::format("body is not valid JSON ({})", simdjson::error_message(error)), body,
                  body.empty() ? "empty" : "invalid JSON");
  }
  simdjson::dom::object object;
  if (doc.get_object().get(object)) {
    return Reject(fmt::format("body is {}, expected a JSON object", JsonTypeName(doc.type())), body,
                  std::string(ShapeTypeName(doc.type())));
  }
  auto row = Validate(object, sent_timestamp_ms, true);
  if (!row.ok()) return Reject(row.status().message(), body, ObjectShape(object), &object);
  return std::move(row).value();
}

Result<LoginRow> LoginTransform::Impl::Validate(simdjson::dom::object object, std::int64_t sent_timestamp_ms,
                                                bool mask) {
  std::array<std::optional<element>, kFieldCount> fields;
  for (auto [key, value] : object) {
    for (size_t f = 0; f < kFieldCount; ++f) {
      if (key != kFieldNames[f]) continue;
      // Two values for one field: which one the sender meant is a guess we refuse to make.
      if (fields[f]) return Status::InvalidInput(fmt::format("field {} appears more than once", key));
      fields[f] = value;
    }
  }
  if (sent_timestamp_ms <= 0) return Status::InvalidInput("message has no SentTimestamp attribute");
  if (sent_timestamp_ms >= kEndOfYear9999Ms) {
    return Status::InvalidInput("message's SentTimestamp is after 9999-12-31");
  }

  LoginRow row;
  ASSIGN_OR_RETURN(row.user_id, RequiredString(fields, kUserId));
  RETURN_IF_ERROR(CheckText("user_id", row.user_id, limits.user_id));
  ASSIGN_OR_RETURN(std::string ip, RequiredString(fields, kIp));
  RETURN_IF_ERROR(CheckText("ip", ip, SIZE_MAX));
  // Parsed into its binary form: every mode masks the address, not the way it was written.
  std::optional<IpAddress> address = ParseIp(ip);
  if (!address) return Status::InvalidInput("field ip is not a valid IPv4 or IPv6 address");
  ASSIGN_OR_RETURN(std::string device_id, RequiredString(fields, kDeviceId));
  RETURN_IF_ERROR(CheckText("device_id", device_id, SIZE_MAX));
  ASSIGN_OR_RETURN(row.device_type, OptionalString(fields, kDeviceType, limits.device_type));
  ASSIGN_OR_RETURN(row.locale, OptionalString(fields, kLocale, limits.locale));
  ASSIGN_OR_RETURN(row.app_version, AppVersion(fields));
  if (mask) {
    RETURN_IF_ERROR(MaskIp(*address, row.masked_ip));
    ASSIGN_OR_RETURN(row.masked_device_id, MaskDeviceId(device_id));
  }
  row.create_date_days = static_cast<std::int32_t>(sent_timestamp_ms / kMillisPerDay);
  return row;
}

Result<std::string> LoginTransform::Impl::RequiredString(
    const std::array<std::optional<element>, kFieldCount>& fields, Field f) {
  std::string_view name = kFieldNames[f];
  if (!fields[f]) return Status::InvalidInput(fmt::format("missing field {}", name));
  std::string_view value;
  if (fields[f]->get_string().get(value)) {
    return Status::InvalidInput(
        fmt::format("field {} must be a string, got {}", name, JsonTypeName(fields[f]->type())));
  }
  if (value.empty()) return Status::InvalidInput(fmt::format("field {} is empty", name));
  return std::string(value);
}

Result<std::optional<std::string>> LoginTransform::Impl::OptionalString(
    const std::array<std::optional<element>, kFieldCount>& fields, Field f, size_t max_chars) {
  std::string_view name = kFieldNames[f];
  if (!fields[f] || fields[f]->is_null()) return std::optional<std::string>();
  std::string_view value;
  if (fields[f]->get_string().get(value)) {
    return Status::InvalidInput(
        fmt::format("field {} must be a string or null, got {}", name, JsonTypeName(fields[f]->type())));
  }
  RETURN_IF_ERROR(CheckText(name, value, max_chars));
  return std::optional<std::string>(std::string(value));
}

Result<std::optional<std::string>> LoginTransform::Impl::AppVersion(
    const std::array<std::optional<element>, kFieldCount>& fields) {
  size_t max_chars = limits.app_version_is_integer ? SIZE_MAX : limits.app_version;
  ASSIGN_OR_RETURN(std::optional<std::string> version, OptionalString(fields, kAppVersion, max_chars));
  if (!version || !limits.app_version_is_integer) return version;
  auto number = AppVersionToInteger(*version);
  if (!number) {
    return Status::InvalidInput(
        "field app_version does not fit the integer column (expected major[.minor[.patch]], "
        "minor and patch at most 999)");
  }
  return std::optional<std::string>(std::to_string(*number));
}

Status LoginTransform::Impl::MaskIp(const IpAddress& ip, std::string& out) {
  if (Status st = masker.MaskIpInto(ip, out); !st.ok()) return std::move(st).Annotate("field ip");
  // Every mode's form is short (55 characters at most), but a column may be narrower still.
  if (out.size() > limits.masked_value) {
    return Status::InvalidInput(
        fmt::format("field ip: its masked form is {} characters, more than its column's {}", out.size(),
                    limits.masked_value));
  }
  return Status::Ok();
}

Result<std::string> LoginTransform::Impl::MaskDeviceId(std::string_view value) {
  size_t max_bytes = masker.MaxFieldBytes(MaskField::kDeviceId, limits.masked_value);
  if (value.size() > max_bytes) {
    return Status::InvalidInput(
        fmt::format("field device_id is {} bytes; its masked form would not fit in {} characters "
                    "(at most {} bytes fit)",
                    value.size(), limits.masked_value, max_bytes));
  }
  auto masked = masker.MaskValue(MaskField::kDeviceId, value);
  if (!masked.ok()) return masked.status().Annotate("field device_id");
  return masked;
}

Rejection LoginTransform::Impl::Reject(std::string reason, std::string_view body, std::string shape,
                                       const simdjson::dom::object* object) {
  Rejection r;
  r.reason = std::move(reason);
  r.body_bytes = body.size();
  r.body_shape = std::move(shape);
  if (body.empty()) return r;  // nothing to hide, and AES-SIV here cannot seal an empty value
  // A field masked with hmac is one-way in rows; the sealed body must not undo that for a key
  // holder: its value is replaced by the hmac the row would hold (anything else: by the hmac of
  // its text) before sealing.
  const bool ip_hmac = masker.mode(MaskField::kIp) == MaskMode::kHmac;
  const bool device_hmac = masker.mode(MaskField::kDeviceId) == MaskMode::kHmac;
  std::string one_way;
  if (ip_hmac || device_hmac) {
    if (object == nullptr) {
      r.reason += OneWayNotKept(ip_hmac ? "ip" : "device_id");
      return r;
    }
    std::vector<std::string_view> keys;
    if (ip_hmac) keys.push_back("ip");
    if (device_hmac) keys.push_back("device_id");
    auto hashed =
        OneWayBody(*object, keys, [&](size_t which, std::string_view text, bool is_string, std::string& out) {
          const MaskField field = keys[which] == "ip" ? MaskField::kIp : MaskField::kDeviceId;
          if (is_string && field == MaskField::kIp) {
            if (std::optional<IpAddress> ip = ParseIp(text))
              return masker.MaskIpInto(*ip, out);  // as the row
          }
          return masker.HashTextInto(field, text, out);
        });
    if (!hashed.ok()) {
      r.reason += OneWayNotKept(ip_hmac ? "ip" : "device_id");
      return r;
    }
    one_way = std::move(hashed).value();
    body = one_way;
  }
  // The whole body, whatever it holds: no list of member names can say where PII is.
  if (Status st = masker.MaskInto(body, r.safe_body); st.ok()) {
    r.body_encrypted = true;
  } else {
    r.safe_body.clear();
    r.reason += "; the body could not be encrypted and was not kept (" + st.message() + ")";
  }
  return r;
}

Status LoginTransform::Impl::Check(std::string_view body, std::int64_t sent_timestamp_ms) {
  element doc;
  if (auto error = Parse(body).get(doc)) {
    return Status::InvalidInput(fmt::format("body is not valid JSON ({})", simdjson::error_message(error)));
  }
  simdjson::dom::object object;
  if (doc.get_object().get(object)) {
    return Status::InvalidInput(fmt::format("body is {}, expected a JSON object", JsonTypeName(doc.type())));
  }
  auto row = Validate(object, sent_timestamp_ms, false);
  return row.ok() ? Status::Ok() : row.status();
}

LoginTransform::LoginTransform(Masker& masker, ColumnLimits limits)
    : impl_(std::make_unique<Impl>(masker, limits)) {}
LoginTransform::~LoginTransform() = default;

TransformOutcome LoginTransform::Apply(std::string_view body, std::int64_t sent_timestamp_ms) {
  return impl_->Apply(body, sent_timestamp_ms);
}

Record LoginTransform::Apply(const ReceivedMessage& message) {
  TransformOutcome outcome = impl_->Apply(message.body, message.sent_timestamp_ms);
  if (auto* row = std::get_if<LoginRow>(&outcome)) return std::move(*row);
  return std::move(std::get<Rejection>(outcome));
}

Status LoginTransform::Check(std::string_view body, std::int64_t sent_timestamp_ms) {
  return impl_->Check(body, sent_timestamp_ms);
}

}  // namespace sqs2pg::transform
