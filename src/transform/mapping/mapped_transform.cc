#include "transform/mapping/mapped_transform.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "common/json_writer.h"
#include "transform/app_version.h"
#include "transform/ip_address.h"
#include "transform/json_shape.h"
#include "transform/mapping/value_rules.h"
#include "transform/masker.h"

namespace sqs2pg::transform::mapping {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

// Any string or key holding U+0000 anywhere in a JSON value: Postgres's jsonb cannot store it.
bool HoldsNul(element e) {
  switch (e.type()) {
    case element_type::STRING:
      return e.get_string().value_unsafe().find('\0') != std::string_view::npos;
    case element_type::ARRAY: {
      simdjson::dom::array array = e.get_array().value_unsafe();
      for (element item : array)
        if (HoldsNul(item)) return true;
      return false;
    }
    case element_type::OBJECT: {
      simdjson::dom::object object = e.get_object().value_unsafe();
      for (auto [key, value] : object) {
        if (key.find('\0') != std::string_view::npos || HoldsNul(value)) return true;
      }
      return false;
    }
    default:
      return false;
  }
}

// One value to convert: a JSON element, or a piece of metadata presented as one.
struct Value {
  element_type type = element_type::NULL_VALUE;
  std::string_view str;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  double d = 0;
  bool b = false;
  std::optional<element> json;  // for jsonb
};

Value FromElement(element e) {
  Value v;
  v.type = e.type();
  v.json = e;
  switch (v.type) {
    case element_type::STRING:
      v.str = e.get_string().value_unsafe();
      break;
    case element_type::INT64:
      v.i = e.get_int64().value_unsafe();
      break;
    case element_type::UINT64:
      v.u = e.get_uint64().value_unsafe();
      break;
    case element_type::DOUBLE:
      v.d = e.get_double().value_unsafe();
      break;
    case element_type::BOOL:
      v.b = e.get_bool().value_unsafe();
      break;
    default:
      break;
  }
  return v;
}

Value StringValue(std::string_view s) {
  Value v;
  v.type = element_type::STRING;
  v.str = s;
  return v;
}
Value IntValue(std::int64_t i) {
  Value v;
  v.type = element_type::INT64;
  v.i = i;
  return v;
}

// One column of the plan: everything a message needs, resolved when the mapping is compiled.
struct Step {
  size_t out = 0;  // position in MappedRow::values
  SourceKind source = SourceKind::kPointer;
  std::string attribute;            // kAttribute
  std::string metadata_name;        // "SentTimestamp": for "message has no ... attribute"
  TypeKind kind = TypeKind::kText;  // the type the value is read as
  ValueFormat format = ValueFormat::kDefault;
  bool required = false, from_string = false, non_empty = false;
  size_t max_chars = SIZE_MAX;     // characters of the (unmasked) value
  bool max_is_column = false;      // the limit is the column's varchar(n), not max_length
  size_t masked_chars = SIZE_MAX;  // masked columns: the column's varchar(n)
  std::optional<Masker::ColumnKey> key;
  std::string mask_field;
  bool has_default = false;
  std::optional<std::string> default_out;  // converted and masked when compiled
  std::string label;
  std::string expected;          // "a string", "a number", ...
  std::string expected_or_null;  // "... or null"
};

std::string ExpectedFor(const Step& s) {
  switch (s.kind) {
    case TypeKind::kText:
    case TypeKind::kVarchar:
    case TypeKind::kUuid:
    case TypeKind::kInet:
      return "a string";
    case TypeKind::kSmallint:
    case TypeKind::kInteger:
    case TypeKind::kBigint:
      if (s.format == ValueFormat::kVersion) return "a string";
      [[fallthrough]];
    case TypeKind::kNumeric:
    case TypeKind::kDouble:
      return s.from_string ? "a number or a string holding one" : "a number";
    case TypeKind::kBoolean:
      return s.from_string ? "true or false (or the string \"true\" or \"false\")" : "true or false";
    case TypeKind::kDate:
    case TypeKind::kTimestamptz:
      if (s.format == ValueFormat::kEpochS || s.format == ValueFormat::kEpochMs) {
        return s.from_string ? "a number or a string holding one" : "a number";
      }
      return "a string";
    case TypeKind::kJsonb:
      return "any JSON value";
  }
  return "a value";
}

const char* IntegerTypeName(TypeKind k) {
  return k == TypeKind::kSmallint ? "smallint" : k == TypeKind::kInteger ? "integer" : "bigint";
}

bool InRange(TypeKind k, std::int64_t v) {
  if (k == TypeKind::kSmallint) return v >= -32768 && v <= 32767;
  if (k == TypeKind::kInteger)
    return v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max();
  return true;
}

// Converts one present, non-null value by its step's type rules into `out`. On failure, the reason
// (the label and the rule, never the value).
Status Convert(const Step& s, const Value& v, std::string& out, IpAddress* ip) {
  auto mismatch = [&] {
    return Status::InvalidInput(fmt::format("{} must be {}, got {}", s.label,
                                            s.required ? s.expected : s.expected_or_null,
                                            JsonTypeName(v.type)));
  };
  auto fail = [&](std::string_view rule) {
    return Status::InvalidInput(fmt::format("{} {}", s.label, rule));
  };
  out.clear();
  if (v.type == element_type::STRING) {
    if (s.non_empty && v.str.empty()) return fail("is empty");
    if (s.kind != TypeKind::kJsonb && v.str.find('\0') != std::string_view::npos) {
      return fail("contains U+0000, which Postgres cannot store");
    }
  }
  switch (s.kind) {
    case TypeKind::kText:
    case TypeKind::kVarchar: {
      if (v.type != element_type::STRING) return mismatch();
      // A character is at least one byte, so short values need no counting.
      if (v.str.size() > s.max_chars) {
        size_t chars = CountCharacters(v.str);
        if (chars > s.max_chars) {
          return Status::InvalidInput(fmt::format("{} is {} characters, longer than {} {}", s.label, chars,
                                                  s.max_is_column ? "its column's" : "its max_length",
                                                  s.max_chars));
        }
      }
      out.assign(v.str);
      return Status::Ok();
    }
    case TypeKind::kUuid: {
      if (v.type != element_type::STRING) return mismatch();
      std::optional<std::string> uuid = CanonicalUuid(v.str);
      if (!uuid) return fail("is not a UUID (8-4-4-4-12 hex digits)");
      out = std::move(*uuid);
      return Status::Ok();
    }
    case TypeKind::kInet: {
      if (v.type != element_type::STRING) return mismatch();
      std::optional<IpAddress> parsed = ParseIp(v.str);
      if (!parsed) return fail("is not a valid IPv4 or IPv6 address");
      if (ip) *ip = *parsed;
      AppendIp(out, *parsed);
      return Status::Ok();
    }
    case TypeKind::kSmallint:
    case TypeKind::kInteger:
    case TypeKind::kBigint: {
      std::int64_t n = 0;
      if (s.format == ValueFormat::kVersion) {
        if (v.type != element_type::STRING) return mismatch();
        std::optional<std::int32_t> version = AppVersionToInteger(v.str);
        if (!version || !InRange(s.kind, *version)) {
          return fail(
              "does not fit the integer column (expected major[.minor[.patch]], minor and patch at most "
              "999)");
        }
        out = std::to_string(*version);
        return Status::Ok();
      }
      switch (v.type) {
        case element_type::INT64:
          n = v.i;
          break;
        case element_type::UINT64:
          return fail(fmt::format("is out of range for {}", IntegerTypeName(s.kind)));
        case element_type::DOUBLE:
          if (v.d != std::trunc(v.d)) return fail("must be a whole number");
          // 2^63 is exactly representable; anything at or above it is out of bigint's range.
          if (!(v.d >= -9.223372036854775808e18 && v.d < 9.223372036854775808e18)) {
            return fail(fmt::format("is out of range for {}", IntegerTypeName(s.kind)));
          }
          n = static_cast<std::int64_t>(v.d);
          break;
        case element_type::STRING: {
          if (!s.from_string) return mismatch();
          std::optional<std::int64_t> parsed = ParseDecimalInteger(v.str);
          if (!parsed)
            return fail(fmt::format("is not a decimal integer string for {}", IntegerTypeName(s.kind)));
          n = *parsed;
          break;
        }
        default:
          return mismatch();
      }
      if (!InRange(s.kind, n)) return fail(fmt::format("is out of range for {}", IntegerTypeName(s.kind)));
      out = std::to_string(n);
      return Status::Ok();
    }
    case TypeKind::kNumeric:
    case TypeKind::kDouble: {
      switch (v.type) {
        case element_type::INT64:
          out = std::to_string(v.i);
          return Status::Ok();
        case element_type::UINT64:
          out = std::to_string(v.u);
          return Status::Ok();
        case element_type::DOUBLE:
          // The shortest text that reads back as the same double.
          out = fmt::format("{}", v.d);
          return Status::Ok();
        case element_type::STRING:
          if (!s.from_string) return mismatch();
          if (!IsDecimalNumber(v.str)) return fail("is not a decimal number string");
          if (s.kind == TypeKind::kDouble) {
            double d = 0;
            auto [end, ec] = std::from_chars(v.str.data(), v.str.data() + v.str.size(), d);
            if (ec != std::errc() || end != v.str.data() + v.str.size() || !std::isfinite(d)) {
              return fail("is out of range for double precision");
            }
            out = fmt::format("{}", d);
          } else {
            out.assign(v.str);
          }
          return Status::Ok();
        default:
          return mismatch();
      }
    }
    case TypeKind::kBoolean: {
      if (v.type == element_type::BOOL) {
        out = v.b ? "true" : "false";
        return Status::Ok();
      }
      if (v.type == element_type::STRING && s.from_string && (v.str == "true" || v.str == "false")) {
        out.assign(v.str);
        return Status::Ok();
      }
      return mismatch();
    }
    case TypeKind::kDate:
    case TypeKind::kTimestamptz: {
      const bool date = s.kind == TypeKind::kDate;
      if (s.format == ValueFormat::kEpochS || s.format == ValueFormat::kEpochMs) {
        std::int64_t n = 0;
        if (v.type == element_type::INT64) {
          n = v.i;
        } else if (v.type == element_type::DOUBLE && v.d == std::trunc(v.d) && std::fabs(v.d) < 1e15) {
          n = static_cast<std::int64_t>(v.d);
        } else if (v.type == element_type::STRING && s.from_string) {
          std::optional<std::int64_t> parsed = ParseDecimalInteger(v.str);
          if (!parsed) return fail("is not a decimal integer string");
          n = *parsed;
        } else if (v.type == element_type::UINT64 || v.type == element_type::DOUBLE) {
          return fail(s.format == ValueFormat::kEpochS
                          ? "must be a whole number of seconds within years 1-9999"
                          : "must be a whole number of milliseconds within years 1-9999");
        } else {
          return mismatch();
        }
        std::int64_t ms = n;
        if (s.format == ValueFormat::kEpochS) {
          if (n >= kEndMillis / 1000) return fail("is after 9999-12-31");
          if (n < kMinMillis / 1000) return fail("is before 0001-01-01");
          ms = n * 1000;
        }
        if (ms >= kEndMillis) return fail("is after 9999-12-31");
        if (ms < kMinMillis) return fail("is before 0001-01-01");
        if (date) {
          AppendDate(out, ms);
        } else {
          AppendTimestamp(out, ms);
        }
        return Status::Ok();
      }
      if (v.type != element_type::STRING) return mismatch();
      if (date ? !IsRfc3339Date(v.str) : !IsRfc3339Timestamp(v.str)) {
        return fail(date ? "is not an RFC 3339 date (YYYY-MM-DD)"
                         : "is not an RFC 3339 timestamp (YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm))");
      }
      out.assign(v.str);
      return Status::Ok();
    }
    case TypeKind::kJsonb: {
      if (v.json) {
        if (HoldsNul(*v.json)) return fail("contains U+0000, which Postgres cannot store");
        out = simdjson::to_string(*v.json);
      } else if (v.type == element_type::STRING) {
        AppendJsonString(out, v.str);
      } else {
        out = std::to_string(v.i);
      }
      return Status::Ok();
    }
  }
  return mismatch();
}

// The dispatch tree: each pointer's tokens become a path of nodes, so a message is read in one pass
// over each object a pointer passes through, with no lookup by column name.
struct Node {
  std::vector<std::pair<std::string, std::uint32_t>> children;  // key -> node
  std::vector<std::uint32_t> leaves;                            // steps whose pointer ends here
  std::optional<size_t> index;  // the node's token as an array index, when it is one
  std::string duplicate_label;  // the first column under this key, named when it repeats
};

std::optional<size_t> ArrayIndex(std::string_view token) {
  // RFC 6901: "0" or digits without a leading zero.
  if (token.empty() || token.size() > 9 || (token.size() > 1 && token[0] == '0')) return std::nullopt;
  size_t n = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  return n;
}

constexpr std::string_view kSnsPrefix = "SNS envelope: ";
constexpr std::string_view kEventBridgePrefix = "EventBridge envelope: ";

}  // namespace

struct MappedTransform::Impl {
  Masker& masker;
  Envelope envelope = Envelope::kNone;
  UnknownFields unknown = UnknownFields::kIgnore;
  std::vector<std::string> columns;
  std::vector<MessageAttribute> attribute_views;        // Apply(ReceivedMessage)'s, reused
  std::vector<Step> steps;                              // in table order
  std::vector<std::uint32_t> order;                     // evaluation order: metadata, required, optional
  std::vector<std::uint32_t> masked;                    // masked steps, table order
  std::vector<std::pair<size_t, std::string>> key_ids;  // key id columns: position, value
  size_t extra_out = SIZE_MAX;
  std::string extra_label;
  std::vector<Node> nodes;  // nodes[0]: the payload

  // Per message, reused.
  simdjson::dom::parser parser, inner_parser;
  std::string padded, inner_padded;
  std::vector<std::uint8_t> node_seen;
  std::vector<std::optional<element>> found;  // per step
  std::vector<std::uint8_t> defaulted;        // per step: the value is the compiled default
  std::vector<IpAddress> ips;                 // per step: an inet input, for masking
  std::vector<MessageAttribute> sns_attributes;
  std::string extra;
  std::string plain_;  // a masked column's plaintext, between conversion and masking
  std::string reason;

  explicit Impl(Masker& m) : masker(m) {}

  std::uint32_t AddPath(const std::vector<std::string>& tokens, std::uint32_t step,
                        const std::string& label) {
    std::uint32_t n = 0;
    for (const std::string& token : tokens) {
      auto& kids = nodes[n].children;
      auto it = std::find_if(kids.begin(), kids.end(), [&](const auto& c) { return c.first == token; });
      if (it == kids.end()) {
        Node child;
        child.index = ArrayIndex(token);
        child.duplicate_label = label;
        // push_back may move every node: take `kids` again after it.
        nodes.push_back(std::move(child));
        nodes[n].children.emplace_back(token, static_cast<std::uint32_t>(nodes.size() - 1));
        n = static_cast<std::uint32_t>(nodes.size() - 1);
      } else {
        n = it->second;
      }
    }
    nodes[n].leaves.push_back(step);
    return n;
  }

  simdjson::simdjson_result<element> Parse(simdjson::dom::parser& p, std::string& buffer,
                                           std::string_view body) {
    // RFC 8259 lets a parser ignore a UTF-8 byte order mark (LoginTransform does the same).
    if (body.starts_with("\xEF\xBB\xBF")) body.remove_prefix(3);
    if (buffer.capacity() < body.size() + simdjson::SIMDJSON_PADDING) {
      buffer.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    }
    buffer.assign(body);
    return p.parse(buffer.data(), body.size(), false);
  }

  // Columns masked one-way (hmac): their values must not be recoverable from a reject's sealed
  // body (issue 17 item 9), as LoginTransform does for ip and device_id. Top-level members of a
  // body without envelope are replaced by their hmac; anywhere else the body is not kept.
  std::vector<std::string> one_way_names;      // the members' names (pointer tokens)
  std::vector<std::string_view> one_way_keys;  // views of one_way_names, for OneWayBody
  std::vector<std::uint32_t> one_way_steps;    // their steps, in the same order
  std::string one_way_unreachable;             // not empty: such a column's field, out of reach

  // `object`: the body as parsed, when it is a JSON object.
  Rejection Reject(std::string why, std::string_view body, std::string shape,
                   const simdjson::dom::object* object = nullptr) {
    Rejection r;
    r.reason = std::move(why);
    r.body_bytes = body.size();
    r.body_shape = std::move(shape);
    if (body.empty()) return r;
    std::string one_way;
    if (!one_way_unreachable.empty() || !one_way_keys.empty()) {
      if (!one_way_unreachable.empty() || object == nullptr) {
        r.reason += OneWayNotKept(!one_way_unreachable.empty() ? one_way_unreachable
                                                               : steps[one_way_steps.front()].mask_field);
        return r;
      }
      auto hashed = OneWayBody(*object, one_way_keys,
                               [&](size_t which, std::string_view text, bool is_string, std::string& out) {
                                 const Step& s = steps[one_way_steps[which]];
                                 if (is_string && s.kind == TypeKind::kInet) {
                                   if (std::optional<IpAddress> ip = ParseIp(text))
                                     return masker.MaskColumnIpInto(*s.key, s.mask_field, *ip, out);
                                 }
                                 return masker.MaskColumnInto(*s.key, s.mask_field, text, out);
                               });
      if (!hashed.ok()) {
        r.reason += OneWayNotKept(steps[one_way_steps.front()].mask_field);
        return r;
      }
      one_way = std::move(hashed).value();
      body = one_way;
    }
    if (Status st = masker.MaskInto(body, r.safe_body); st.ok()) {
      r.body_encrypted = true;
    } else {
      r.safe_body.clear();
      r.reason += "; the body could not be encrypted and was not kept (" + st.message() + ")";
    }
    return r;
  }

  void Visit(std::uint32_t n, element value);
  bool WalkObject(std::uint32_t n, simdjson::dom::object object, bool top);
  Status Unwrap(element doc, simdjson::dom::object root, element& payload_element,
                simdjson::dom::object& payload);
  Status Evaluate(const MessageMetadata& metadata, MappedRow& row);
  MappedOutcome Apply(std::string_view body, const MessageMetadata& metadata);
};

void MappedTransform::Impl::Visit(std::uint32_t n, element value) {
  for (std::uint32_t leaf : nodes[n].leaves) found[leaf] = value;
  if (nodes[n].children.empty()) return;
  simdjson::dom::object object;
  if (value.get_object().get(object) == simdjson::SUCCESS) {
    (void)WalkObject(n, object, false);
    return;
  }
  simdjson::dom::array array;
  if (value.get_array().get(array) == simdjson::SUCCESS) {
    for (const auto& [token, child] : nodes[n].children) {
      if (!nodes[child].index) continue;
      element item;
      if (array.at(*nodes[child].index).get(item) == simdjson::SUCCESS) Visit(child, item);
    }
  }
}

// False (with `reason` set) when the message is refused: a key that repeats, or an unknown one
// under unknown_fields = "reject".
bool MappedTransform::Impl::WalkObject(std::uint32_t n, simdjson::dom::object object, bool top) {
  size_t position = 0;
  for (auto [key, value] : object) {
    ++position;
    std::uint32_t child = 0;
    for (const auto& [token, node] : nodes[n].children) {
      if (token == key) {
        child = node;
        break;
      }
    }
    if (child != 0) {
      // Two values for one field: which one the sender meant is a guess we refuse to make.
      if (node_seen[child]) {
        if (reason.empty()) reason = fmt::format("{} appears more than once", nodes[child].duplicate_label);
        return false;
      }
      node_seen[child] = 1;
      Visit(child, value);
      if (!reason.empty()) return false;
      continue;
    }
    if (!top || unknown == UnknownFields::kIgnore) continue;
    if (unknown == UnknownFields::kReject) {
      // A key can be a value someone used as a name: only identifier-like ones are named.
      reason = LooksLikeIdentifier(key) ? fmt::format("unknown field {}", key)
                                        : fmt::format("unknown field #{}", position);
      return false;
    }
    if (HoldsNul(value) || key.find('\0') != std::string_view::npos) {
      reason = fmt::format("{} contains U+0000, which Postgres cannot store", extra_label);
      return false;
    }
    if (extra.size() > 1) extra.push_back(',');
    AppendJsonString(extra, key);
    extra.push_back(':');
    extra.append(simdjson::to_string(value));
  }
  return true;
}

Status MappedTransform::Impl::Unwrap(element doc, simdjson::dom::object root, element& payload_element,
                                     simdjson::dom::object& payload) {
  payload = root;
  payload_element = doc;
  Envelope kind = envelope;
  if (kind == Envelope::kNone) return Status::Ok();
  if (kind == Envelope::kAuto) {
    std::string_view type;
    element ignored;
    if (root["Type"].get_string().get(type) == simdjson::SUCCESS && type == "Notification" &&
        root["TopicArn"].get(ignored) == simdjson::SUCCESS &&
        root["Message"].get(ignored) == simdjson::SUCCESS) {
      kind = Envelope::kSns;
    } else if (root["detail-type"].get(ignored) == simdjson::SUCCESS &&
               root["source"].get(ignored) == simdjson::SUCCESS &&
               root["detail"].get(ignored) == simdjson::SUCCESS) {
      kind = Envelope::kEventBridge;
    } else {
      return Status::Ok();
    }
  }
  if (kind == Envelope::kEventBridge) {
    element detail;
    if (root["detail"].get(detail) != simdjson::SUCCESS) {
      return Status::InvalidInput(fmt::format("{}missing detail", kEventBridgePrefix));
    }
    payload_element = detail;
    if (detail.get_object().get(payload) != simdjson::SUCCESS) {
      return Status::InvalidInput(fmt::format("{}detail is {}, expected a JSON object", kEventBridgePrefix,
                                              JsonTypeName(detail.type())));
    }
    return Status::Ok();
  }
  // SNS without raw message delivery.
  std::string_view type;
  if (root["Type"].get_string().get(type) != simdjson::SUCCESS || type != "Notification") {
    return Status::InvalidInput(fmt::format("{}Type is not \"Notification\"", kSnsPrefix));
  }
  element message;
  if (root["Message"].get(message) != simdjson::SUCCESS) {
    return Status::InvalidInput(fmt::format("{}missing Message", kSnsPrefix));
  }
  std::string_view text;
  if (message.get_string().get(text) != simdjson::SUCCESS) {
    return Status::InvalidInput(
        fmt::format("{}Message must be a string, got {}", kSnsPrefix, JsonTypeName(message.type())));
  }
  simdjson::dom::object attributes;
  element attributes_element;
  if (root["MessageAttributes"].get(attributes_element) == simdjson::SUCCESS &&
      !attributes_element.is_null()) {
    if (attributes_element.get_object().get(attributes) != simdjson::SUCCESS) {
      return Status::InvalidInput(fmt::format("{}MessageAttributes must be an object", kSnsPrefix));
    }
    for (auto [name, attribute] : attributes) {
      std::string_view value;
      if (attribute["Value"].get_string().get(value) != simdjson::SUCCESS) {
        return Status::InvalidInput(
            fmt::format("{}a MessageAttributes entry has no string Value", kSnsPrefix));
      }
      sns_attributes.push_back({name, value});
    }
  }
  element inner;
  if (auto error = Parse(inner_parser, inner_padded, text).get(inner)) {
    return Status::InvalidInput(
        fmt::format("{}Message is not valid JSON ({})", kSnsPrefix, simdjson::error_message(error)));
  }
  payload_element = inner;
  if (inner.get_object().get(payload) != simdjson::SUCCESS) {
    return Status::InvalidInput(
        fmt::format("{}Message is {}, expected a JSON object", kSnsPrefix, JsonTypeName(inner.type())));
  }
  return Status::Ok();
}

Status MappedTransform::Impl::Evaluate(const MessageMetadata& metadata, MappedRow& row) {
  for (std::uint32_t index : order) {
    const Step& s = steps[index];
    std::optional<std::string>& out = row.values[s.out];
    Value value;
    bool present = true;
    switch (s.source) {
      case SourceKind::kPointer:
        present = found[index].has_value();
        if (present) value = FromElement(*found[index]);
        break;
      case SourceKind::kMessageId:
        present = !metadata.message_id.empty();
        value = StringValue(metadata.message_id);
        break;
      case SourceKind::kSentTimestamp:
        present = metadata.sent_timestamp_ms > 0;
        value = IntValue(metadata.sent_timestamp_ms);
        break;
      case SourceKind::kReceiveCount:
        present = metadata.receive_count > 0;
        value = IntValue(metadata.receive_count);
        break;
      case SourceKind::kGroupId:
        present = !metadata.group_id.empty();
        value = StringValue(metadata.group_id);
        break;
      case SourceKind::kAttribute: {
        present = false;
        // SNS's attributes first: with an SNS envelope they are the producer's.
        for (const MessageAttribute& a : sns_attributes) {
          if (!present && a.name == s.attribute) {
            present = true;
            value = StringValue(a.value);
          }
        }
        for (const MessageAttribute& a : metadata.attributes) {
          if (!present && a.name == s.attribute) {
            present = true;
            value = StringValue(a.value);
          }
        }
        break;
      }
    }
    if (!present) {
      if (s.has_default) {
        out = s.default_out;
        defaulted[index] = 1;
        continue;
      }
      if (!s.required) continue;  // NULL
      if (s.source == SourceKind::kPointer) return Status::InvalidInput(fmt::format("missing {}", s.label));
      return Status::InvalidInput(fmt::format("message has no {} attribute", s.metadata_name));
    }
    if (value.type == element_type::NULL_VALUE) {
      if (!s.required) continue;
      return Status::InvalidInput(fmt::format("{} must be {}, got null", s.label, s.expected));
    }
    out.emplace();
    RETURN_IF_ERROR(Convert(s, value, *out, &ips[index]));
  }
  // Masking last: a message is refused for its content before any key is used on it.
  for (std::uint32_t index : masked) {
    const Step& s = steps[index];
    std::optional<std::string>& out = row.values[s.out];
    if (!out || defaulted[index]) continue;  // NULL, or a default (masked when compiled)
    // The plaintext moves to a scratch buffer whose old capacity takes the masked form: no allocation.
    plain_.swap(*out);
    const std::string& plain = plain_;
    if (s.kind == TypeKind::kInet) {
      if (Status st = masker.MaskColumnIpInto(*s.key, s.mask_field, ips[index], *out); !st.ok()) {
        return std::move(st).Annotate(s.label);
      }
      if (out->size() > s.masked_chars) {
        return Status::InvalidInput(
            fmt::format("{}: its masked form is {} characters, more than its column's {}", s.label,
                        out->size(), s.masked_chars));
      }
      continue;
    }
    if (s.masked_chars != SIZE_MAX) {
      size_t max_bytes = masker.MaxColumnBytes(*s.key, s.masked_chars);
      if (plain.size() > max_bytes) {
        return Status::InvalidInput(fmt::format(
            "{} is {} bytes; its masked form would not fit in {} characters (at most {} bytes fit)", s.label,
            plain.size(), s.masked_chars, max_bytes));
      }
    }
    if (Status st = masker.MaskColumnInto(*s.key, s.mask_field, plain, *out); !st.ok()) {
      return std::move(st).Annotate(s.label);
    }
  }
  return Status::Ok();
}

MappedOutcome MappedTransform::Impl::Apply(std::string_view body, const MessageMetadata& metadata) {
  element doc;
  if (auto error = Parse(parser, padded, body).get(doc)) {
    return Reject(fmt::format("body is not valid JSON ({})", simdjson::error_message(error)), body,
                  body.empty() ? "empty" : "invalid JSON");
  }
  simdjson::dom::object root;
  if (doc.get_object().get(root)) {
    return Reject(fmt::format("body is {}, expected a JSON object", JsonTypeName(doc.type())), body,
                  std::string(ShapeTypeName(doc.type())));
  }
  sns_attributes.clear();
  simdjson::dom::object payload;
  element payload_element;
  if (Status st = Unwrap(doc, root, payload_element, payload); !st.ok())
    return Reject(st.message(), body, ObjectShape(root), &root);

  std::fill(node_seen.begin(), node_seen.end(), 0);
  std::fill(found.begin(), found.end(), std::nullopt);
  std::fill(defaulted.begin(), defaulted.end(), 0);
  reason.clear();
  extra.assign("{");
  // A column reading the whole payload (from = "").
  for (std::uint32_t leaf : nodes[0].leaves) found[leaf] = payload_element;
  if (!WalkObject(0, payload, true)) return Reject(reason, body, ObjectShape(root), &root);

  MappedRow row;
  row.values.resize(columns.size());
  if (Status st = Evaluate(metadata, row); !st.ok())
    return Reject(st.message(), body, ObjectShape(root), &root);
  for (const auto& [position, id] : key_ids) row.values[position] = id;
  if (extra_out != SIZE_MAX) {
    extra.push_back('}');
    row.values[extra_out] = extra;
  }
  return row;
}

MappedTransform::MappedTransform(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MappedTransform::~MappedTransform() = default;

MappedOutcome MappedTransform::Apply(std::string_view body, const MessageMetadata& metadata) {
  return impl_->Apply(body, metadata);
}
const std::vector<std::string>& MappedTransform::columns() const { return impl_->columns; }

Record MappedTransform::Apply(const ReceivedMessage& message) {
  std::vector<MessageAttribute>& views = impl_->attribute_views;
  views.clear();
  for (const auto& [name, value] : message.attributes) views.push_back({name, value});
  MessageMetadata metadata{message.message_id, message.sent_timestamp_ms, message.receive_count,
                           message.fifo.message_group_id, views};
  MappedOutcome outcome = Apply(message.body, metadata);
  if (auto* row = std::get_if<MappedRow>(&outcome)) return std::move(*row);
  return std::move(std::get<Rejection>(outcome));
}

Result<std::unique_ptr<MappedTransform>> MappedTransform::Create(const Mapping& mapping, Masker& masker,
                                                                 const CompileOptions& options) {
  auto impl = std::make_unique<Impl>(masker);
  impl->envelope = mapping.envelope;
  impl->unknown = mapping.unknown_fields;
  impl->columns = mapping.TableColumns();
  impl->nodes.emplace_back();
  auto error = [&](const ColumnSpec& c, std::string_view what) {
    return Status::InvalidInput(fmt::format("{}:{}: column {}: {}", mapping.origin, c.line, c.name, what));
  };
  for (size_t i = 0; i < mapping.columns.size(); ++i) {
    const ColumnSpec& c = mapping.columns[i];
    ColumnType column_type = c.type;
    for (const LiveColumn& live : options.live) {
      if (live.name == c.name) column_type = live.type;
    }
    const ColumnType value_type =
        c.mask ? c.input.value_or(IsTextLike(column_type.kind) ? ColumnType{} : column_type) : column_type;
    Step s;
    s.out = i;
    s.source = c.from.kind;
    s.attribute = c.from.attribute;
    switch (c.from.kind) {
      case SourceKind::kMessageId:
        s.metadata_name = "MessageId";
        break;
      case SourceKind::kSentTimestamp:
        s.metadata_name = "SentTimestamp";
        break;
      case SourceKind::kReceiveCount:
        s.metadata_name = "ApproximateReceiveCount";
        break;
      case SourceKind::kGroupId:
        s.metadata_name = "MessageGroupId";
        break;
      case SourceKind::kAttribute:
        s.metadata_name = c.from.attribute;
        break;
      case SourceKind::kPointer:
        break;
    }
    s.kind = value_type.kind;
    s.format = c.format;
    if ((c.from.kind == SourceKind::kSentTimestamp) &&
        (s.kind == TypeKind::kDate || s.kind == TypeKind::kTimestamptz)) {
      s.format = ValueFormat::kEpochMs;
    }
    if (s.format == ValueFormat::kVersion && IsTextLike(s.kind)) s.format = ValueFormat::kDefault;
    s.required = c.required;
    s.from_string = c.from_string;
    s.non_empty = c.non_empty;
    s.label = c.label.empty() ? "column " + c.name : c.label;
    if (IsTextLike(s.kind)) {
      if (!c.mask && column_type.kind == TypeKind::kVarchar) {
        s.max_chars = column_type.length;
        s.max_is_column = true;
      }
      if (c.max_length && *c.max_length < s.max_chars) {
        s.max_chars = *c.max_length;
        s.max_is_column = false;
      }
    }
    if (c.mask) {
      if (column_type.kind == TypeKind::kVarchar) s.masked_chars = column_type.length;
      auto key = masker.KeyForColumn(c.mask_field.empty() ? c.name : c.mask_field, c.mask->mode);
      if (!key.ok()) return error(c, key.status().message());
      if (AddressValued(key->mode()) && s.kind != TypeKind::kInet) {
        return error(
            c,
            fmt::format("the keyring's key for it is {}, which masks IP addresses only: say input = \"inet\"",
                        ModeName(key->mode())));
      }
      if (column_type.kind == TypeKind::kInet && !AddressValued(key->mode())) {
        return error(c, fmt::format("the keyring's key for it is {}, whose values an inet column cannot hold",
                                    ModeName(key->mode())));
      }
      s.key = *key;
      s.mask_field = c.mask_field.empty() ? c.name : c.mask_field;
      if (c.key_id_column) {
        impl->key_ids.emplace_back(0, key->id());  // position set below
      }
    }
    s.expected = ExpectedFor(s);
    s.expected_or_null = s.expected + " or null";
    if (c.from.kind == SourceKind::kPointer)
      impl->AddPath(c.from.tokens, static_cast<std::uint32_t>(i), s.label);
    impl->steps.push_back(std::move(s));
  }
  // Key id columns follow the [[column]]s, in their order; extra_column comes last.
  size_t position = mapping.columns.size();
  for (auto& [pos, id] : impl->key_ids) pos = position++;
  if (mapping.unknown_fields == UnknownFields::kKeep) {
    impl->extra_out = position;
    impl->extra_label = "column " + mapping.extra_column;
  }
  // Metadata first (a message SQS says too little about is refused for that), then required columns,
  // then optional ones, each in table order: today's login transform checks in this order.
  for (int pass = 0; pass < 3; ++pass) {
    for (std::uint32_t i = 0; i < impl->steps.size(); ++i) {
      const Step& s = impl->steps[i];
      int group = s.source != SourceKind::kPointer ? 0 : s.required ? 1 : 2;
      if (group == pass) impl->order.push_back(i);
    }
  }
  for (std::uint32_t i = 0; i < impl->steps.size(); ++i) {
    if (impl->steps[i].key) impl->masked.push_back(i);
  }
  for (std::uint32_t i = 0; i < mapping.columns.size(); ++i) {
    const Step& s = impl->steps[i];
    const ColumnSpec& c = mapping.columns[i];
    if (!s.key || s.key->mode() != MaskMode::kHmac || c.from.kind != SourceKind::kPointer) continue;
    // The pointer's token names a top-level member only without an envelope.
    if (mapping.envelope == Envelope::kNone && c.from.tokens.size() == 1) {
      impl->one_way_names.push_back(c.from.tokens.front());
      impl->one_way_steps.push_back(i);
    } else if (impl->one_way_unreachable.empty()) {
      impl->one_way_unreachable = s.mask_field;
    }
  }
  impl->one_way_keys.assign(impl->one_way_names.begin(), impl->one_way_names.end());
  impl->node_seen.assign(impl->nodes.size(), 0);
  impl->found.assign(impl->steps.size(), std::nullopt);
  impl->defaulted.assign(impl->steps.size(), 0);
  impl->ips.assign(impl->steps.size(), IpAddress{});

  // Defaults: converted (and masked) once, here, so a bad one is a load error with its line.
  simdjson::dom::parser parser;
  for (size_t i = 0; i < mapping.columns.size(); ++i) {
    const ColumnSpec& c = mapping.columns[i];
    if (!c.default_json) continue;
    Step& s = impl->steps[i];
    s.has_default = true;
    std::string padded = *c.default_json;
    element e;
    if (parser.parse(padded).get(e) != simdjson::SUCCESS) return error(c, "default is not a value");
    std::string out;
    IpAddress ip;
    if (Status st = Convert(s, FromElement(e), out, &ip); !st.ok())
      return error(c, "default: " + st.message());
    if (s.key) {
      std::string masked;
      Status st = s.kind == TypeKind::kInet ? masker.MaskColumnIpInto(*s.key, s.mask_field, ip, masked)
                                            : masker.MaskColumnInto(*s.key, s.mask_field, out, masked);
      if (!st.ok()) return error(c, "default: " + st.message());
      if (masked.size() > s.masked_chars) return error(c, "default: its masked form does not fit the column");
      out = std::move(masked);
    }
    s.default_out = std::move(out);
  }
  return std::unique_ptr<MappedTransform>(new MappedTransform(std::move(impl)));
}

}  // namespace sqs2pg::transform::mapping
