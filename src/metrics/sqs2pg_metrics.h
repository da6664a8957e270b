#pragma once
// Every metric sqs2pg exports, defined once: name, help, type, labels. The pipeline, the SQS
// source and the Postgres sink each get a Metrics* (nullptr when metrics are off) and update the
// members below; the registry renders them for /metrics. docs/operations.md lists them with what
// to alert on.
//
// Names follow the Prometheus conventions: sqs2pg_ prefix, base units (seconds, bytes), counters
// end in _total, histograms of durations in _seconds.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "metrics/registry.h"

namespace sqs2pg::metrics {

// SQS operations the pipeline calls, as label values and array indexes.
enum class SqsOp : std::uint8_t {
  kReceiveMessage,
  kDeleteMessageBatch,
  kChangeMessageVisibilityBatch,
  kGetQueueAttributes,
  kCount
};
std::string_view SqsOpName(SqsOp op);
// kCount for an operation not in the list.
SqsOp SqsOpFromName(std::string_view name);

// What became of one SQS call (the outcome label).
enum class SqsOutcome : std::uint8_t {
  kSuccess,
  kThrottled,     // ThrottlingException, RequestThrottled, ...: retried
  kServerError,   // HTTP 5xx: retried
  kClientError,   // any other HTTP 4xx (access denied, no such queue, expired token)
  kNetworkError,  // no HTTP answer: connection refused, timeout, TLS
  kCount
};
std::string_view SqsOutcomeName(SqsOutcome outcome);

// Reasons a message is rejected, by class: the label values of sqs2pg_messages_rejected_total.
// A class, not the reason text, so the number of series stays bounded whatever the messages say.
inline constexpr std::array<std::string_view, 13> kRejectReasons = {
    "invalid_json", "not_an_object", "duplicate_field", "missing_field", "wrong_type",    "empty_field",
    "invalid_text", "invalid_ip",    "invalid_value",   "too_long",      "bad_timestamp", "database_refused",
    "other"};
// The class of a reject's reason text (see transform/login_transform.cc and the Postgres sink).
std::string_view RejectReasonClass(std::string_view reason);

// Liveness and readiness, read by /healthz and /readyz.
struct Health {
  // Steady-clock milliseconds of the event loop's latest turn; 0 until the pipeline runs.
  std::atomic<std::int64_t> loop_turned_ms{0};
  std::atomic<bool> stopping{false};  // SIGTERM/SIGINT received: no longer ready
  // Dry runs and --discard-messages load into no database: readiness does not wait for one.
  std::atomic<bool> needs_postgres{true};
  // The latest SQS call had an answer (2xx, or throttling): SQS is reachable and working.
  std::atomic<bool> sqs_ok{false};

  static std::int64_t NowMs();  // steady clock
  void LoopTurned() { loop_turned_ms.store(NowMs(), std::memory_order_relaxed); }
};

struct Metrics {
  explicit Metrics(Registry& registry);

  Registry& registry;
  Health health;

  // Messages (counted per call or per batch, not per message: one atomic add each).
  Counter& received;
  Counter& loaded;
  Family<Counter>& rejected;  // label reason (kRejectReasons)
  std::array<Counter*, kRejectReasons.size()> rejected_by_reason{};
  Counter& duplicates;
  Counter& deleted;
  Counter& delete_failures;
  Counter& left_for_redelivery;
  Counter& visibility_extended;
  // Visibility extensions SQS refused for good (MessageNotInflight, ReceiptHandleIsInvalid, the
  // 12-hour cap): the message's receipt handle is dead, so it was dropped from hand.
  Counter& visibility_refused;
  // Committed messages whose delete has failed kDeleteWarnAfter times in a row or for good: if
  // SQS moves one to a dead-letter queue, it is there already loaded.
  Counter& deletes_failing;
  // Messages left in the queue because the database refused them systemically (one SQLSTATE,
  // messages of different shapes in a row): the fault is the database's, not the messages'.
  Counter& systemic_refusals;
  Gauge& in_hand_messages;
  Gauge& in_hand_bytes;
  Gauge& oldest_in_hand_age_seconds;
  // For sqs2pg_lag_seconds, computed at scrape: SentTimestamp (Unix ms) of the newest message
  // committed, and whether the pipeline is caught up (nothing in hand, the latest receive empty).
  std::atomic<std::int64_t> newest_loaded_sent_ms{0};
  std::atomic<bool> caught_up{false};
  // SQS's approximate counts (GetQueueAttributes), label state: visible, not_visible, delayed.
  Family<Gauge>& queue_messages;
  Gauge& queue_visible;
  Gauge& queue_not_visible;
  Gauge& queue_delayed;
  Histogram& batch_messages;

  // SQS calls.
  std::array<std::array<Counter*, static_cast<size_t>(SqsOutcome::kCount)>,
             static_cast<size_t>(SqsOp::kCount)>
      sqs_requests{};
  std::array<Counter*, static_cast<size_t>(SqsOp::kCount)> sqs_retries{};
  std::array<Histogram*, static_cast<size_t>(SqsOp::kCount)> sqs_request_seconds{};
  Counter& sqs_requests_other;  // an operation outside SqsOp (the blocking client at start-up)

  // Postgres.
  Counter& postgres_commits;
  Counter& postgres_retries;  // batches that failed (transiently) and are loaded again later
  Counter& postgres_reconnects;
  Gauge& postgres_connections_up;
  Histogram& postgres_load_seconds;    // one batch's Load(): BEGIN .. COMMIT, splits included
  Histogram& postgres_commit_seconds;  // the COMMIT statement alone

  void CountSqsCall(SqsOp op, SqsOutcome outcome, double seconds);
  void CountSqsRetries(SqsOp op, std::uint64_t n = 1);
  void CountRejects(std::string_view reason, std::uint64_t n = 1);
};

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds, process_start_time_seconds: the names every Prometheus
// client library uses, read from /proc/self at each scrape.
void AddProcessMetrics(Registry& registry);

}  // namespace sqs2pg::metrics
