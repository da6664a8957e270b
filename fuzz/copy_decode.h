#pragma once
// A reader for the COPY text lines sqs2pg writes, written from PostgreSQL's rules (not from
// copy_format.cc), so the fuzz targets can check that what was written reads back as what was meant.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sqs2pg::fuzz {

// The columns of one line (without its newline); nullopt for \N. nullopt for the whole line if it is not
// valid COPY text (a raw newline or carriage return, a backslash escape PostgreSQL would read differently).
inline std::optional<std::vector<std::optional<std::string>>> DecodeCopyLine(std::string_view line) {
  std::vector<std::optional<std::string>> columns;
  std::string current;
  bool is_null = false;
  bool column_started = false;
  auto end_column = [&] {
    columns.push_back(is_null ? std::nullopt : std::optional<std::string>(current));
    current.clear();
    is_null = false;
    column_started = false;
  };
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == '\n' || c == '\r') return std::nullopt;
    if (c == '\t') {
      end_column();
      continue;
    }
    if (c != '\\') {
      if (is_null) return std::nullopt;  // "\Nx" is not NULL
      current.push_back(c);
      column_started = true;
      continue;
    }
    if (++i == line.size()) return std::nullopt;
    switch (line[i]) {
      case '\\':
        current.push_back('\\');
        break;
      case 't':
        current.push_back('\t');
        break;
      case 'n':
        current.push_back('\n');
        break;
      case 'r':
        current.push_back('\r');
        break;
      case 'N':
        if (column_started || is_null) return std::nullopt;
        is_null = true;
        continue;
      default:
        return std::nullopt;  // sqs2pg writes no other escape
    }
    if (is_null) return std::nullopt;
    column_started = true;
  }
  end_column();
  return columns;
}

}  // namespace sqs2pg::fuzz
