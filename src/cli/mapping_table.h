#pragma once
// Where a mapping (transform/mapping) meets a table (sink/postgres), for `run --mapping` and
// `schema --mapping`: the columns sqs2pg creates for it, and whether a live table can take what
// it maps. Neither stage knows the other's types; the CLI joins them here.

#include <string>
#include <vector>

#include "common/result.h"
#include "sink/postgres/postgres_sink.h"
#include "transform/mapping/mapped_transform.h"
#include "transform/mapping/mapping.h"

namespace sqs2pg::cli {

// The table's columns in Mapping::TableColumns() order, typed as the mapping says, each commented
// with where its value comes from and how it is masked.
std::vector<sink::TableColumn> TableColumnsOf(const transform::mapping::Mapping& mapping);

// Checks the live table against the mapping, column by column: every mismatch is named in one
// kInvalidInput error (exit 2). On success, the live types the transform must follow (a widened
// or narrowed varchar, an integer column for a version string).
Result<transform::mapping::CompileOptions> CheckLiveTable(const transform::mapping::Mapping& mapping,
                                                          const sink::TableShape& shape,
                                                          const std::string& table);

}  // namespace sqs2pg::cli
