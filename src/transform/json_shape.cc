#include "transform/json_shape.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/json_writer.h"

namespace sqs2pg::transform {

using simdjson::dom::element_type;

const char* JsonTypeName(element_type type) {
  switch (type) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "an unknown type";
}

// The JSON type names a reject's body_shape uses.
std::string_view ShapeTypeName(element_type type) {
  switch (type) {
    case element_type::ARRAY:
      return "array";
    case element_type::OBJECT:
      return "object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "number";
    case element_type::STRING:
      return "string";
    case element_type::BOOL:
      return "boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "unknown";
}

namespace {

// Whether a key name holds what looks like an identifier *value*: a run of 6 or more digits (a
// phone, account or card number), a run of 8 or more hex digits with a digit among them, or of 16
// or more (a UUID's groups, a token, a hash, a device id), or four dot-separated numbers (an IPv4
// address). Producers that key a map by user, device or address put PII in key names.
bool HoldsIdentifierValue(std::string_view key) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  size_t digits = 0, hex_run = 0, numbers = 0;
  bool hex_run_has_digit = false;
  for (size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    digits = digit(c) ? digits + 1 : 0;
    hex_run = hex(c) ? hex_run + 1 : 0;
    hex_run_has_digit = hex(c) && (hex_run_has_digit || digit(c));
    if (digits >= 6 || hex_run >= 16 || (hex_run >= 8 && hex_run_has_digit)) return true;
    // Dotted numbers: a number ends at a '.', or at the end of the key or of the run.
    const bool number_ends = digit(c) && (i + 1 == key.size() || !digit(key[i + 1]));
    if (number_ends) {
      ++numbers;
      if (numbers >= 4) return true;
      if (i + 1 < key.size() && key[i + 1] == '.') continue;
      numbers = 0;
    } else if (!digit(c) && c != '.') {
      numbers = 0;
    }
  }
  return false;
}

}  // namespace

// [A-Za-z_][A-Za-z0-9_.-]{0,63} holding no identifier value: a name a program chose. Anything else
// (an address, an e-mail, a UUID, a number, free text) may be a value someone used as a key, so it
// is not kept.
bool LooksLikeIdentifier(std::string_view key) {
  if (key.empty() || key.size() > 64) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(key[0])) return false;
  if (!std::all_of(key.begin() + 1, key.end(),
                   [&](char c) { return alpha(c) || (c >= '0' && c <= '9') || c == '.' || c == '-'; })) {
    return false;
  }
  return !HoldsIdentifierValue(key);
}

// A reject's shape is for diagnosis; a body with thousands of keys needs no more than this many.
constexpr size_t kMaxShapeKeys = 64;

// {"user_id":"string","IP":"string","#3":"number"}: the top-level keys in order (duplicates
// too, since a duplicate is itself a reason), identifier-like names kept, others "#<position>".
std::string ObjectShape(simdjson::dom::object object) {
  std::string out = "{";
  size_t position = 0;
  for (auto [key, value] : object) {
    ++position;
    if (position > kMaxShapeKeys) continue;  // counted below
    if (position > 1) out.push_back(',');
    AppendJsonString(out, LooksLikeIdentifier(key) ? std::string(key) : fmt::format("#{}", position));
    out.push_back(':');
    AppendJsonString(out, ShapeTypeName(value.type()));
  }
  if (position > kMaxShapeKeys) {
    out.push_back(',');
    AppendJsonString(out, "...");
    out.push_back(':');
    AppendJsonString(out, fmt::format("{} more keys", position - kMaxShapeKeys));
  }
  out.push_back('}');
  return out;
}

Result<std::string> OneWayBody(simdjson::dom::object object, std::span<const std::string_view> keys,
                               const OneWayHash& hash) {
  std::string out = "{", raw, hashed;
  bool first = true;
  for (auto [key, value] : object) {
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(out, key);
    out.push_back(':');
    auto which = std::find(keys.begin(), keys.end(), key);
    if (which == keys.end()) {
      out += simdjson::minify(value);
      continue;
    }
    std::string_view text;
    const bool is_string = value.get_string().get(text) == simdjson::SUCCESS;
    if (!is_string) {
      raw = simdjson::minify(value);
      text = raw;
    }
    hashed.clear();
    if (!text.empty())
      RETURN_IF_ERROR(hash(static_cast<size_t>(which - keys.begin()), text, is_string, hashed));
    AppendJsonString(out, hashed);
  }
  out.push_back('}');
  return out;
}

std::string OneWayNotKept(std::string_view field) {
  return fmt::format(
      "; the body was not kept: its {} is masked one-way (hmac) and could not be replaced by its hmac in it",
      field);
}

}  // namespace sqs2pg::transform
