#pragma once
// For tables created with the original assignment's DDL, where app_version is an integer.

#include <cstdint>
#include <optional>
#include <string_view>

namespace sqs2pg::transform {

// "major[.minor[.patch]]" -> major*1000000 + minor*1000 + patch, so integer order is version order.
// Missing parts are 0 ("3.7" -> 3007000). nullopt when a part is not a plain decimal number,
// minor or patch exceeds 999, or the result does not fit a Postgres integer.
std::optional<std::int32_t> AppVersionToInteger(std::string_view version);

}  // namespace sqs2pg::transform
