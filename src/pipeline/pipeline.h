#pragma once
// The pipeline: receive -> transform -> load -> delete, in that order for every message, so a
// message leaves the queue only after what became of it is committed.
//
// This first version runs the stages one after another on one thread; batching (many receives
// per COPY) is what makes it fast enough for a local queue.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>

#include "common/result.h"
#include "common/retry.h"
#include "common/stages.h"
#include "transform/login_transform.h"

namespace sqs2pg::pipeline {

struct PipelineOptions {
  // Messages per load transaction (one COPY). Bigger batches mean fewer commits.
  size_t batch_size = 500;
  // Longest a received message waits for its batch to fill before it is loaded anyway, so a
  // trickle of messages is still loaded promptly.
  std::chrono::milliseconds batch_max_wait{1000};
  // Long-poll wait for an idle queue. Drain mode stops after one such poll returns nothing.
  std::chrono::seconds poll_wait{20};
  // false (drain): stop once the queue is empty and everything received is committed and deleted.
  // true (follow): keep polling until stop is requested.
  bool follow = false;
  // For a receive, load or delete that fails with a transient error. When a drain run has used
  // every attempt it gives up with the error (a following run keeps trying). Messages not deleted
  // come back after their visibility timeout, so giving up loses nothing.
  RetryPolicy retry{6, std::chrono::milliseconds(200), std::chrono::milliseconds(10'000)};
};

struct RunStats {
  std::uint64_t received = 0;
  std::uint64_t loaded = 0;
  std::uint64_t duplicates = 0;  // redeliveries the ledger recognised and skipped
  std::uint64_t rejected = 0;
  std::uint64_t deleted = 0;
  std::uint64_t delete_failures = 0;  // will be redelivered; the ledger skips them then
  double seconds = 0;

  double MessagesPerSecond() const { return seconds > 0 ? static_cast<double>(received) / seconds : 0; }
};

class Pipeline {
 public:
  using ProgressFn = std::function<void(const RunStats&)>;

  // All references must outlive the pipeline.
  Pipeline(MessageSource& source, transform::LoginTransform& transform, MessageSink& sink,
           PipelineOptions options);

  // Runs until drained (or, when following, until *stop is set). On a stop request the batch in
  // hand is still loaded and deleted. On error, the stats so far are in stats().
  Status Run(const std::atomic<bool>& stop, const ProgressFn& progress = nullptr);
  const RunStats& stats() const { return stats_; }

 private:
  Status ReceiveInto(std::chrono::seconds wait, size_t& got);
  Status Flush();
  template <typename Fn>
  auto WithRetries(const char* what, const std::atomic<bool>& stop, Fn&& attempt) -> decltype(attempt());

  MessageSource& source_;
  transform::LoginTransform& transform_;
  MessageSink& sink_;
  PipelineOptions options_;
  RunStats stats_;
  const std::atomic<bool>* stop_ = nullptr;
  std::mt19937_64 rng_{std::random_device{}()};

  std::vector<ReceivedMessage> pending_;
  std::vector<ProcessedMessage> processed_;
  std::chrono::steady_clock::time_point oldest_pending_;
};

}  // namespace sqs2pg::pipeline
