#pragma once
// Values that cross the SqsClient interface.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sqs2pg::sqs {

// Which SQS protocol a client speaks (sqs_wire.h).
enum class SqsProtocol {
  kJson,   // AWS JSON 1.0: AWS since 2023 and current emulators
  kQuery,  // form-encoded requests, XML answers: all that LocalStack 0.14 speaks
  // JSON, until the server answers in a way that shows it does not understand it; then Query,
  // for every client of that endpoint in this process.
  kAuto,
};

struct SqsMessage {
  std::string message_id;
  std::string receipt_handle;  // opaque; names this delivery for delete and visibility changes
  std::string body;
  std::int64_t sent_timestamp_ms = 0;  // SentTimestamp: when the producer sent it (Unix ms); 0 if absent
  int receive_count = 0;               // ApproximateReceiveCount: 1 on first delivery; 0 if absent
  // FIFO queues only (empty otherwise): the message's group, its place in the queue (a decimal
  // of up to 128 bits, increasing within a group) and the id SQS deduplicated it by.
  std::string message_group_id;
  std::string sequence_number;
  std::string deduplication_id;
  // The body does not match MD5OfBody: damaged on the way. Not to be used: SQS delivers the
  // message again once its visibility timeout ends.
  bool body_corrupt = false;
  // The sender's message attributes with a text value (String, Number), when asked for.
  std::vector<std::pair<std::string, std::string>> message_attributes;
};

// One entry of a batch call that did not succeed.
struct BatchEntryFailure {
  std::string id;             // the entry's Id as given in the request
  std::string code;           // AWS's code, e.g. "ReceiptHandleIsInvalid"
  std::string message;        // AWS's explanation
  bool sender_fault = false;  // true: this entry is wrong and retrying will not help
};

struct SendEntry {
  std::string id;    // unique within the batch: [A-Za-z0-9_-]{1,80}
  std::string body;  // valid UTF-8
  // FIFO queues: the group (required there) and the deduplication id (required unless the queue
  // has ContentBasedDeduplication). Empty: not sent.
  std::string message_group_id{};
  std::string deduplication_id{};
  // Message attributes of type String (name, value), sent with the message.
  std::vector<std::pair<std::string, std::string>> attributes{};
};

struct DeleteEntry {
  std::string id;
  std::string receipt_handle;
};

struct VisibilityEntry {
  std::string id;
  std::string receipt_handle;
  int visibility_timeout_seconds;  // from now; 0 makes the message visible again at once
};

}  // namespace sqs2pg::sqs
