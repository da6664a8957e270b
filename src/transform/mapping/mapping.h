#pragma once
// A declarative mapping from one JSON message shape to one table (issue 18): what each column is
// read from, its Postgres type, the rules its value must meet, and how it is masked. The format is
// documented in docs/mapping.md; Load() checks all of it, so a mapping that loads can always be
// compiled into a ColumnPlan (column_plan.h) given a keyring that holds the keys it asks for.
// Errors name the file and line ("orders.toml:12: column total: unknown key 'mask_mode'").

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "transform/keyring.h"

namespace sqs2pg::transform::mapping {

// How the body wraps the payload the pointers read.
enum class Envelope : std::uint8_t {
  kNone,         // the body is the payload
  kSns,          // an SNS notification without raw delivery: "Message" holds the payload as a string
  kEventBridge,  // an EventBridge event: "detail" holds the payload
  kAuto,         // each message: SNS or EventBridge when it has their required fields, else none
};
enum class UnknownFields : std::uint8_t { kIgnore, kReject, kKeep };

enum class TypeKind : std::uint8_t {
  kText,
  kVarchar,
  kSmallint,
  kInteger,
  kBigint,
  kNumeric,
  kDouble,  // double precision
  kBoolean,
  kDate,
  kTimestamptz,
  kUuid,
  kInet,
  kJsonb,
};
struct ColumnType {
  TypeKind kind = TypeKind::kText;
  std::size_t length = 0;  // varchar(n): n characters; 0 for every other kind
  bool operator==(const ColumnType&) const = default;
};
// "text", "varchar(32)", "double precision", ...; nullopt for anything outside the set.
std::optional<ColumnType> ParseColumnType(std::string_view text);
// The Postgres spelling, as ParseColumnType reads it back.
std::string ColumnTypeName(ColumnType type);
bool IsTextLike(TypeKind kind);  // text, varchar
bool IsInteger(TypeKind kind);   // smallint, integer, bigint

enum class SourceKind : std::uint8_t {
  kPointer,        // an RFC 6901 JSON Pointer into the (unwrapped) payload
  kMessageId,      // $message_id: SQS's MessageId
  kSentTimestamp,  // $sent_timestamp: SQS's SentTimestamp, Unix milliseconds
  kReceiveCount,   // $receive_count: ApproximateReceiveCount
  kGroupId,        // $group_id: a FIFO queue's MessageGroupId
  kAttribute,      // $attribute.NAME: an SNS MessageAttribute or an SQS message attribute
};
struct Source {
  SourceKind kind = SourceKind::kPointer;
  std::string text;  // as written in the mapping ("/customer/email", "$sent_timestamp")
  std::vector<std::string>
      tokens;             // kPointer: the unescaped reference tokens ("" has none: the whole payload)
  std::string attribute;  // kAttribute: NAME
};
// "/a/b~1c" or "$message_id" ...; an error says what is wrong with it (no file:line).
Result<Source> ParseSource(std::string_view text);

// How a value is written (format = "...").
enum class ValueFormat : std::uint8_t {
  kDefault,
  kRfc3339,  // date, timestamptz: an RFC 3339 string (the default for them)
  kEpochS,   // date, timestamptz: a number of seconds since 1970-01-01T00:00:00Z
  kEpochMs,  // date, timestamptz: milliseconds since then (what $sent_timestamp is)
  kVersion,  // sqs2pg's extension: "major[.minor[.patch]]", into an integer column as
             // major*1000000 + minor*1000 + patch (kept as written in a text column)
};

// mask = "...": a MaskMode, or sqs2pg's extension "keyring": whatever mode the keyring's key for the
// column's mask_field has (today's --ip-mask/--device-id-mask behaviour).
struct MaskSpec {
  std::optional<MaskMode> mode;  // nullopt: "keyring"
};

struct ColumnSpec {
  std::string name;
  Source from;
  ColumnType type;
  bool required = false;
  std::optional<std::size_t> max_length;  // characters
  std::optional<MaskSpec> mask;
  ValueFormat format = ValueFormat::kDefault;
  // The default as the JSON text of the TOML value ("\"web\"", "0", "true"): used when absent.
  std::optional<std::string> default_json;
  bool from_string = false;
  bool key_id_column = false;  // add "<name>_key_id" (text) holding the id of the key that masked it

  // sqs2pg's extensions, each needed to say today's login table (docs/mapping.md, "Extensions").
  std::string label;                // how reasons name the column; default "column <name>"
  std::string mask_field;           // the name masking binds and the keyring field; default <name>
  std::optional<ColumnType> input;  // a masked column's input type when it differs from the column's
  bool non_empty = false;           // text-like: "" is refused
  int line = 0;                     // where it was defined, for errors found after Load
};

struct Mapping {
  std::string origin;  // the file's path, or "built-in login mapping"
  std::string table;
  Envelope envelope = Envelope::kNone;
  UnknownFields unknown_fields = UnknownFields::kIgnore;
  std::string extra_column;  // with kKeep: the jsonb column the rest of the payload goes to
  std::vector<ColumnSpec> columns;

  // Every column of the table in order: the [[column]] entries, then the key id columns of the
  // masked ones that ask for them (in their order), then extra_column.
  std::vector<std::string> TableColumns() const;
};

// Reads and checks a mapping file. Errors name `path:line`. "CONFIG#run.mapping" reads the mapping
// written inline in a config file's [run.mapping] table (what `run` gets for one).
Result<Mapping> LoadMappingFile(const std::string& path);
// The same from text; `origin` names it in errors.
Result<Mapping> ParseMapping(std::string_view text, std::string_view origin);

}  // namespace sqs2pg::transform::mapping
