#include "pipeline/pipeline.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace sqs2pg::pipeline {
namespace {

// SQS hands out, deletes and extends at most 10 messages a call.
constexpr int kMaxPerCall = 10;
// How often the loop looks at its timers (batch age, backoffs, heartbeat) when nothing happens.
constexpr std::chrono::milliseconds kTick{50};
// DeleteMessageBatch calls in flight at once. A committed batch of 500 would otherwise open 50
// connections in one burst; 16 keep up with any receive rate and reuse their connections.
constexpr int kMaxDeletesInFlight = 16;

}  // namespace

Pipeline::Pipeline(AsyncMessageSource& source, transform::LoginTransform& transform,
                   std::vector<std::unique_ptr<MessageSink>> sinks, PipelineOptions options)
    : source_(source), transform_(transform), sinks_(std::move(sinks)), options_(options) {
  if (options_.max_in_flight == 0) {
    options_.max_in_flight = static_cast<size_t>(options_.receivers) * kMaxPerCall +
                             2 * options_.batch_size * std::max<size_t>(sinks_.size(), 1);
  }
  // A bound below one receive's worth would stop the pipeline for good.
  options_.max_in_flight = std::max<size_t>(options_.max_in_flight, kMaxPerCall);
}

Pipeline::~Pipeline() {
  {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
  }
  work_.notify_all();
  for (auto& t : loaders_) t.join();
}

Pipeline::Clock::duration Pipeline::Backoff(int attempt) {
  return BackoffDelay(options_.retry, std::max(attempt, 1), rng_);
}

void Pipeline::StartReceives(bool stopping) {
  if (stopping || !fatal_.ok() || (idle_ && !options_.follow) || Clock::now() < receive_not_before_) return;
  // With a visibility timeout of 0 every receive hands out the messages in hand again, each time
  // with a new receipt handle, and SQS deletes only with the newest one. Receiving while a batch
  // is loaded or deleted would keep replacing the handles its delete needs, so receive one at a
  // time and only between batches.
  if (ZeroVisibility() && (receives_in_flight_ > 0 || BatchDue() || !ready_.empty() || loads_in_flight_ > 0 ||
                           !deletes_.empty() || deletes_in_flight_ > 0)) {
    return;
  }
  while (receives_in_flight_ < (ZeroVisibility() ? 1 : options_.receivers) &&
         in_hand_.size() + static_cast<size_t>(kMaxPerCall) * (receives_in_flight_ + 1) <=
             options_.max_in_flight) {
    ++receives_in_flight_;
    source_.StartReceive(kMaxPerCall, options_.poll_wait,
                         [this](Result<std::vector<ReceivedMessage>> r) { OnReceived(std::move(r)); });
  }
}

void Pipeline::OnReceived(Result<std::vector<ReceivedMessage>> received) {
  --receives_in_flight_;
  if (!received.ok() && stopping_) return;  // cancelled on the way out
  if (!received.ok()) {
    ++receive_failures_;
    bool give_up = !received.status().IsTransient() ||
                   (!options_.follow && receive_failures_ >= options_.retry.max_attempts);
    if (give_up) {
      if (fatal_.ok()) fatal_ = received.status().Annotate("receive messages");
      return;
    }
    auto delay = Backoff(receive_failures_);
    spdlog::warn("receive failed ({} in a row), retrying in {} ms: {}", receive_failures_,
                 std::chrono::duration_cast<std::chrono::milliseconds>(delay).count(),
                 received.status().message());
    receive_not_before_ = Clock::now() + delay;
    return;
  }
  receive_failures_ = 0;
  if (received->empty()) {
    idle_ = true;
    // Without a long poll an empty queue answers at once: pause instead of spinning.
    if (options_.poll_wait.count() == 0) receive_not_before_ = Clock::now() + std::chrono::milliseconds(200);
  } else if (idle_) {
    saw_messages_while_idle_ = true;
  }
  auto now = Clock::now();
  // In milliseconds: half of a 1 s timeout in whole seconds would be 0.
  auto half_visibility =
      std::chrono::milliseconds(options_.visibility_timeout.value_or(std::chrono::seconds(0))) / 2;
  for (ReceivedMessage& m : *received) {
    ++stats_.received;
    auto [it, fresh] = in_hand_.try_emplace(m.message_id);
    // The newest receipt handle is the only one SQS still honours for a delete.
    it->second.receipt_handle = m.receipt_handle;
    it->second.extend_at = now + half_visibility;
    if (!fresh) {
      ++stats_.duplicates;  // delivered again while still in hand
      continue;
    }
    if (building_.empty()) building_since_ = now;
    ProcessedMessage out{m.message_id, m.received_at_ms, {}};
    auto outcome = transform_.Apply(m.body, m.sent_timestamp_ms);
    if (auto* rejection = std::get_if<Rejection>(&outcome)) {
      spdlog::info("message {} rejected: {}", m.message_id, rejection->reason);
      out.record = std::move(*rejection);
    } else {
      out.record = std::move(std::get<LoginRow>(outcome));
    }
    building_.push_back(std::move(out));
  }
  stats_.max_in_flight_seen = std::max<std::uint64_t>(stats_.max_in_flight_seen, in_hand_.size());
  if (idle_ && receives_in_flight_ == 0) {
    // Every receive started before the queue looked empty has answered.
    if (saw_messages_while_idle_) {
      idle_ = saw_messages_while_idle_ = false;
    } else {
      queue_empty_ = true;
    }
  }
}

bool Pipeline::ZeroVisibility() const {
  return options_.visibility_timeout && options_.visibility_timeout->count() == 0;
}

bool Pipeline::BatchDue() const {
  if (building_.empty()) return false;
  return building_.size() >= options_.batch_size || Clock::now() - building_since_ >= options_.batch_max_wait;
}

void Pipeline::SealBatch(bool force) {
  if (building_.empty()) return;
  if (!(BatchDue() || force)) return;
  // With a zero visibility timeout, a receive still in flight may hand out this batch's messages
  // again with new receipt handles: seal only once it has answered (see StartReceives).
  if (ZeroVisibility() && receives_in_flight_ > 0) return;
  ready_.push_back(Batch{std::move(building_), 0, Clock::now()});
  building_.clear();
}

void Pipeline::DispatchBatches() {
  auto now = Clock::now();
  std::lock_guard lock(mu_);
  while (!ready_.empty() && loads_in_flight_ < static_cast<int>(sinks_.size()) &&
         ready_.front().not_before <= now) {
    to_load_.push_back(std::move(ready_.front()));
    ready_.pop_front();
    ++loads_in_flight_;
    work_.notify_one();
  }
}

void Pipeline::LoaderLoop(MessageSink& sink) {
  while (true) {
    Batch batch;
    {
      std::unique_lock lock(mu_);
      work_.wait(lock, [this] { return shutting_down_ || !to_load_.empty(); });
      if (to_load_.empty()) return;
      batch = std::move(to_load_.front());
      to_load_.pop_front();
    }
    Result<LoadSummary> result = sink.Load(batch.messages);
    {
      std::lock_guard lock(mu_);
      loaded_.push_back(Loaded{std::move(batch), std::move(result)});
    }
    source_.Wakeup();
  }
}

void Pipeline::HandleLoaded() {
  std::vector<Loaded> done;
  {
    std::lock_guard lock(mu_);
    done.swap(loaded_);
  }
  for (Loaded& l : done) {
    --loads_in_flight_;
    if (l.result.ok()) {
      stats_.loaded += l.result->rows_loaded;
      stats_.rejected += l.result->rejects_stored;
      stats_.duplicates += l.result->duplicates;
      PendingDelete pending;
      for (const ProcessedMessage& m : l.batch.messages) {
        pending.message_ids.push_back(m.message_id);
        if (pending.message_ids.size() == kMaxPerCall) deletes_.push_back(std::exchange(pending, {}));
      }
      if (!pending.message_ids.empty()) deletes_.push_back(std::move(pending));
      continue;
    }
    Batch& batch = l.batch;
    ++batch.attempts;
    bool give_up = !l.result.status().IsTransient() ||
                   (!options_.follow && batch.attempts >= options_.retry.max_attempts);
    if (give_up) {
      if (fatal_.ok()) {
        fatal_ = l.result.status().Annotate(fmt::format(
            "load {} messages (not deleted: SQS will deliver them again)", batch.messages.size()));
      }
      // Left for SQS to deliver again; the heartbeat must not keep them hidden.
      for (const ProcessedMessage& m : batch.messages) in_hand_.erase(m.message_id);
      continue;
    }
    auto delay = Backoff(batch.attempts);
    spdlog::warn("load of {} messages failed (attempt {}), retrying in {} ms: {}", batch.messages.size(),
                 batch.attempts, std::chrono::duration_cast<std::chrono::milliseconds>(delay).count(),
                 l.result.status().message());
    batch.not_before = Clock::now() + delay;
    ready_.push_front(std::move(batch));
  }
}

void Pipeline::StartDeletes() {
  auto now = Clock::now();
  for (auto it = deletes_.begin(); it != deletes_.end() && deletes_in_flight_ < kMaxDeletesInFlight;) {
    if (it->not_before > now) {
      ++it;
      continue;
    }
    PendingDelete pending = std::move(*it);
    it = deletes_.erase(it);
    std::vector<std::string> handles;
    for (const std::string& id : pending.message_ids) {
      if (auto m = in_hand_.find(id); m != in_hand_.end()) handles.push_back(m->second.receipt_handle);
    }
    ++deletes_in_flight_;
    source_.StartDelete(std::move(handles), [this, pending = std::move(pending)](Result<size_t> r) mutable {
      --deletes_in_flight_;
      if (!r.ok() && r.status().IsTransient() && ++pending.attempts < options_.retry.max_attempts) {
        pending.not_before = Clock::now() + Backoff(pending.attempts);
        deletes_.push_back(std::move(pending));
        return;
      }
      size_t failed = r.ok() ? *r : pending.message_ids.size();
      if (!r.ok()) {
        // Committed but not deleted: harmless (the ledger skips the redelivery), so keep going.
        spdlog::warn("deleting {} committed messages failed, SQS will deliver them again: {}",
                     pending.message_ids.size(), r.status().message());
      }
      stats_.deleted += pending.message_ids.size() - failed;
      stats_.delete_failures += failed;
      for (const std::string& id : pending.message_ids) in_hand_.erase(id);
    });
  }
}

void Pipeline::Heartbeat() {
  if (!options_.visibility_timeout || options_.visibility_timeout->count() <= 0) return;
  auto now = Clock::now();
  std::vector<std::string> ids;
  auto flush = [&] {
    if (ids.empty()) return;
    std::vector<std::string> handles;
    for (const std::string& id : ids) handles.push_back(in_hand_.find(id)->second.receipt_handle);
    source_.StartExtendVisibility(
        std::move(handles), *options_.visibility_timeout, [this, ids = std::move(ids)](Result<size_t> r) {
          auto next = Clock::now() + std::chrono::milliseconds(*options_.visibility_timeout) / 2;
          for (const std::string& id : ids) {
            auto it = in_hand_.find(id);
            if (it == in_hand_.end()) continue;
            it->second.extending = false;
            if (r.ok()) it->second.extend_at = next;
          }
          if (r.ok()) stats_.visibility_extended += ids.size() - *r;
          if (!r.ok()) spdlog::warn("extending visibility failed: {}", r.status().message());
        });
    ids.clear();
  };
  for (auto& [id, m] : in_hand_) {
    if (m.extending || m.extend_at > now) continue;
    m.extending = true;
    ids.push_back(id);
    if (ids.size() == kMaxPerCall) flush();
  }
  flush();
}

bool Pipeline::Finished(bool stopping) const {
  bool no_more_input = stopping || !fatal_.ok() || (queue_empty_ && !options_.follow);
  return no_more_input && receives_in_flight_ == 0 && building_.empty() && ready_.empty() &&
         loads_in_flight_ == 0 && deletes_.empty() && deletes_in_flight_ == 0;
}

Status Pipeline::Run(const std::atomic<bool>& stop, const ProgressFn& progress) {
  for (auto& sink : sinks_) loaders_.emplace_back([this, s = sink.get()] { LoaderLoop(*s); });
  auto started = Clock::now();
  auto last_heartbeat = started;
  while (true) {
    bool stopping = stop.load();
    if (stopping && !stopping_) {
      stopping_ = true;
      source_.CancelReceives();  // no need to wait out a long poll
    }
    StartReceives(stopping);
    bool input_over = stopping || !fatal_.ok() || (queue_empty_ && !options_.follow);
    SealBatch(input_over && receives_in_flight_ == 0);
    // A failed batch is not retried once the run is failing anyway.
    if (!fatal_.ok())
      ready_.erase(
          std::remove_if(ready_.begin(), ready_.end(), [](const Batch& b) { return b.attempts > 0; }),
          ready_.end());
    DispatchBatches();
    StartDeletes();
    if (Clock::now() - last_heartbeat >= std::chrono::milliseconds(250)) {
      Heartbeat();
      last_heartbeat = Clock::now();
    }
    stats_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (progress) progress(stats_);
    if (Finished(stopping)) break;
    source_.Poll(kTick);
    HandleLoaded();
  }
  return fatal_;
}

}  // namespace sqs2pg::pipeline
