#pragma once
// How a reject describes a JSON body without its values: the JSON type names a reason uses, and
// the clear body_shape (top-level keys and their types). Shared by LoginTransform and the mapped
// transform, whose rejects must be word for word the same.

#include <simdjson.h>

#include <string>
#include <string_view>

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

}  // namespace sqs2pg::transform
