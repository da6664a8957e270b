#include "source/dry_run/dry_run_source.h"

#include <algorithm>
#include <utility>

namespace sqs2pg::source {
namespace {

// SQS changes the visibility of at most 10 messages a call.
constexpr size_t kMaxPerCall = 10;
// Release() keeps this many calls in flight, as the pipeline does for deletes.
constexpr int kMaxReleasesInFlight = 16;

}  // namespace

DryRunSource::DryRunSource(AsyncMessageSource& inner, std::chrono::seconds visibility_timeout)
    : inner_(inner), visibility_timeout_(visibility_timeout) {}

void DryRunSource::StartReceive(int max_messages, std::chrono::seconds wait, ReceiveDone done) {
  inner_.StartReceive(max_messages, wait,
                      [this, done = std::move(done)](Result<std::vector<ReceivedMessage>> received) {
                        if (!received.ok()) return done(std::move(received));
                        auto now = Clock::now();
                        std::vector<ReceivedMessage> fresh;
                        for (ReceivedMessage& m : *received) {
                          auto [it, is_new] = held_.try_emplace(m.message_id);
                          it->second.receipt_handle = m.receipt_handle;
                          it->second.extend_at = now + std::chrono::milliseconds(visibility_timeout_) / 2;
                          // Seen already (its visibility ran out): a real run would not count it
                          // twice either, since the ledger would skip it.
                          if (!is_new) {
                            ++redeliveries_dropped_;
                            continue;
                          }
                          fresh.push_back(std::move(m));
                        }
                        done(std::move(fresh));
                      });
}

void DryRunSource::StartDelete(std::vector<std::string> receipt_handles, BatchDone done) {
  (void)receipt_handles;  // kept hidden until Release()
  deletes_done_.push_back(std::move(done));
  inner_.Wakeup();
}

void DryRunSource::StartExtendVisibility(std::vector<std::string> receipt_handles,
                                         std::chrono::seconds timeout, BatchDone done) {
  inner_.StartExtendVisibility(std::move(receipt_handles), timeout, std::move(done));
}

void DryRunSource::CancelReceives() { inner_.CancelReceives(); }

void DryRunSource::Wakeup() { inner_.Wakeup(); }

void DryRunSource::Poll(std::chrono::milliseconds max_wait) {
  std::vector<BatchDone> done;
  done.swap(deletes_done_);
  for (BatchDone& d : done) d(BatchResult{});
  Heartbeat();
  inner_.Poll(done.empty() ? max_wait : std::chrono::milliseconds(0));
}

// The pipeline extends only the messages it still holds; the ones it "deleted" are held here.
void DryRunSource::Heartbeat() {
  if (visibility_timeout_.count() <= 0) return;
  auto now = Clock::now();
  if (now - last_heartbeat_ < std::chrono::milliseconds(250)) return;
  last_heartbeat_ = now;
  std::vector<std::string> ids;
  auto flush = [&] {
    if (ids.empty()) return;
    std::vector<std::string> handles;
    for (const std::string& id : ids) handles.push_back(held_[id].receipt_handle);
    inner_.StartExtendVisibility(
        std::move(handles), visibility_timeout_, [this, ids = std::move(ids)](Result<BatchResult> r) {
          auto next = Clock::now() + std::chrono::milliseconds(visibility_timeout_) / 2;
          for (const std::string& id : ids) {
            auto it = held_.find(id);
            if (it == held_.end()) continue;
            it->second.extending = false;
            if (r.ok()) it->second.extend_at = next;
          }
        });
    ids.clear();
  };
  for (auto& [id, h] : held_) {
    if (h.extending || h.extend_at > now) continue;
    h.extending = true;
    ids.push_back(id);
    if (ids.size() == kMaxPerCall) flush();
  }
  flush();
}

Result<size_t> DryRunSource::Release() {
  // Answer the pipeline's last deletes first, so nothing waits on this source any more.
  std::vector<BatchDone> done;
  done.swap(deletes_done_);
  for (BatchDone& d : done) d(BatchResult{});

  std::vector<std::vector<std::string>> calls;
  for (const auto& [id, h] : held_) {
    if (calls.empty() || calls.back().size() == kMaxPerCall) calls.emplace_back();
    calls.back().push_back(h.receipt_handle);
  }
  size_t released = 0, failed = 0, next = 0;
  int in_flight = 0;
  Status last_error;
  // Bounded by the transport: every call ends (answered, retried out or timed out).
  while (next < calls.size() || in_flight > 0) {
    while (next < calls.size() && in_flight < kMaxReleasesInFlight) {
      size_t n = calls[next].size();
      ++in_flight;
      inner_.StartExtendVisibility(
          std::move(calls[next++]), std::chrono::seconds(0), [&, n](Result<BatchResult> r) {
            --in_flight;
            size_t bad = r.ok() ? std::min(r->retryable.size() + r->refused.size(), n) : n;
            if (!r.ok()) last_error = r.status();
            released += n - bad;
            failed += bad;
          });
    }
    inner_.Poll(std::chrono::milliseconds(50));
  }
  held_.clear();
  if (failed > 0) {
    std::string why = last_error.ok() ? std::string("SQS refused some entries") : last_error.message();
    return Status::Transient(std::to_string(failed) +
                             " messages were not made visible again (they reappear when their visibility "
                             "timeout ends): " +
                             why);
  }
  return released;
}

}  // namespace sqs2pg::source
