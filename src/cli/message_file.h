#pragma once
// Reads message bodies for `sqs2pg send`: a JSON array (one message an element) or NDJSON
// (one message a non-empty line, sent as written), either of them optionally gzipped.

#include <string>
#include <vector>

#include "common/result.h"

namespace sqs2pg::cli {

Result<std::vector<std::string>> ReadMessageBodies(const std::string& path);

}  // namespace sqs2pg::cli
