#pragma once
// How a reject describes a JSON body without its values: the JSON type names a reason uses, and
// the clear body_shape (top-level keys and their types). Shared by LoginTransform and the mapped
// transform, whose rejects must be word for word the same.

#include <simdjson.h>

#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sqs2pg::transform {

// "an array", "a number", ... for a reason ("got a number").
const char* JsonTypeName(simdjson::dom::element_type type);
// "array", "number", ... for a body_shape.
std::string_view ShapeTypeName(simdjson::dom::element_type type);
// [A-Za-z_][A-Za-z0-9_.-]{0,63}: a name a program chose, kept in a shape as it is.
bool LooksLikeIdentifier(std::string_view key);
// {"user_id":"string","IP":"string","#3":"number"}: the top-level keys in order (duplicates
// too), identifier-like names kept, others "#<position>", at most 64 keys then a count.
std::string ObjectShape(simdjson::dom::object object);

// Issue 17 item 9: a value masked one-way (hmac) in rows must not be recoverable from a reject's
// sealed body by a key holder. OneWayBody is the body to seal instead: the object again (members
// minified, in order, duplicates too), each top-level member named in `keys` holding its hmac.
// `hash(which, text, is_string, out)` hashes keys[which]'s value: the string, or the JSON text of
// any other value. An empty string stays empty (nothing to hide).
using OneWayHash =
    std::function<Status(size_t which, std::string_view text, bool is_string, std::string& out)>;
Result<std::string> OneWayBody(simdjson::dom::object object, std::span<const std::string_view> keys,
                               const OneWayHash& hash);
// The reason's note when a body holding a one-way field cannot be kept (not a JSON object, or the
// field where OneWayBody cannot reach it).
std::string OneWayNotKept(std::string_view field);

}  // namespace sqs2pg::transform
