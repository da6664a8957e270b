// The generic transform: type rules, envelopes, masks and defaults, one column at a time.
#include "transform/mapping/mapped_transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sqs2pg::transform::mapping {
namespace {}  // namespace
}  // namespace sqs2pg::transform::mapping
