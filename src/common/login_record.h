#pragma once
// The records that flow between stages. The transform makes them, the sink stores them;
// neither knows how the other works. Every field here is already safe to store: ip and
// device_id are masked, and a reject's body holds no plaintext PII.

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

// Why a message was refused, and what of it may be kept.
struct Rejection {
  std::string reason;     // names the field and the rule; never a value
  std::string safe_body;  // JSON with ip/device_id masked, or the whole body encrypted
  bool body_encrypted = false;
};

}  // namespace sqs2pg

#include <variant>

namespace sqs2pg {

// A message after the transform, ready for the sink: the unit that is loaded, then deleted.
struct ProcessedMessage {
  std::string message_id;           // SQS MessageId: the key that makes loading idempotent
  std::int64_t received_at_ms = 0;  // when sqs2pg received it (Unix ms), kept with rejects
  std::variant<LoginRow, Rejection> record;
  int receive_count = 1;  // SQS's ApproximateReceiveCount: how often it has been delivered
  size_t body_bytes = 0;  // size of the message body as received, for the bounds in bytes
};

}  // namespace sqs2pg
