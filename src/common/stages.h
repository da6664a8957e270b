#pragma once
// The contracts between the pipeline and the stages at its two ends. The pipeline knows only
// these; the SQS source and the Postgres sink implement them, and tests use fakes.

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/login_record.h"
#include "common/result.h"

namespace sqs2pg {

struct ReceivedMessage {
  std::string message_id;
  std::string receipt_handle;  // opaque; needed to delete or extend this delivery
  std::string body;
  std::int64_t sent_timestamp_ms = 0;  // when the producer sent it (Unix ms)
  int receive_count = 0;               // 1 on first delivery
  std::int64_t received_at_ms = 0;     // when sqs2pg received it (Unix ms)
};

class MessageSource {
 public:
  virtual ~MessageSource() = default;
  // Up to max_messages (at most 10). Waits up to `wait` for the first message; an empty result
  // means none arrived in that time.
  virtual Result<std::vector<ReceivedMessage>> Receive(int max_messages, std::chrono::seconds wait) = 0;
  // Removes the messages from the queue for good.
  // REQUIRES: what the sink made of each message is committed.
  // Returns how many could not be deleted (they will be redelivered, and the ledger skips them).
  virtual Result<size_t> Delete(std::span<const ReceivedMessage> messages) = 0;
};

struct LoadSummary {
  size_t rows_loaded = 0;
  size_t rejects_stored = 0;
  size_t duplicates = 0;  // message ids already committed earlier: redeliveries
  // Rows the database refused; each was stored as a reject instead (so also in rejects_stored).
  size_t refused_by_database = 0;

  LoadSummary& operator+=(const LoadSummary& o) {
    rows_loaded += o.rows_loaded;
    rejects_stored += o.rejects_stored;
    duplicates += o.duplicates;
    refused_by_database += o.refused_by_database;
    return *this;
  }
};

class MessageSink {
 public:
  virtual ~MessageSink() = default;
  // Stores the batch in one transaction, each message id at most once ever. When this returns
  // ok every message in it is committed (as a row, a reject, or a known duplicate).
  // Errors: kTransient (try the batch again later) or kPermanent.
  virtual Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) = 0;
};

}  // namespace sqs2pg
