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
#include <vector>

#include "common/result.h"
#include "common/retry.h"
#include "common/stages.h"
#include "transform/login_transform.h"

namespace sqs2pg::pipeline {

struct PipelineOptions {
  // ReceiveMessage calls in flight at once. SQS gives at most 10 messages a call, so against a
  // remote queue throughput is about receivers * 10 / round trip.
  int receivers = 8;
  // Messages per load transaction (one COPY).
  size_t batch_size = 500;
  // Longest a received message waits for its batch to fill before it is loaded anyway, so a
  // trickle of messages is still loaded promptly.
  std::chrono::milliseconds batch_max_wait{1000};
  // Long-poll wait of each receive. Drain mode stops once receives come back empty.
  std::chrono::seconds poll_wait{20};
  // false (drain): stop once the queue is empty and everything received is committed and deleted.
  // true (follow): keep going until stop is requested.
  bool follow = false;
  // Most messages received but not yet deleted. 0: enough for every receiver and two batches per
  // sink. No receive is started that could go past it.
  size_t max_in_flight = 0;
  // The visibility timeout the queue applies to received messages. When set, a message still in
  // hand after half of it has its visibility extended by this much again (the heartbeat), so a
  // slow database does not cause redeliveries. nullopt or 0: no heartbeat.
  std::optional<std::chrono::seconds> visibility_timeout;
  // For receives, loads and deletes that fail with a transient error. A drain run gives up (with
  // the error) after max_attempts in a row; a following run keeps trying. Messages not deleted
  // come back after their visibility timeout, so giving up loses nothing.
  RetryPolicy retry{6, std::chrono::milliseconds(200), std::chrono::milliseconds(10'000)};
};

struct RunStats {
  std::uint64_t received = 0;
  std::uint64_t loaded = 0;
  std::uint64_t duplicates = 0;  // deliveries of a message already in hand or already committed
  std::uint64_t rejected = 0;
  std::uint64_t deleted = 0;
  std::uint64_t delete_failures = 0;  // will be redelivered; the ledger skips them then
  std::uint64_t visibility_extended = 0;
  std::uint64_t max_in_flight_seen = 0;
  double seconds = 0;

  double MessagesPerSecond() const { return seconds > 0 ? static_cast<double>(received) / seconds : 0; }
};

class Pipeline {
 public:
  using ProgressFn = std::function<void(const RunStats&)>;

  // source and transform must outlive the pipeline; each sink gets a loading thread of its own.
  Pipeline(AsyncMessageSource& source, transform::LoginTransform& transform,
           std::vector<std::unique_ptr<MessageSink>> sinks, PipelineOptions options);
  ~Pipeline();

  // Runs until drained (or, when following, until *stop is set). On a stop request, what is in
  // hand is still loaded and deleted. On error, the stats so far are in stats().
  Status Run(const std::atomic<bool>& stop, const ProgressFn& progress = nullptr);
  const RunStats& stats() const { return stats_; }

 private:
  using Clock = std::chrono::steady_clock;

  struct Batch {
    std::vector<ProcessedMessage> messages;
    int attempts = 0;
    Clock::time_point not_before;
  };
  struct Loaded {
    Batch batch;
    Result<LoadSummary> result;
  };
  struct InHand {
    std::string receipt_handle;
    Clock::time_point extend_at;  // when the heartbeat should extend its visibility
    bool extending = false;
  };
  struct PendingDelete {
    std::vector<std::string> message_ids;
    int attempts = 0;
    Clock::time_point not_before;
  };

  void StartReceives(bool stopping);
  void OnReceived(Result<std::vector<ReceivedMessage>> received);
  // A visibility timeout of 0 (tests of redelivery) needs receives and deletes kept apart.
  bool ZeroVisibility() const;
  bool BatchDue() const;
  void SealBatch(bool force);
  void DispatchBatches();
  void HandleLoaded();
  void StartDeletes();
  void Heartbeat();
  void LoaderLoop(MessageSink& sink);
  bool Finished(bool stopping) const;
  Clock::duration Backoff(int attempt);

  AsyncMessageSource& source_;
  transform::LoginTransform& transform_;
  std::vector<std::unique_ptr<MessageSink>> sinks_;
  PipelineOptions options_;
  RunStats stats_;
  Status fatal_;
  std::mt19937_64 rng_{std::random_device{}()};

  // Loop-thread state.
  std::unordered_map<std::string, InHand> in_hand_;
  std::vector<ProcessedMessage> building_;
  Clock::time_point building_since_;
  std::deque<Batch> ready_;
  std::deque<PendingDelete> deletes_;
  int receives_in_flight_ = 0;
  int deletes_in_flight_ = 0;
  int loads_in_flight_ = 0;
  int receive_failures_ = 0;
  Clock::time_point receive_not_before_;
  bool idle_ = false;  // a receive came back empty: stop starting new ones
  bool saw_messages_while_idle_ = false;
  bool queue_empty_ = false;  // drain mode: every receive since idle_ came back empty
  bool stopping_ = false;     // a stop was requested and the receives in flight were cancelled

  // Shared with the loader threads, under mu_.
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Batch> to_load_;
  std::vector<Loaded> loaded_;
  bool shutting_down_ = false;
  std::vector<std::thread> loaders_;
};

}  // namespace sqs2pg::pipeline
