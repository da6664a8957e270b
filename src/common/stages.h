#pragma once
// The contracts between the pipeline and the stages at its two ends. The pipeline knows only
// these; the SQS source and the Postgres sink implement them, and tests use fakes.

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
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
  FifoOrder fifo{};                    // empty for a standard queue
  // The sender's message attributes (name, String or Number value as sent), when the source was
  // asked for them (a mapping that reads $attribute.NAME); Binary ones are not kept.
  std::vector<std::pair<std::string, std::string>> attributes{};
};

// What became of the entries of one DeleteMessageBatch or ChangeMessageVisibilityBatch call,
// by their index in the request. Entries in neither list succeeded.
struct BatchResult {
  std::vector<size_t> retryable;  // failed on SQS's side (SenderFault=false): worth another try
  std::vector<size_t> refused;    // refused for good, e.g. a receipt handle that is no longer valid
};

// SQS's approximate counts for the queue (GetQueueAttributes): a cross-check, never proof.
struct QueueDepth {
  std::int64_t visible = 0;      // ApproximateNumberOfMessages
  std::int64_t not_visible = 0;  // ...NotVisible: received by someone, not yet deleted
  std::int64_t delayed = 0;      // ...Delayed
};

// The same queue for a pipeline that keeps many calls in flight on one thread. Each Start*
// returns at once; its callback runs later inside Poll(), on the thread that calls Poll().
class AsyncMessageSource {
 public:
  using ReceiveDone = std::function<void(Result<std::vector<ReceivedMessage>>)>;
  // What became of each entry (failures are logged by the source), or the whole call's error.
  using BatchDone = std::function<void(Result<BatchResult>)>;

  virtual ~AsyncMessageSource() = default;
  // Up to max_messages (at most 10), waiting up to `wait` for the first.
  virtual void StartReceive(int max_messages, std::chrono::seconds wait, ReceiveDone done) = 0;
  // At most 10 receipt handles a call. REQUIRES: the messages' outcomes are committed.
  virtual void StartDelete(std::vector<std::string> receipt_handles, BatchDone done) = 0;
  // Hides the messages for `timeout` more, from now. At most 10 a call.
  virtual void StartExtendVisibility(std::vector<std::string> receipt_handles, std::chrono::seconds timeout,
                                     BatchDone done) = 0;
  // The queue's approximate counts. A source that cannot tell answers with an error.
  virtual void StartQueueDepth(std::function<void(Result<QueueDepth>)> done) {
    done(Status::Permanent("queue depth not available"));
  }
  // Ends the receives in flight at once (their callbacks get an error), so a stop request need not
  // wait out a long poll. A message SQS was handing out at that instant stays hidden until its
  // visibility timeout and is then delivered again: nothing is lost.
  virtual void CancelReceives() = 0;
  // Runs finished calls' callbacks; waits up to max_wait when none is ready.
  virtual void Poll(std::chrono::milliseconds max_wait) = 0;
  // Ends a Poll() wait early. Thread-safe: loader threads call it when a batch is committed.
  virtual void Wakeup() = 0;
};

// The transform stage as the pipeline sees it: one received message in, its record out (a row to
// load, or a rejection saying why not). LoginTransform is the built-in login shape; a mapping file
// (`run --mapping`) compiles into a MappedTransform. Called from the pipeline's one thread.
class MessageTransform {
 public:
  virtual ~MessageTransform() = default;
  virtual Record Apply(const ReceivedMessage& message) = 0;
};

struct LoadSummary {
  size_t rows_loaded = 0;
  size_t rejects_stored = 0;
  size_t duplicates = 0;  // message ids already committed earlier: redeliveries
  // Rows the database refused; each was stored as a reject instead (so also in rejects_stored).
  size_t refused_by_database = 0;
  // Messages the database would not take for a reason other than their data (a trigger's error,
  // say), delivered fewer than max_receives times: not committed, so they must not be deleted.
  // SQS delivers them again; once they have been delivered max_receives times they are rejected.
  std::vector<std::string> left_for_redelivery;
  // Not empty: the database refused messages for a reason of its own (one SQLSTATE, messages of
  // different shapes in a row), so they are in left_for_redelivery instead of rejected. Says
  // why, with the SQLSTATE; a drain ends with it as its error, a follow run backs off.
  std::string systemic_refusal;

  LoadSummary& operator+=(const LoadSummary& o) {
    if (systemic_refusal.empty()) systemic_refusal = o.systemic_refusal;
    rows_loaded += o.rows_loaded;
    rejects_stored += o.rejects_stored;
    duplicates += o.duplicates;
    refused_by_database += o.refused_by_database;
    left_for_redelivery.insert(left_for_redelivery.end(), o.left_for_redelivery.begin(),
                               o.left_for_redelivery.end());
    return *this;
  }
};

class MessageSink {
 public:
  virtual ~MessageSink() = default;
  // Stores the batch in one transaction, each message id at most once ever. When this returns
  // ok every message in it is committed (as a row, a reject, or a known duplicate), except those
  // listed in left_for_redelivery. Errors: kTransient (try the batch again later) or kPermanent.
  virtual Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) = 0;
  // Makes a Load() in progress on another thread return soon (with an error) and later ones fail
  // at once: for a shutdown that cannot wait any longer. Thread-safe.
  virtual void Interrupt() {}
};

}  // namespace sqs2pg
