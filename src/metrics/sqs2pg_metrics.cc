#include "metrics/sqs2pg_metrics.h"

#include <chrono>

namespace sqs2pg::metrics {
namespace {

constexpr std::array<std::string_view, static_cast<size_t>(SqsOp::kCount)> kSqsOpNames = {
    "ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch", "GetQueueAttributes"};
constexpr std::array<std::string_view, static_cast<size_t>(SqsOutcome::kCount)> kSqsOutcomeNames = {
    "success", "throttled", "server_error", "client_error", "network_error"};

// Seconds: 1 ms .. ~33 s, doubling. A COPY of a batch takes milliseconds; a failover, seconds.
std::vector<double> LatencyBuckets() { return ExponentialBuckets(0.001, 2, 16); }

std::int64_t UnixMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string_view SqsOpName(SqsOp op) { return kSqsOpNames[static_cast<size_t>(op)]; }

SqsOp SqsOpFromName(std::string_view name) {
  for (size_t i = 0; i < kSqsOpNames.size(); ++i)
    if (kSqsOpNames[i] == name) return static_cast<SqsOp>(i);
  return SqsOp::kCount;
}

std::string_view SqsOutcomeName(SqsOutcome outcome) { return kSqsOutcomeNames[static_cast<size_t>(outcome)]; }

std::string_view RejectReasonClass(std::string_view r) {
  auto has = [r](std::string_view part) { return r.find(part) != std::string_view::npos; };
  // The reasons LoginTransform writes, then the sink's for a row the database refused.
  if (r.starts_with("body is not valid JSON")) return "invalid_json";
  if (r.starts_with("body is ") && has("expected a JSON object")) return "not_an_object";
  if (r.starts_with("database refused")) return "database_refused";
  if (has("SentTimestamp")) return "bad_timestamp";
  if (r.starts_with("missing field ")) return "missing_field";
  if (has("appears more than once")) return "duplicate_field";
  if (has(" must be a string")) return "wrong_type";
  if (r.starts_with("field ") && has(" is empty")) return "empty_field";
  if (has("contains U+0000")) return "invalid_text";
  if (has("is not a valid IPv4 or IPv6 address")) return "invalid_ip";
  if (has("longer than its column") || has("would not fit")) return "too_long";
  if (has("does not fit the integer column")) return "invalid_value";
  return "other";
}

std::int64_t Health::NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

Metrics::Metrics(Registry& r)
    : registry(r),
      received(
          r.AddCounter("sqs2pg_messages_received_total", "Messages received from SQS, redeliveries included")
              .Get()),
      loaded(r.AddCounter("sqs2pg_messages_loaded_total", "Messages committed to the table as rows").Get()),
      rejected(r.AddCounter("sqs2pg_messages_rejected_total",
                            "Messages committed to the rejects table, by reason class", {"reason"})),
      duplicates(r.AddCounter("sqs2pg_messages_duplicates_total",
                              "Deliveries skipped as duplicates: already in hand, or already in the ledger")
                     .Get()),
      deleted(r.AddCounter("sqs2pg_messages_deleted_total", "Messages deleted from SQS after their commit")
                  .Get()),
      delete_failures(r.AddCounter("sqs2pg_messages_delete_failures_total",
                                   "Committed messages SQS would not delete: they come back and are skipped")
                          .Get()),
      left_for_redelivery(r.AddCounter("sqs2pg_messages_left_for_redelivery_total",
                                       "Messages not committed and left to SQS to deliver again")
                              .Get()),
      visibility_extended(r.AddCounter("sqs2pg_messages_visibility_extended_total",
                                       "Visibility extensions of messages in hand (the heartbeat)")
                              .Get()),
      visibility_refused(
          r.AddCounter("sqs2pg_messages_visibility_refused_total",
                       "Visibility extensions SQS refused for good (dead receipt handle): dropped from hand")
              .Get()),
      deletes_failing(
          r.AddCounter("sqs2pg_messages_committed_delete_failing_total",
                       "Committed messages whose delete keeps failing (a dead-letter queue would get "
                       "them already loaded)")
              .Get()),
      systemic_refusals(
          r.AddCounter("sqs2pg_messages_systemic_refusals_total",
                       "Messages left in the queue because the database refused them systemically "
                       "(one SQLSTATE, messages of different shapes in a row)")
              .Get()),
      in_hand_messages(
          r.AddGauge("sqs2pg_in_hand_messages", "Messages received and not yet deleted or released").Get()),
      in_hand_bytes(r.AddGauge("sqs2pg_in_hand_bytes", "Bytes of the bodies of the messages in hand").Get()),
      oldest_in_hand_age_seconds(
          r.AddGauge("sqs2pg_in_hand_oldest_age_seconds",
                     "Time since sqs2pg received the oldest message it still holds; 0 when it holds none")
              .Get()),
      queue_messages(r.AddGauge(
          "sqs2pg_queue_messages",
          "SQS's approximate message counts for the queue (GetQueueAttributes), by state", {"state"})),
      queue_visible(queue_messages.With({"visible"})),
      queue_not_visible(queue_messages.With({"not_visible"})),
      queue_delayed(queue_messages.With({"delayed"})),
      batch_messages(r.AddHistogram("sqs2pg_batch_messages", "Messages per batch loaded in one transaction",
                                    {1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000})
                         .Get()),
      sqs_requests_other(r.AddCounter("sqs2pg_sqs_requests_other_total",
                                      "SQS calls of an operation not counted in sqs2pg_sqs_requests_total")
                             .Get()),
      postgres_commits(
          r.AddCounter("sqs2pg_postgres_commits_total", "Load transactions committed, split halves included")
              .Get()),
      postgres_retries(r.AddCounter("sqs2pg_postgres_retries_total",
                                    "Batch loads that failed for a passing reason and are tried again")
                           .Get()),
      postgres_reconnects(
          r.AddCounter("sqs2pg_postgres_reconnects_total", "Attempts to re-open a lost Postgres connection")
              .Get()),
      postgres_connections_up(
          r.AddGauge("sqs2pg_postgres_connections_up",
                     "Loader connections whose latest Postgres call succeeded (0: Postgres unreachable)")
              .Get()),
      postgres_load_seconds(r.AddHistogram("sqs2pg_postgres_load_duration_seconds",
                                           "Time to load one batch: BEGIN to COMMIT, splits included",
                                           LatencyBuckets())
                                .Get()),
      postgres_commit_seconds(r.AddHistogram("sqs2pg_postgres_commit_duration_seconds",
                                             "Time of the COMMIT statement of a load", LatencyBuckets())
                                  .Get()) {
  for (size_t i = 0; i < kRejectReasons.size(); ++i)
    rejected_by_reason[i] = &rejected.With({std::string(kRejectReasons[i])});
  // Every operation and outcome from the start, so rate() and alerts see a 0 before the first error.
  auto& requests = r.AddCounter("sqs2pg_sqs_requests_total", "SQS calls by operation and outcome",
                                {"operation", "outcome"});
  auto& retries =
      r.AddCounter("sqs2pg_sqs_retries_total",
                   "SQS calls (or entries of batch calls) sent again after a failure", {"operation"});
  auto& seconds = r.AddHistogram("sqs2pg_sqs_request_duration_seconds",
                                 "Time of SQS calls by operation; ReceiveMessage includes its long poll",
                                 ExponentialBuckets(0.001, 2, 16), {"operation"});
  for (size_t op = 0; op < kSqsOpNames.size(); ++op) {
    std::string name(kSqsOpNames[op]);
    for (size_t o = 0; o < kSqsOutcomeNames.size(); ++o)
      sqs_requests[op][o] = &requests.With({name, std::string(kSqsOutcomeNames[o])});
    sqs_retries[op] = &retries.With({name});
    sqs_request_seconds[op] = &seconds.With({name});
  }
  r.AddCollector("sqs2pg_sqs_up", "1 when the latest SQS call was answered (success or throttling), else 0",
                 Type::kGauge, [this] {
                   return std::vector<Sample>{{{}, health.sqs_ok.load() ? 1.0 : 0.0}};
                 });
  r.AddCollector("sqs2pg_lag_seconds",
                 "Now minus the SentTimestamp of the newest message committed; 0 when caught up (nothing in "
                 "hand and the latest receive empty) or before the first commit",
                 Type::kGauge, [this] {
                   std::int64_t sent = newest_loaded_sent_ms.load(std::memory_order_relaxed);
                   double lag = 0;
                   if (sent > 0 && !caught_up.load(std::memory_order_relaxed))
                     lag = std::max<std::int64_t>(UnixMs() - sent, 0) / 1000.0;
                   return std::vector<Sample>{{{}, lag}};
                 });
}

void Metrics::CountSqsCall(SqsOp op, SqsOutcome outcome, double seconds) {
  if (op == SqsOp::kCount) {
    sqs_requests_other.Inc();
    return;
  }
  sqs_requests[static_cast<size_t>(op)][static_cast<size_t>(outcome)]->Inc();
  sqs_request_seconds[static_cast<size_t>(op)]->Observe(seconds);
  // Throttling is an answer: SQS is there, only busy.
  health.sqs_ok.store(outcome == SqsOutcome::kSuccess || outcome == SqsOutcome::kThrottled,
                      std::memory_order_relaxed);
}

void Metrics::CountSqsRetries(SqsOp op, std::uint64_t n) {
  if (op != SqsOp::kCount) sqs_retries[static_cast<size_t>(op)]->Inc(n);
}

void Metrics::CountRejects(std::string_view reason, std::uint64_t n) {
  std::string_view cls = RejectReasonClass(reason);
  for (size_t i = 0; i < kRejectReasons.size(); ++i) {
    if (kRejectReasons[i] == cls) {
      rejected_by_reason[i]->Inc(n);
      return;
    }
  }
}

}  // namespace sqs2pg::metrics
