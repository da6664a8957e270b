#pragma once
// The pipeline: receive -> transform -> load -> delete, with a message deleted only after what
// became of it is committed.
//
// One thread (the caller's) runs the event loop: it keeps `receivers` ReceiveMessage calls in
// flight, transforms what arrives, cuts batches, sends deletes and visibility extensions. Each
// sink (one Postgres connection) loads batches on a thread of its own. A bound on the messages in
// hand makes a slow database slow the receivers down instead of growing memory.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/result.h"
#include "common/retry.h"
#include "common/stages.h"
#include "metrics/sqs2pg_metrics.h"

namespace sqs2pg::pipeline {

struct PipelineOptions {
  // ReceiveMessage calls in flight at once. SQS gives at most 10 messages a call, so against a
  // remote queue throughput is about receivers * 10 / round trip.
  int receivers = 8;
  // Messages per load transaction (one COPY).
  size_t batch_size = 500;
  // A batch is also sealed once its message bodies add up to this many bytes, so one COPY stays
  // a bounded size whatever the messages weigh.
  size_t batch_bytes = size_t{16} << 20;
  // Longest a received message waits for its batch to fill before it is loaded anyway, so a
  // trickle of messages is still loaded promptly.
  std::chrono::milliseconds batch_max_wait{1000};
  // Long-poll wait of each receive.
  std::chrono::seconds poll_wait{20};
  // false (drain): stop once the queue is empty and everything received is committed and deleted.
  // true (follow): keep going until stop is requested.
  bool follow = false;
  // Most messages received but not yet deleted. 0: enough for every receiver and two batches per
  // sink. No receive is started that could go past it.
  size_t max_in_flight = 0;
  // Most bytes of message bodies received but not yet deleted. No receive is started once this
  // is reached, so the bound can be passed by at most what the receives in flight bring.
  size_t max_in_flight_bytes = size_t{256} << 20;
  // The visibility timeout the queue applies to received messages. When set, a message still in
  // hand after half of it has its visibility extended by this much again (the heartbeat), so a
  // slow database does not cause redeliveries. nullopt or 0: no heartbeat.
  std::optional<std::chrono::seconds> visibility_timeout;
  // Waits between retries of a failing call: full jitter, doubling from the first up to the cap.
  std::chrono::milliseconds retry_first_delay{100};
  std::chrono::milliseconds retry_max_delay{5000};
  // How long a drain keeps retrying a failing SQS call, or a batch Postgres will not take, before
  // it gives up with the error. Messages not deleted come back after their visibility timeout, so
  // giving up loses nothing. A following run retries for as long as it runs.
  std::chrono::milliseconds sqs_retry_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds db_retry_timeout{std::chrono::minutes(5)};
  // After a stop request: how long to go on committing and deleting what is in hand. What is not
  // committed by then is left to SQS, which delivers it again (the ledger makes that safe).
  std::chrono::milliseconds shutdown_timeout{std::chrono::seconds(20)};
  // The sink's --max-receives: a message the sink leaves for redelivery is stored as a reject at
  // this delivery. 0: never, so such a message cycles until the redrive policy takes it, and its
  // redeliveries must not keep a drain going.
  int max_receives = 10;
  // The queue is a FIFO queue. SQS then hands out no more of a message group while one of its
  // messages is in hand: every answer is loaded at once instead of waiting for its batch to fill,
  // and each delete is followed by a short-poll receive for the groups it unlocked, rather than
  // waiting for a long poll started before the unlock (which some servers do not wake).
  bool fifo = false;
  // Where the loop publishes its counts, gauges and heartbeat. nullptr: metrics are off. Must
  // outlive the pipeline.
  metrics::Metrics* metrics = nullptr;
  // With metrics on: how often the queue's approximate depth is read (GetQueueAttributes).
  std::chrono::milliseconds queue_depth_every{std::chrono::seconds(15)};
};

struct RunStats {
  std::uint64_t received = 0;
  std::uint64_t loaded = 0;
  std::uint64_t duplicates = 0;  // deliveries of a message already in hand or already committed
  std::uint64_t rejected = 0;
  std::uint64_t deleted = 0;
  std::uint64_t delete_failures = 0;  // committed but not deleted: redelivered, then skipped
  std::uint64_t visibility_extended = 0;
  // Visibility extensions SQS refused for good: the receipt handle is dead (MessageNotInflight,
  // ReceiptHandleIsInvalid, the 12-hour cap), so the message was dropped from hand. If it is
  // committed meanwhile, it is not deleted (counted in delete_failures): it comes back and the
  // ledger skips it.
  std::uint64_t visibility_refused = 0;
  // Committed messages whose delete failed kDeleteWarnAfter times in a row, or for good. A
  // dead-letter queue gets such a message already loaded (docs/operations.md, "Dead letters").
  std::uint64_t deletes_failing = 0;
  // Messages left in the queue because the database refused them systemically (see
  // LoadSummary::systemic_refusal); a drain ends with an error, a follow run backs off.
  std::uint64_t systemic_refusals = 0;
  // Not committed, left to SQS to deliver again: a message the database would not take yet
  // (see --max-receives), or what a stop or a failure left in hand.
  std::uint64_t left_for_redelivery = 0;
  std::uint64_t max_in_flight_seen = 0;
  std::uint64_t max_bytes_in_hand_seen = 0;
  bool shutdown_timed_out = false;  // a stop could not commit everything in hand in time
  double seconds = 0;

  double MessagesPerSecond() const { return seconds > 0 ? static_cast<double>(received) / seconds : 0; }
};

class Pipeline {
 public:
  using ProgressFn = std::function<void(const RunStats&)>;

  // source and transform must outlive the pipeline; each sink gets a loading thread of its own.
  Pipeline(AsyncMessageSource& source, MessageTransform& transform,
           std::vector<std::unique_ptr<MessageSink>> sinks, PipelineOptions options);
  // Joins the loading threads. REQUIRES: !loaders_busy().
  ~Pipeline();

  // Runs until drained (or, when following, until *stop is set). On a stop request, what is in
  // hand is still loaded and deleted, for at most shutdown_timeout. On error, the stats so far are
  // in stats().
  Status Run(const std::atomic<bool>& stop, const ProgressFn& progress = nullptr);
  const RunStats& stats() const { return stats_; }
  // True when Run returned while a loading thread was still inside the database (a connection
  // attempt that could not be interrupted in time). The pipeline cannot be destroyed safely then:
  // the caller should end the process (nothing is lost: those messages were not deleted).
  bool loaders_busy() const { return loads_in_flight_ > 0; }

 private:
  using Clock = std::chrono::steady_clock;

  struct Batch {
    std::vector<ProcessedMessage> messages;
    FailureStreak failures;
    Clock::time_point not_before;
  };
  struct Loaded {
    Batch batch;
    Result<LoadSummary> result;
  };
  struct InHand {
    std::string receipt_handle;
    Clock::time_point extend_at;  // when the heartbeat should extend its visibility
    Clock::time_point received;   // first delivery of this stay in hand
    bool extending = false;
    int extend_failures = 0;
    // SQS refused to extend it for good: this receipt handle will not delete it either. A new
    // delivery (a new handle) brings it back to life.
    bool handle_dead = false;
    size_t bytes = 0;
  };
  struct PendingDelete {
    std::vector<std::string> message_ids;
    FailureStreak failures;
    Clock::time_point not_before;
    bool warned = false;  // its messages were reported as committed with a failing delete
  };
  // A committed message's delete failing this many times in a row is reported (warning, metric).
  static constexpr int kDeleteWarnAfter = 3;
  // Reports committed messages whose delete keeps failing, or failed for good.
  void WarnDeleteFailing(const std::vector<std::string>& message_ids, const std::string& why);
  // A load left messages because the database refuses them systemically: a drain fails, a
  // follow run backs its receives off.
  void OnSystemicRefusal(const std::string& why, size_t left, Clock::time_point now);

  void StartReceives();
  // round: the confirmation round the receive belongs to (see StartReceives), 0 for none.
  // unlock: the short poll that follows a delete from a FIFO queue.
  void StartOneReceive(int round, bool unlock = false);
  // started: when the receive was sent (evidence of emptiness counts only from receives sent
  // after the latest message arrived).
  void OnReceived(int round, bool unlock, Clock::time_point started,
                  Result<std::vector<ReceivedMessage>> received);
  // A visibility timeout of 0 (tests of redelivery) needs receives and deletes kept apart.
  bool ZeroVisibility() const;
  // After a round of empty receives: SQS's counts as a cross-check before calling it drained.
  void CheckDepthBeforeDraining();
  // Nothing received is waiting to be loaded, loaded, deleted or retried.
  bool NothingInHand() const;
  bool BatchDue() const;
  bool BatchCannotGrow() const;
  // The in-flight bounds leave room for one more receive of 10 beside `receives_out` already out
  // (each counted at 10 messages). The one definition of the bound the receivers stop at.
  bool RoomToReceive(int receives_out) const;
  void SealBatch(bool force);
  void DispatchBatches();
  void HandleLoaded();
  void StartDeletes();
  void OnDeleted(PendingDelete pending, Result<BatchResult> result);
  void Heartbeat();
  void LoaderLoop(MessageSink& sink);
  // Forgets a message: committed and deleted, or left to SQS to deliver again.
  void Release(const std::string& message_id);
  // After the shutdown timeout: stop the loaders and hand back what was not committed.
  void Abandon();
  bool Finished() const;
  Clock::duration Backoff(int failures);
  // With metrics on: adds what stats_ counted since the last call to the counters, and sets the
  // gauges and the heartbeat. Once per loop turn, so a counter costs one atomic add per turn.
  void PublishMetrics(Clock::time_point now);
  // With metrics on, per committed batch: rejects by reason class, the lag, the batch size.
  void CountCommitted(const Batch& batch, const LoadSummary& summary);
  void PublishQueueDepth(const QueueDepth& depth);

  AsyncMessageSource& source_;
  MessageTransform& transform_;
  std::vector<std::unique_ptr<MessageSink>> sinks_;
  PipelineOptions options_;
  RetryPolicy backoff_;
  RunStats stats_;
  Status fatal_;
  std::mt19937_64 rng_{std::random_device{}()};

  // Loop-thread state.
  std::unordered_map<std::string, InHand> in_hand_;
  size_t bytes_in_hand_ = 0;
  // How many of in_hand_ have handle_dead set (almost always none): a committed batch looks its
  // messages up for a dead handle only when there is one.
  size_t dead_handles_in_hand_ = 0;
  std::vector<ProcessedMessage> building_;
  // A loaded batch's vector, emptied and kept for its capacity: the next batch is built in it
  // instead of growing a new vector by doubling (each step moved every message built so far).
  std::vector<ProcessedMessage> spare_building_;
  size_t building_bytes_ = 0;
  Clock::time_point building_since_;
  bool flush_now_ = false;  // a receive came back empty: load what is in hand without waiting
  // FIFO: deletes unlocked groups since the last short poll for them; one is in flight.
  bool unlock_receive_due_ = false;
  bool unlock_receive_in_flight_ = false;
  std::deque<Batch> ready_;
  std::deque<PendingDelete> deletes_;
  int receives_in_flight_ = 0;
  int deletes_in_flight_ = 0;
  int loads_in_flight_ = 0;
  size_t messages_loading_ = 0;  // in the batches handed to the loaders
  FailureStreak receive_failures_;
  FailureStreak depth_failures_;  // the cross-check before a drain ends (CheckDepthBeforeDraining)
  Clock::time_point receive_not_before_;
  bool idle_ = false;  // the latest receive came back empty
  // Drain mode decides "empty" only with a round of receives started once nothing was in hand
  // (see StartReceives): the current round, its receives in flight, and how many more empty
  // answers it needs.
  int confirm_round_ = 0;
  // A standard queue: an empty answer to a receive sent after the latest non-empty answer arrived
  // is evidence enough that the queue was empty (messages in hand hide nothing there, unlike a
  // FIFO queue's groups), so no confirmation round is needed: the drain goes straight to the
  // cross-check of SQS's counts once everything is deleted. The drain's end then costs one long
  // poll and one GetQueueAttributes.
  Clock::time_point last_message_at_{};
  bool empty_seen_ = false;
  int confirming_in_flight_ = 0;
  int confirm_needed_ = 0;
  bool drained_ = false;
  bool checking_depth_ = false;         // the cross-check of a clean round is under way
  Clock::time_point drain_wait_until_;  // how long the cross-check may keep a drain waiting
  // Messages the sink left for redelivery. Their coming back is not progress when max_receives is
  // 0 (nothing will ever end their cycle), so it does not restart the drain's wait.
  std::unordered_set<std::string> left_ids_;
  // Follow mode: loads that ended in a systemic refusal in a row; receives back off by it.
  int systemic_streak_ = 0;
  // Visibility releases (timeout 0) Abandon() sent that have not answered yet.
  int releases_in_flight_ = 0;
  bool stopping_ = false;  // a stop was requested and the receives in flight were cancelled
  Clock::time_point shutdown_deadline_;
  // Metrics: stats_ as last published, when the oldest message in hand was last looked for, and
  // the next periodic read of the queue's depth.
  RunStats published_;
  Clock::time_point oldest_checked_;
  Clock::time_point depth_due_;
  bool depth_in_flight_ = false;

  // Shared with the loader threads, under mu_.
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Batch> to_load_;
  std::vector<Loaded> loaded_;
  bool shutting_down_ = false;
  std::vector<std::thread> loaders_;
};

}  // namespace sqs2pg::pipeline
