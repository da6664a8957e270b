#include "sink/postgres/sql_text.h"

#include <fmt/format.h>

#include <charconv>

namespace sqs2pg::sink {

std::string QuoteIdentifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string QuoteLiteral(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  return out + "'";
}

Result<TableNames> ParseTableName(std::string_view table) {
  TableNames names;
  size_t dot = table.find('.');
  if (dot != std::string_view::npos) {
    names.schema_prefix = QuoteIdentifier(table.substr(0, dot)) + ".";
    table.remove_prefix(dot + 1);
  }
  names.base = std::string(table);
  // Postgres truncates identifiers to 63 bytes; "_rejects" must still fit after the name.
  if (names.base.empty() || names.base.size() + 8 > 63 || table.find('.') != std::string_view::npos) {
    return Status::InvalidInput(fmt::format(
        "table name \"{}\" is not usable: give NAME or SCHEMA.NAME, NAME at most 55 bytes", table));
  }
  return names;
}

std::int64_t ParseCount(const char* text) {
  std::int64_t value = 0;
  std::string_view s = text ? text : "";
  std::from_chars(s.data(), s.data() + s.size(), value);
  return value;
}

}  // namespace sqs2pg::sink
