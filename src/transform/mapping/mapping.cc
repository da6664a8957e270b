#include "transform/mapping/mapping.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <set>

#include "common/json_writer.h"

namespace sqs2pg::transform::mapping {
namespace {

struct NamedType {
  std::string_view name;
  TypeKind kind;
};
constexpr NamedType kTypes[] = {
    {"text", TypeKind::kText},
    {"smallint", TypeKind::kSmallint},
    {"integer", TypeKind::kInteger},
    {"bigint", TypeKind::kBigint},
    {"numeric", TypeKind::kNumeric},
    {"double precision", TypeKind::kDouble},
    {"boolean", TypeKind::kBoolean},
    {"date", TypeKind::kDate},
    {"timestamptz", TypeKind::kTimestamptz},
    {"uuid", TypeKind::kUuid},
    {"inet", TypeKind::kInet},
    {"jsonb", TypeKind::kJsonb},
};

// Postgres's own limit on varchar(n).
constexpr std::size_t kMaxVarchar = 10'485'760;

// [A-Za-z_][A-Za-z0-9_]{0,62}: an unquoted Postgres identifier (63 bytes at most), so a column name
// never needs quoting rules of its own in the DDL, the COPY list or a reason.
bool IsIdentifier(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}

std::string_view NodeTypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date or time";
  }
}

// Reads one mapping, collecting the first error with its line.
class Reader {
 public:
  explicit Reader(std::string_view origin) : origin_(origin) {}

  Status Error(const toml::node& node, std::string_view what) const {
    return Status::InvalidInput(fmt::format("{}:{}: {}", origin_, node.source().begin.line, what));
  }
  Status Error(int line, std::string_view what) const {
    return Status::InvalidInput(fmt::format("{}:{}: {}", origin_, line, what));
  }

  Result<std::string> String(const toml::node& node, std::string_view key, std::string_view context) const {
    if (const auto* s = node.as_string()) return s->get();
    return Error(node, fmt::format("{}{} must be a string, not {}", context, key, NodeTypeName(node)));
  }
  Result<bool> Bool(const toml::node& node, std::string_view key, std::string_view context) const {
    if (const auto* b = node.as_boolean()) return b->get();
    return Error(node, fmt::format("{}{} must be true or false, not {}", context, key, NodeTypeName(node)));
  }

  Result<Mapping> Read(const toml::table& top);

 private:
  Result<ColumnSpec> ReadColumn(const toml::table& table, std::size_t position);
  Status CheckColumn(const ColumnSpec& c, const toml::table& table);

  std::string origin_;
};

Result<ValueFormat> ParseFormat(std::string_view s) {
  if (s == "rfc3339") return ValueFormat::kRfc3339;
  if (s == "epoch_s") return ValueFormat::kEpochS;
  if (s == "epoch_ms") return ValueFormat::kEpochMs;
  if (s == "version") return ValueFormat::kVersion;
  return Status::InvalidInput("format must be rfc3339, epoch_s, epoch_ms or version");
}

bool IsTime(TypeKind k) { return k == TypeKind::kDate || k == TypeKind::kTimestamptz; }
bool IsNumber(TypeKind k) { return IsInteger(k) || k == TypeKind::kNumeric || k == TypeKind::kDouble; }

// The JSON text of a TOML default, so the transform reads it exactly as it reads a message's value.
Result<std::string> DefaultJson(const toml::node& node) {
  std::string out;
  if (const auto* s = node.as_string()) {
    AppendJsonString(out, s->get());
  } else if (const auto* i = node.as_integer()) {
    out = std::to_string(i->get());
  } else if (const auto* f = node.as_floating_point()) {
    double d = f->get();
    if (!std::isfinite(d)) return Status::InvalidInput("default must be a finite number");
    out = fmt::format("{}", d);
    // fmt prints 1.0 as "1": keep it a JSON number all the same.
  } else if (const auto* b = node.as_boolean()) {
    out = b->get() ? "true" : "false";
  } else {
    return Status::InvalidInput(
        fmt::format("default must be a string, a number or a boolean, not {}", NodeTypeName(node)));
  }
  return out;
}

Result<ColumnSpec> Reader::ReadColumn(const toml::table& table, std::size_t position) {
  ColumnSpec c;
  c.line = static_cast<int>(table.source().begin.line);
  std::string context = fmt::format("column {}: ", position);
  if (const toml::node* name = table.get("name")) {
    ASSIGN_OR_RETURN(c.name, String(*name, "name", context));
    if (!IsIdentifier(c.name)) {
      return Error(*name, fmt::format("{}name must be a Postgres identifier ([A-Za-z_][A-Za-z0-9_]*, at most "
                                      "63 characters)",
                                      context));
    }
    context = fmt::format("column {}: ", c.name);
  } else {
    return Error(table, context + "has no name");
  }
  bool has_from = false, has_type = false;
  for (const auto& [key_node, node] : table) {
    std::string_view key = key_node.str();
    const std::string ctx = context;
    if (key == "name") continue;
    if (key == "from") {
      ASSIGN_OR_RETURN(std::string text, String(node, key, ctx));
      auto source = ParseSource(text);
      if (!source.ok()) return Error(node, ctx + "from: " + source.status().message());
      c.from = std::move(source).value();
      has_from = true;
    } else if (key == "type") {
      ASSIGN_OR_RETURN(std::string text, String(node, key, ctx));
      auto type = ParseColumnType(text);
      if (!type) {
        return Error(node, ctx +
                               "type must be one of text, varchar(n), smallint, integer, bigint, numeric, "
                               "double precision, boolean, date, timestamptz, uuid, inet, jsonb");
      }
      c.type = *type;
      has_type = true;
    } else if (key == "required") {
      ASSIGN_OR_RETURN(c.required, Bool(node, key, ctx));
    } else if (key == "max_length") {
      const auto* i = node.as_integer();
      if (i == nullptr || i->get() < 1 || i->get() > static_cast<std::int64_t>(kMaxVarchar)) {
        return Error(node, ctx + "max_length must be an integer from 1 to 10485760");
      }
      c.max_length = static_cast<std::size_t>(i->get());
    } else if (key == "mask") {
      ASSIGN_OR_RETURN(std::string text, String(node, key, ctx));
      if (text == "keyring") {
        c.mask = MaskSpec{};
      } else if (auto mode = ParseMode(text)) {
        c.mask = MaskSpec{*mode};
      } else {
        return Error(
            node, ctx + "mask must be siv, hmac, ipcrypt-deterministic, ipcrypt-pfx, cryptopan or keyring");
      }
    } else if (key == "format") {
      ASSIGN_OR_RETURN(std::string text, String(node, key, ctx));
      auto format = ParseFormat(text);
      if (!format.ok()) return Error(node, ctx + format.status().message());
      c.format = *format;
    } else if (key == "default") {
      auto json = DefaultJson(node);
      if (!json.ok()) return Error(node, ctx + json.status().message());
      c.default_json = std::move(json).value();
    } else if (key == "from_string") {
      ASSIGN_OR_RETURN(c.from_string, Bool(node, key, ctx));
    } else if (key == "key_id_column") {
      ASSIGN_OR_RETURN(c.key_id_column, Bool(node, key, ctx));
    } else if (key == "label") {
      ASSIGN_OR_RETURN(c.label, String(node, key, ctx));
      // A label goes into every reason in clear: it must not be able to smuggle a value in, so it is
      // plain printable ASCII, and short.
      if (c.label.empty() || c.label.size() > 80 ||
          !std::all_of(c.label.begin(), c.label.end(), [](char ch) { return ch >= 0x20 && ch < 0x7f; })) {
        return Error(node, ctx + "label must be 1 to 80 printable ASCII characters");
      }
    } else if (key == "mask_field") {
      ASSIGN_OR_RETURN(c.mask_field, String(node, key, ctx));
      if (!IsIdentifier(c.mask_field)) return Error(node, ctx + "mask_field must be an identifier");
    } else if (key == "input") {
      ASSIGN_OR_RETURN(std::string text, String(node, key, ctx));
      auto type = ParseColumnType(text);
      if (!type) return Error(node, ctx + "input must be a type of the set (see type)");
      c.input = *type;
    } else if (key == "non_empty") {
      ASSIGN_OR_RETURN(c.non_empty, Bool(node, key, ctx));
    } else {
      return Error(node, fmt::format("{}unknown key '{}'", ctx, key));
    }
  }
  if (!has_from) return Error(table, context + "has no from");
  if (!has_type) return Error(table, context + "has no type");
  RETURN_IF_ERROR(CheckColumn(c, table));
  if (c.label.empty()) c.label = "column " + c.name;
  if (c.mask && c.mask_field.empty()) c.mask_field = c.name;
  return c;
}

// The rules that join several keys of one column.
Status Reader::CheckColumn(const ColumnSpec& c, const toml::table& table) {
  const std::string ctx = fmt::format("column {}: ", c.name);
  auto at = [&](std::string_view key) -> const toml::node& {
    const toml::node* n = table.get(key);
    return n ? *n : static_cast<const toml::node&>(table);
  };
  // The type the JSON value is read as: the column's, or a masked column's input.
  const ColumnType value_type = c.input.value_or(c.type);
  const TypeKind k = value_type.kind;

  if (c.from.kind == SourceKind::kPointer && c.from.tokens.empty() && k != TypeKind::kJsonb) {
    return Error(at("from"), ctx + "from = \"\" (the whole payload) needs type jsonb");
  }
  if (c.input && !c.mask) return Error(at("input"), ctx + "input is for masked columns only");
  if (c.input && c.input->kind == TypeKind::kJsonb) return Error(at("input"), ctx + "input cannot be jsonb");
  if (!c.mask_field.empty() && !c.mask)
    return Error(at("mask_field"), ctx + "mask_field is for masked columns only");
  if (c.key_id_column && !c.mask)
    return Error(at("key_id_column"), ctx + "key_id_column is for masked columns only");
  if (c.mask) {
    std::optional<MaskMode> mode = c.mask->mode;
    const bool address = mode && AddressValued(*mode);
    if (address) {
      const bool inet_value = c.type.kind == TypeKind::kInet ||
                              (IsTextLike(c.type.kind) && c.input && c.input->kind == TypeKind::kInet);
      if (!inet_value) {
        return Error(at("mask"),
                     fmt::format("{}mask {} makes an IP address: it needs type inet, or a text type "
                                 "with input = \"inet\"",
                                 ctx, ModeName(*mode)));
      }
    } else if (!IsTextLike(c.type.kind)) {
      return Error(at("mask"),
                   fmt::format("{}mask {} makes text: type {} cannot hold it (use text or varchar(n))", ctx,
                               mode ? ModeName(*mode) : "keyring", ColumnTypeName(c.type)));
    }
    if (c.type.kind == TypeKind::kInet && c.input && c.input->kind != TypeKind::kInet) {
      return Error(at("input"), ctx + "an inet column masks an inet input");
    }
  }
  if (c.max_length && !IsTextLike(k)) {
    return Error(at("max_length"), ctx + "max_length is for text and varchar(n) values");
  }
  if (c.non_empty && !IsTextLike(k) && k != TypeKind::kInet && k != TypeKind::kUuid) {
    return Error(at("non_empty"), ctx + "non_empty is for text, varchar(n), uuid and inet values");
  }
  switch (c.format) {
    case ValueFormat::kDefault:
      break;
    case ValueFormat::kRfc3339:
    case ValueFormat::kEpochS:
    case ValueFormat::kEpochMs:
      if (!IsTime(k))
        return Error(at("format"), ctx + "rfc3339, epoch_s and epoch_ms are for date and timestamptz");
      break;
    case ValueFormat::kVersion:
      if (!IsInteger(k) && !IsTextLike(k)) {
        return Error(at("format"), ctx + "format version is for integer and text columns");
      }
      break;
  }
  if (c.from_string) {
    const bool epoch = c.format == ValueFormat::kEpochS || c.format == ValueFormat::kEpochMs;
    if (!IsNumber(k) && k != TypeKind::kBoolean && !(IsTime(k) && epoch)) {
      return Error(at("from_string"),
                   ctx + "from_string is for number and boolean columns, and epoch_s/epoch_ms timestamps");
    }
  }
  if (c.required && c.default_json) {
    return Error(at("default"), ctx + "a required column has no use for a default (absent is a reject)");
  }
  // Metadata has a fixed JSON type: a string, or a number for $sent_timestamp and $receive_count.
  switch (c.from.kind) {
    case SourceKind::kSentTimestamp:
      if (IsTime(k) && c.format != ValueFormat::kDefault && c.format != ValueFormat::kEpochMs) {
        return Error(at("format"), ctx + "$sent_timestamp is in milliseconds: format epoch_ms (or none)");
      }
      [[fallthrough]];
    case SourceKind::kReceiveCount:
      if (!IsNumber(k) && !IsTime(k)) {
        return Error(at("type"),
                     ctx + c.from.text + " is a number: the column needs a number, date or timestamptz type");
      }
      if (IsTime(k) && c.from.kind == SourceKind::kReceiveCount) {
        return Error(at("type"), ctx + "$receive_count is a count, not a time");
      }
      break;
    case SourceKind::kMessageId:
    case SourceKind::kGroupId:
    case SourceKind::kAttribute:
      if (IsNumber(k) && !c.from_string) {
        return Error(at("type"),
                     ctx + c.from.text + " is a string: a number column needs from_string = true");
      }
      break;
    case SourceKind::kPointer:
      break;
  }
  return Status::Ok();
}

Result<Mapping> Reader::Read(const toml::table& top) {
  Mapping m;
  m.origin = origin_;
  bool has_extra = false;
  const toml::array* columns = nullptr;
  const toml::node* columns_node = nullptr;
  for (const auto& [key_node, node] : top) {
    std::string_view key = key_node.str();
    if (key == "table") {
      ASSIGN_OR_RETURN(m.table, String(node, key, ""));
      if (m.table.empty()) return Error(node, "table must not be empty");
    } else if (key == "envelope") {
      ASSIGN_OR_RETURN(std::string text, String(node, key, ""));
      if (text == "none") {
        m.envelope = Envelope::kNone;
      } else if (text == "sns") {
        m.envelope = Envelope::kSns;
      } else if (text == "eventbridge") {
        m.envelope = Envelope::kEventBridge;
      } else if (text == "auto") {
        m.envelope = Envelope::kAuto;
      } else {
        return Error(node, "envelope must be none, sns, eventbridge or auto");
      }
    } else if (key == "unknown_fields") {
      ASSIGN_OR_RETURN(std::string text, String(node, key, ""));
      if (text == "ignore") {
        m.unknown_fields = UnknownFields::kIgnore;
      } else if (text == "reject") {
        m.unknown_fields = UnknownFields::kReject;
      } else if (text == "keep") {
        m.unknown_fields = UnknownFields::kKeep;
      } else {
        return Error(node, "unknown_fields must be ignore, reject or keep");
      }
    } else if (key == "extra_column") {
      ASSIGN_OR_RETURN(m.extra_column, String(node, key, ""));
      if (!IsIdentifier(m.extra_column)) return Error(node, "extra_column must be a Postgres identifier");
      has_extra = true;
    } else if (key == "column") {
      columns = node.as_array();
      columns_node = &node;
      if (columns == nullptr || !columns->is_array_of_tables()) {
        return Error(node, "column must be an array of tables: [[column]]");
      }
    } else {
      return Error(node, fmt::format("unknown key '{}'", key));
    }
  }
  if (m.unknown_fields == UnknownFields::kKeep && !has_extra) {
    return Error(top, "unknown_fields = \"keep\" needs extra_column, the jsonb column the rest goes to");
  }
  if (m.unknown_fields != UnknownFields::kKeep && has_extra) {
    return Error(*top.get("extra_column"), "extra_column is used only with unknown_fields = \"keep\"");
  }
  if (columns == nullptr || columns->empty())
    return Error(top, "no [[column]]: a mapping needs at least one");
  (void)columns_node;
  std::size_t position = 0;
  for (const toml::node& node : *columns) {
    ASSIGN_OR_RETURN(ColumnSpec c, ReadColumn(*node.as_table(), ++position));
    m.columns.push_back(std::move(c));
  }
  // Names of the whole table, generated ones too, so a key id column cannot collide silently.
  std::set<std::string> seen;
  auto claim = [&](const std::string& name, int line, std::string_view what) -> Status {
    // Postgres folds unquoted identifiers to lower case: "Email" and "email" are one column.
    std::string folded = name;
    std::transform(folded.begin(), folded.end(), folded.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    if (!seen.insert(folded).second)
      return Error(line, fmt::format("two columns are named {} ({})", name, what));
    // The sink's staging table names its own columns so (sqs2pg_message_id, sqs2pg_sent_ms).
    if (folded.starts_with("sqs2pg_"))
      return Error(line, fmt::format("column names starting with sqs2pg_ are sqs2pg's own ({})", name));
    return Status::Ok();
  };
  for (const ColumnSpec& c : m.columns) RETURN_IF_ERROR(claim(c.name, c.line, "a [[column]]"));
  for (const ColumnSpec& c : m.columns) {
    if (c.key_id_column) RETURN_IF_ERROR(claim(c.name + "_key_id", c.line, "the key id column of " + c.name));
  }
  if (has_extra)
    RETURN_IF_ERROR(claim(m.extra_column, static_cast<int>(top.get("extra_column")->source().begin.line),
                          "extra_column"));
  return m;
}

}  // namespace

bool IsTextLike(TypeKind kind) { return kind == TypeKind::kText || kind == TypeKind::kVarchar; }
bool IsInteger(TypeKind kind) {
  return kind == TypeKind::kSmallint || kind == TypeKind::kInteger || kind == TypeKind::kBigint;
}

std::optional<ColumnType> ParseColumnType(std::string_view text) {
  for (const NamedType& t : kTypes) {
    if (text == t.name) return ColumnType{t.kind, 0};
  }
  if (text.starts_with("varchar(") && text.ends_with(")")) {
    std::string_view digits = text.substr(8, text.size() - 9);
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || digits[0] == '0' ||
        n > kMaxVarchar) {
      return std::nullopt;
    }
    return ColumnType{TypeKind::kVarchar, n};
  }
  return std::nullopt;
}

std::string ColumnTypeName(ColumnType type) {
  if (type.kind == TypeKind::kVarchar) return fmt::format("varchar({})", type.length);
  for (const NamedType& t : kTypes) {
    if (t.kind == type.kind) return std::string(t.name);
  }
  return "unknown";
}

Result<Source> ParseSource(std::string_view text) {
  Source s;
  s.text = std::string(text);
  if (text.starts_with("$")) {
    if (text == "$message_id") {
      s.kind = SourceKind::kMessageId;
    } else if (text == "$sent_timestamp") {
      s.kind = SourceKind::kSentTimestamp;
    } else if (text == "$receive_count") {
      s.kind = SourceKind::kReceiveCount;
    } else if (text == "$group_id") {
      s.kind = SourceKind::kGroupId;
    } else if (text.starts_with("$attribute.")) {
      s.kind = SourceKind::kAttribute;
      s.attribute = std::string(text.substr(11));
      // SQS's rules for attribute names: 1-256 of [A-Za-z0-9_.-].
      if (s.attribute.empty() || s.attribute.size() > 256 ||
          !std::all_of(s.attribute.begin(), s.attribute.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                   c == '-' || c == '.';
          })) {
        return Status::InvalidInput("an attribute name is 1 to 256 of A-Z a-z 0-9 _ - .");
      }
    } else {
      return Status::InvalidInput(
          "metadata must be $message_id, $sent_timestamp, $receive_count, $group_id or $attribute.NAME");
    }
    return s;
  }
  s.kind = SourceKind::kPointer;
  if (text.empty()) return s;  // RFC 6901: the whole document
  if (text[0] != '/') {
    return Status::InvalidInput("a JSON Pointer (RFC 6901) starts with / (or is empty: the whole payload)");
  }
  std::string token;
  for (std::size_t i = 1; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '/') {
      s.tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    if (text[i] == '~') {
      if (i + 1 < text.size() && (text[i + 1] == '0' || text[i + 1] == '1')) {
        token.push_back(text[i + 1] == '0' ? '~' : '/');
        ++i;
        continue;
      }
      return Status::InvalidInput("a JSON Pointer escapes only ~0 (~) and ~1 (/)");
    }
    token.push_back(text[i]);
  }
  if (s.tokens.size() > 64) return Status::InvalidInput("a JSON Pointer of more than 64 tokens");
  return s;
}

std::vector<std::string> Mapping::TableColumns() const {
  std::vector<std::string> out;
  for (const ColumnSpec& c : columns) out.push_back(c.name);
  for (const ColumnSpec& c : columns) {
    if (c.key_id_column) out.push_back(c.name + "_key_id");
  }
  if (unknown_fields == UnknownFields::kKeep) out.push_back(extra_column);
  return out;
}

Result<Mapping> ParseMapping(std::string_view text, std::string_view origin) {
  toml::table top;
  try {
    top = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    return Status::InvalidInput(
        fmt::format("{}:{}:{}: {}", origin, begin.line, begin.column, e.description()));
  }
  return Reader(origin).Read(top);
}

Result<Mapping> LoadMappingFile(const std::string& path) {
  // "CONFIG#run.mapping": the mapping written inline in a config file's [run.mapping] table.
  constexpr std::string_view kInline = "#run.mapping";
  const bool inline_table = path.ends_with(kInline);
  const std::string file = inline_table ? path.substr(0, path.size() - kInline.size()) : path;
  toml::table top;
  try {
    top = toml::parse_file(file);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    if (begin.line == 0) return Status::InvalidInput(fmt::format("mapping {}: {}", path, e.description()));
    return Status::InvalidInput(fmt::format("{}:{}:{}: {}", file, begin.line, begin.column, e.description()));
  }
  if (inline_table) {
    const toml::table* table = top["run"]["mapping"].as_table();
    if (table == nullptr) return Status::InvalidInput(fmt::format("{} has no [run.mapping] table", file));
    // Its nodes keep their lines in the config file, so errors still name file:line.
    return Reader(file).Read(*table);
  }
  return Reader(path).Read(top);
}

}  // namespace sqs2pg::transform::mapping
