#pragma once
// The records that flow between stages. The transform makes them, the sink stores them;
// neither knows how the other works. Every field here is already safe to store: ip and
// device_id are masked, and a reject's body holds no plaintext PII.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace sqs2pg {

// One row of user_logins. Text fields are valid UTF-8 without U+0000 and fit their columns.
struct LoginRow {
  std::string user_id;
  std::optional<std::string> device_type;  // nullopt is stored as NULL
  std::string masked_ip;
  std::string masked_device_id;
  std::optional<std::string> locale;
  // The column's text form: the version string, or its order-preserving integer in decimal
  // when the table's app_version column is an integer.
  std::optional<std::string> app_version;
  std::int32_t create_date_days = 0;  // UTC date of the message's SentTimestamp, days since 1970-01-01
};

// Why a message was refused, and what of it may be kept. Any member of a body can hold PII
// (a misspelt "IP", a free-text field), so the body itself is only ever kept encrypted; what
// stays in clear diagnoses the refusal without revealing a value.
struct Rejection {
  std::string reason;     // names the field and the rule; never a value
  std::string safe_body;  // the whole body encrypted (`sqs2pg unmask` recovers it); empty for an empty body
  bool body_encrypted = false;  // true whenever safe_body is not empty
  std::size_t body_bytes = 0;   // the body's size in bytes
  // Top-level key names with their JSON types ({"user_id":"string","IP":"string"}), or the body's
  // type when it is not an object ("array", "invalid JSON"). Key names that do not look like
  // identifiers are replaced by placeholders ("#2": the second key).
  std::string body_shape{};
};

}  // namespace sqs2pg

#include <variant>
#include <vector>

namespace sqs2pg {

// One row of a table that a mapping describes (`run --mapping`, docs/mapping.md): one value per
// column of the mapping's table, in its order, each the column's text input form (the sink
// COPY-escapes it); nullopt is NULL. Masked columns are already masked.
struct MappedRow {
  std::vector<std::optional<std::string>> values;
};

// What the transform makes of one message: a login row (the built-in shape), a mapped row, or
// why it was refused.
using Record = std::variant<LoginRow, Rejection, MappedRow>;
inline bool IsRow(const Record& r) { return !std::holds_alternative<Rejection>(r); }

// Where a message of a FIFO queue stands in its group; both empty for a standard queue. The
// ledger keeps them, so the order SQS gave can be recovered even when two loader connections
// commit batches of one group out of order.
struct FifoOrder {
  std::string message_group_id;
  std::string sequence_number;  // decimal digits: SQS's SequenceNumber
};

// A message after the transform, ready for the sink: the unit that is loaded, then deleted.
struct ProcessedMessage {
  std::string message_id;           // SQS MessageId: the key that makes loading idempotent
  std::int64_t received_at_ms = 0;  // when sqs2pg received it (Unix ms), kept with rejects
  Record record;
  int receive_count = 1;  // SQS's ApproximateReceiveCount: how often it has been delivered
  size_t body_bytes = 0;  // size of the message body as received, for the bounds in bytes
  // SQS's SentTimestamp (Unix ms; 0 if absent): the same at every delivery, so the ledger is
  // partitioned by its day and a redelivery meets its first delivery's ledger row; also the lag
  // metric's clock.
  std::int64_t sent_timestamp_ms = 0;
  FifoOrder fifo{};
};

}  // namespace sqs2pg
