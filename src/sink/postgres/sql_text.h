#pragma once
// SQL text in and out: quoted identifiers and literals, the target table's name and its
// companions' (<table>_ledger, <table>_rejects), and numbers read back from Postgres.
// Internal to src/sink/postgres.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sqs2pg::sink {

std::string QuoteIdentifier(std::string_view name);
std::string QuoteLiteral(std::string_view s);

// The quoted, possibly schema-qualified name of the target table or one of its companions.
struct TableNames {
  std::string schema_prefix;  // "\"analytics\"." or empty
  std::string base;

  std::string Quoted(std::string_view suffix = "") const {
    return schema_prefix + QuoteIdentifier(base + std::string(suffix));
  }
};

// NAME or SCHEMA.NAME; InvalidInput when Postgres could not hold it (or "<NAME>_rejects").
Result<TableNames> ParseTableName(std::string_view table);

// Parses a number Postgres returned; 0 if it is not one (it always is, but no input is trusted).
std::int64_t ParseCount(const char* text);

}  // namespace sqs2pg::sink
