#pragma once
// The source side of `sqs2pg run --dry-run`: a dry run reads the queue like a real run but must
// leave it as it found it. DryRunSource wraps the real source and never deletes: a delete the
// pipeline asks for (after its "load", which in a dry run writes nothing) only reports success,
// while the message stays hidden (this keeps extending its visibility) so the run does not read it
// twice. At the end, Release() makes every message it handed out visible again at once.

#include <chrono>
#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/stages.h"

namespace sqs2pg::source {

// Not thread-safe, like the source it wraps: use it on the pipeline's loop thread (Wakeup aside).
class DryRunSource : public AsyncMessageSource {
 public:
  // visibility_timeout: what receives hide a message for (0: no extensions, tests only).
  // inner must outlive this.
  DryRunSource(AsyncMessageSource& inner, std::chrono::seconds visibility_timeout);

  void StartReceive(int max_messages, std::chrono::seconds wait, ReceiveDone done) override;
  // Deletes nothing; `done` reports success on the next Poll().
  void StartDelete(std::vector<std::string> receipt_handles, BatchDone done) override;
  void StartExtendVisibility(std::vector<std::string> receipt_handles, std::chrono::seconds timeout,
                             BatchDone done) override;
  void CancelReceives() override;
  void Poll(std::chrono::milliseconds max_wait) override;
  void Wakeup() override;

  // Sets the visibility of every message received so far to 0 (ChangeMessageVisibility), so the
  // next consumer gets them at once. Returns how many were released; an error names how many
  // were not (they reappear when their visibility timeout ends: nothing is lost either way).
  Result<size_t> Release();

  // Messages received (each counted once) and deliveries of one already held, dropped.
  size_t held() const { return held_.size(); }
  size_t redeliveries_dropped() const { return redeliveries_dropped_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Held {
    std::string receipt_handle;  // the newest: the only one SQS honours
    Clock::time_point extend_at;
    bool extending = false;
  };

  void Heartbeat();

  AsyncMessageSource& inner_;
  std::chrono::seconds visibility_timeout_;
  std::unordered_map<std::string, Held> held_;  // by message id
  std::vector<BatchDone> deletes_done_;         // answered on the next Poll()
  size_t redeliveries_dropped_ = 0;
  Clock::time_point last_heartbeat_;
};

}  // namespace sqs2pg::source
