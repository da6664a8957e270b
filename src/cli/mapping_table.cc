#include "cli/mapping_table.h"

#include <fmt/format.h>

namespace sqs2pg::cli {
namespace {

using transform::mapping::ColumnSpec;
using transform::mapping::ColumnType;
using transform::mapping::Mapping;
using transform::mapping::TypeKind;

// The mapping type a catalog type is; nullopt for one outside the set (bpchar pads values,
// timestamp without time zone loses the zone: neither is taken).
std::optional<ColumnType> CatalogType(const sink::TableShape::LiveColumn& live) {
  struct Named {
    const char* typname;
    TypeKind kind;
  };
  static constexpr Named kNames[] = {
      {"text", TypeKind::kText},    {"int2", TypeKind::kSmallint},   {"int4", TypeKind::kInteger},
      {"int8", TypeKind::kBigint},  {"numeric", TypeKind::kNumeric}, {"float8", TypeKind::kDouble},
      {"bool", TypeKind::kBoolean}, {"date", TypeKind::kDate},       {"timestamptz", TypeKind::kTimestamptz},
      {"uuid", TypeKind::kUuid},    {"inet", TypeKind::kInet},       {"jsonb", TypeKind::kJsonb},
  };
  if (live.typname == "varchar") {
    // atttypmod is the length plus 4 (the varlena header); -1 without a length.
    if (live.typmod > 4) return ColumnType{TypeKind::kVarchar, static_cast<size_t>(live.typmod - 4)};
    return ColumnType{TypeKind::kText, 0};
  }
  for (const Named& n : kNames) {
    if (live.typname == n.typname) return ColumnType{n.kind, 0};
  }
  return std::nullopt;
}

int IntegerBytes(TypeKind kind) {
  return kind == TypeKind::kSmallint ? 2 : kind == TypeKind::kInteger ? 4 : 8;
}

// Whether a column the mapping types `wanted` can be stored in a live column of type `live`, and if
// so whether the transform must follow the live type (its length or its kind).
enum class Fit { kNo, kAsMapped, kFollowTable };
Fit FitOf(const ColumnSpec& c, ColumnType live) {
  using transform::mapping::IsInteger;
  using transform::mapping::IsTextLike;
  using transform::mapping::ValueFormat;
  const ColumnType wanted = c.type;
  if (wanted == live) return Fit::kAsMapped;
  // Text into text: the table's length is the one that counts (values longer are rejected).
  if (IsTextLike(wanted.kind) && IsTextLike(live.kind)) return Fit::kFollowTable;
  // A version string into an integer column (the login table's app_version in the original DDL).
  if (c.format == ValueFormat::kVersion && IsInteger(live.kind)) return Fit::kFollowTable;
  // A wider integer or numeric column holds every value of a narrower integer.
  if (IsInteger(wanted.kind) && IsInteger(live.kind) && IntegerBytes(live.kind) >= IntegerBytes(wanted.kind))
    return Fit::kAsMapped;
  if (IsInteger(wanted.kind) && live.kind == TypeKind::kNumeric) return Fit::kAsMapped;
  // An address (masked or not) written as text.
  if (wanted.kind == TypeKind::kInet && IsTextLike(live.kind) && !c.mask) return Fit::kAsMapped;
  return Fit::kNo;
}

}  // namespace

std::vector<sink::TableColumn> TableColumnsOf(const Mapping& mapping) {
  std::vector<sink::TableColumn> out;
  for (const ColumnSpec& c : mapping.columns) {
    std::string comment =
        fmt::format("sqs2pg: from {}", c.from.text.empty() ? "the whole payload" : c.from.text);
    if (c.mask) {
      comment += fmt::format(", masked ({})",
                             c.mask->mode ? transform::ModeName(*c.mask->mode) : "the keyring's mode");
      comment += "; sqs2pg unmask recovers it";
    }
    out.push_back({c.name, transform::mapping::ColumnTypeName(c.type), std::move(comment)});
  }
  for (const ColumnSpec& c : mapping.columns) {
    if (!c.key_id_column) continue;
    out.push_back({c.name + "_key_id", "text",
                   fmt::format("sqs2pg: the id of the key that masked {} (sqs2pg rekey reads it)", c.name)});
  }
  if (mapping.unknown_fields == transform::mapping::UnknownFields::kKeep) {
    out.push_back({mapping.extra_column, "jsonb", "sqs2pg: the payload's members no column maps"});
  }
  return out;
}

Result<transform::mapping::CompileOptions> CheckLiveTable(const Mapping& mapping,
                                                          const sink::TableShape& shape,
                                                          const std::string& table) {
  transform::mapping::CompileOptions options;
  std::vector<std::string> problems;
  const std::vector<std::string> names = mapping.TableColumns();
  for (size_t i = 0; i < names.size() && i < shape.live_columns.size(); ++i) {
    const sink::TableShape::LiveColumn& live = shape.live_columns[i];
    std::optional<ColumnType> live_type = CatalogType(live);
    if (i < mapping.columns.size()) {
      const ColumnSpec& c = mapping.columns[i];
      Fit fit = live_type ? FitOf(c, *live_type) : Fit::kNo;
      if (fit == Fit::kNo) {
        problems.push_back(fmt::format("column {} is {} where the mapping ({}:{}) says {}", c.name,
                                       live.format_type, mapping.origin, c.line,
                                       transform::mapping::ColumnTypeName(c.type)));
      } else if (fit == Fit::kFollowTable) {
        options.live.push_back({c.name, *live_type});
      }
      continue;
    }
    // A key id column, or extra_column.
    bool extra = mapping.unknown_fields == transform::mapping::UnknownFields::kKeep && i + 1 == names.size();
    bool fits = live_type && (extra ? live_type->kind == TypeKind::kJsonb
                                    : transform::mapping::IsTextLike(live_type->kind));
    if (!fits) {
      problems.push_back(fmt::format("column {} is {} where sqs2pg writes {}", names[i], live.format_type,
                                     extra ? "jsonb" : "text"));
    }
  }
  if (problems.empty()) return options;
  std::string all;
  for (const std::string& p : problems) all += (all.empty() ? "" : "; ") + p;
  return Status::InvalidInput(fmt::format(
      "table {} does not fit the mapping: {} (alter the columns, or map into a new table: `sqs2pg schema "
      "--mapping` prints its DDL)",
      table, all));
}

}  // namespace sqs2pg::cli
