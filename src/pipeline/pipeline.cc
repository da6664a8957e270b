#include "pipeline/pipeline.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_set>

namespace sqs2pg::pipeline {
namespace {

// SQS hands out, deletes and extends at most 10 messages a call.
constexpr int kMaxPerCall = 10;
// How often the loop looks at its timers (batch age, backoffs, heartbeat) when nothing happens.
constexpr std::chrono::milliseconds kTick{50};
// DeleteMessageBatch calls in flight at once. A committed batch of 500 would otherwise open 50
// connections in one burst; 16 keep up with any receive rate and reuse their connections.
constexpr int kMaxDeletesInFlight = 16;
// After the shutdown timeout, how long the loaders get to notice the interrupt.
constexpr std::chrono::seconds kInterruptGrace{2};

std::int64_t Millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

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
  backoff_.base_delay = options_.retry_first_delay;
  backoff_.max_delay = options_.retry_max_delay;
}

Pipeline::~Pipeline() {
  {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
  }
  work_.notify_all();
  for (auto& t : loaders_) t.join();
}

Pipeline::Clock::duration Pipeline::Backoff(int failures) {
  return BackoffDelay(backoff_, std::max(failures, 1), rng_);
}

bool Pipeline::NothingInHand() const {
  return in_hand_.empty() && building_.empty() && ready_.empty() && loads_in_flight_ == 0 &&
         deletes_.empty() && deletes_in_flight_ == 0;
}

void Pipeline::StartReceives() {
  if (stopping_ || !fatal_.ok() || drained_ || Clock::now() < receive_not_before_) return;
  // With a visibility timeout of 0 every receive hands out the messages in hand again, each time
  // with a new receipt handle, and SQS deletes only with the newest one. Receiving while a batch
  // is loaded or deleted would keep replacing the handles its delete needs, so receive one at a
  // time and only between batches.
  if (ZeroVisibility() && (receives_in_flight_ > 0 || BatchDue() || !ready_.empty() || loads_in_flight_ > 0 ||
                           !deletes_.empty() || deletes_in_flight_ > 0)) {
    return;
  }
  int receivers = ZeroVisibility() ? 1 : options_.receivers;
  if (options_.fifo && unlock_receive_due_ && !unlock_receive_in_flight_ && !ZeroVisibility() &&
      in_hand_.size() + kMaxPerCall <= options_.max_in_flight &&
      bytes_in_hand_ < options_.max_in_flight_bytes) {
    unlock_receive_due_ = false;
    unlock_receive_in_flight_ = true;
    StartOneReceive(0, /*unlock=*/true);
  }
  if (!options_.follow && idle_) {
    // The queue looked empty. That is decided only by a round of receives started once everything
    // in hand is committed and deleted: a FIFO queue hides a group's next messages while one of
    // the group is in hand, so empty answers received before then prove nothing. Each receive of
    // the round must come back empty; one that fails is sent again, one with messages ends it.
    if (!NothingInHand() || receives_in_flight_ > confirming_in_flight_ || checking_depth_) return;
    if (confirm_needed_ == 0 && confirming_in_flight_ == 0) {
      ++confirm_round_;
      confirm_needed_ = receivers;
    }
    while (confirming_in_flight_ < confirm_needed_) StartOneReceive(confirm_round_);
    return;
  }
  while (receives_in_flight_ < receivers &&
         in_hand_.size() + static_cast<size_t>(kMaxPerCall) * (receives_in_flight_ + 1) <=
             options_.max_in_flight &&
         bytes_in_hand_ < options_.max_in_flight_bytes) {
    StartOneReceive(0);
  }
}

void Pipeline::StartOneReceive(int round, bool unlock) {
  ++receives_in_flight_;
  if (round > 0) ++confirming_in_flight_;
  source_.StartReceive(kMaxPerCall, unlock ? std::chrono::seconds(0) : options_.poll_wait,
                       [this, round, unlock](Result<std::vector<ReceivedMessage>> r) {
                         OnReceived(round, unlock, std::move(r));
                       });
}

void Pipeline::OnReceived(int round, bool unlock, Result<std::vector<ReceivedMessage>> received) {
  --receives_in_flight_;
  if (unlock) unlock_receive_in_flight_ = false;
  if (round > 0) --confirming_in_flight_;
  // Only answers to the current round's receives count towards "drained".
  bool confirming = round > 0 && round == confirm_round_ && confirm_needed_ > 0;
  auto now = Clock::now();
  if (!received.ok()) {
    if (stopping_) return;  // cancelled on the way out
    receive_failures_.Fail(now);
    bool give_up = !received.status().IsTransient() ||
                   (!options_.follow && receive_failures_.Exhausted(now, options_.sqs_retry_timeout));
    if (give_up) {
      if (fatal_.ok()) fatal_ = received.status().Annotate("receive messages");
      return;
    }
    auto delay = Backoff(receive_failures_.failures);
    spdlog::warn("receive failed ({} in a row over {} ms), retrying in {} ms: {}", receive_failures_.failures,
                 Millis(now - receive_failures_.since), Millis(delay), received.status().message());
    receive_not_before_ = std::max(receive_not_before_, now + delay);
    return;
  }
  receive_failures_.Reset();
  if (received->empty()) {
    idle_ = true;
    // Messages in hand may be what keeps the queue empty (a FIFO group waits for them to be
    // deleted), and nothing else is coming to fill their batch: load them now.
    flush_now_ = true;
    // Without a long poll an empty queue answers at once: pause instead of spinning.
    if (options_.poll_wait.count() == 0) receive_not_before_ = now + std::chrono::milliseconds(200);
    if (confirming && --confirm_needed_ == 0) CheckDepthBeforeDraining();
    return;
  }
  idle_ = false;
  // FIFO: these messages lock their groups until deleted, so nothing is coming to fill their
  // batch that is worth waiting for.
  if (options_.fifo) flush_now_ = true;
  // Progress, so a later wait for hidden messages starts afresh; but not a message that the sink
  // left for redelivery and will leave again for ever (max_receives 0).
  bool progress = options_.max_receives > 0 || left_ids_.empty() ||
                  std::any_of(received->begin(), received->end(),
                              [this](const ReceivedMessage& m) { return !left_ids_.count(m.message_id); });
  if (progress) drain_wait_until_ = {};
  if (round == confirm_round_) confirm_needed_ = 0;  // messages after all: this round is over
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
    it->second.bytes = m.body.size();
    bytes_in_hand_ += m.body.size();
    if (building_.empty()) building_since_ = now;
    ProcessedMessage out{m.message_id, m.received_at_ms, {}, std::max(m.receive_count, 1), m.body.size(),
                         m.fifo};
    out.sent_timestamp_ms = m.sent_timestamp_ms;
    auto outcome = transform_.Apply(m.body, m.sent_timestamp_ms);
    if (auto* rejection = std::get_if<Rejection>(&outcome)) {
      spdlog::info("message {} rejected: {}", m.message_id, rejection->reason);
      out.record = std::move(*rejection);
    } else {
      out.record = std::move(std::get<LoginRow>(outcome));
    }
    building_bytes_ += out.body_bytes;
    building_.push_back(std::move(out));
  }
  stats_.max_in_flight_seen = std::max<std::uint64_t>(stats_.max_in_flight_seen, in_hand_.size());
  stats_.max_bytes_in_hand_seen = std::max<std::uint64_t>(stats_.max_bytes_in_hand_seen, bytes_in_hand_);
}

void Pipeline::CheckDepthBeforeDraining() {
  checking_depth_ = true;
  source_.StartQueueDepth([this](Result<QueueDepth> depth) {
    checking_depth_ = false;
    auto now = Clock::now();
    if (!depth.ok()) {
      drained_ = true;  // no cross-check to be had: the receives decide
      return;
    }
    std::int64_t left = depth->visible + depth->not_visible + depth->delayed;
    if (left <= 0) {
      drained_ = true;
      return;
    }
    // Receives see nothing, yet SQS counts messages: in flight at another consumer, or hidden by a
    // receive whose answer was lost, until their visibility timeout. Wait that long, no longer.
    if (drain_wait_until_ == Clock::time_point{}) {
      auto visibility = std::chrono::seconds(options_.visibility_timeout.value_or(std::chrono::seconds(30)));
      drain_wait_until_ = now + visibility + std::chrono::seconds(5);
      spdlog::info(
          "receives find the queue empty, but SQS counts {} visible, {} in flight, {} delayed: waiting up to "
          "{} ms "
          "for them",
          depth->visible, depth->not_visible, depth->delayed, Millis(drain_wait_until_ - now));
    }
    if (now >= drain_wait_until_) {
      spdlog::warn(
          "ending the drain while SQS still counts {} messages in flight or delayed (another consumer's, or "
          "not yet due): the next run gets what is left",
          left);
      drained_ = true;
      return;
    }
    receive_not_before_ = std::max(receive_not_before_, now + std::chrono::seconds(1));
  });
}

bool Pipeline::ZeroVisibility() const {
  return options_.visibility_timeout && options_.visibility_timeout->count() == 0;
}

bool Pipeline::BatchDue() const {
  if (building_.empty()) return false;
  return building_.size() >= options_.batch_size || building_bytes_ >= options_.batch_bytes ||
         Clock::now() - building_since_ >= options_.batch_max_wait;
}

void Pipeline::SealBatch(bool force) {
  if (building_.empty()) return;
  if (!(BatchDue() || force)) return;
  // With a zero visibility timeout, a receive still in flight may hand out this batch's messages
  // again with new receipt handles: seal only once it has answered (see StartReceives).
  if (ZeroVisibility() && receives_in_flight_ > 0) return;
  ready_.push_back(Batch{std::move(building_), {}, Clock::now()});
  building_.clear();
  building_bytes_ = 0;
}

void Pipeline::DispatchBatches() {
  auto now = Clock::now();
  std::lock_guard lock(mu_);
  // A batch waiting out its retry backoff does not hold back the ones behind it.
  for (auto it = ready_.begin(); it != ready_.end() && loads_in_flight_ < static_cast<int>(sinks_.size());) {
    if (it->not_before > now) {
      ++it;
      continue;
    }
    messages_loading_ += it->messages.size();
    to_load_.push_back(std::move(*it));
    it = ready_.erase(it);
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

void Pipeline::Release(const std::string& message_id) {
  auto it = in_hand_.find(message_id);
  if (it == in_hand_.end()) return;
  bytes_in_hand_ -= it->second.bytes;
  in_hand_.erase(it);
}

void Pipeline::HandleLoaded() {
  std::vector<Loaded> done;
  {
    std::lock_guard lock(mu_);
    done.swap(loaded_);
  }
  auto now = Clock::now();
  for (Loaded& l : done) {
    --loads_in_flight_;
    Batch& batch = l.batch;
    messages_loading_ -= batch.messages.size();
    if (l.result.ok()) {
      stats_.loaded += l.result->rows_loaded;
      stats_.rejected += l.result->rejects_stored;
      stats_.duplicates += l.result->duplicates;
      std::unordered_set<std::string> left(l.result->left_for_redelivery.begin(),
                                           l.result->left_for_redelivery.end());
      PendingDelete pending;
      for (const ProcessedMessage& m : batch.messages) {
        if (left.count(m.message_id)) {
          // Not committed: it must not be deleted, and the heartbeat must not keep it hidden.
          ++stats_.left_for_redelivery;
          if (options_.max_receives == 0 && !options_.follow) left_ids_.insert(m.message_id);
          Release(m.message_id);
          continue;
        }
        pending.message_ids.push_back(m.message_id);
        if (pending.message_ids.size() == kMaxPerCall) deletes_.push_back(std::exchange(pending, {}));
      }
      if (!pending.message_ids.empty()) deletes_.push_back(std::move(pending));
      if (batch.failures.failures > 0) {
        spdlog::info("load of {} messages succeeded after {} failures over {} ms", batch.messages.size(),
                     batch.failures.failures, Millis(now - batch.failures.since));
      }
      continue;
    }
    batch.failures.Fail(now);
    bool give_up = !l.result.status().IsTransient() ||
                   (!options_.follow && batch.failures.Exhausted(now, options_.db_retry_timeout));
    if (give_up) {
      if (fatal_.ok()) {
        fatal_ = l.result.status().Annotate(fmt::format(
            "load {} messages (not deleted: SQS will deliver them again)", batch.messages.size()));
      }
      // Left for SQS to deliver again; the heartbeat must not keep them hidden.
      stats_.left_for_redelivery += batch.messages.size();
      for (const ProcessedMessage& m : batch.messages) Release(m.message_id);
      continue;
    }
    auto delay = Backoff(batch.failures.failures);
    std::string budget = options_.follow ? "retrying until it succeeds"
                                         : fmt::format("giving up after {} s of failures",
                                                       Millis(options_.db_retry_timeout) / 1000);
    spdlog::warn("load of {} messages failed ({} in a row over {} ms; {}), retrying in {} ms: {}",
                 batch.messages.size(), batch.failures.failures, Millis(now - batch.failures.since), budget,
                 Millis(delay), l.result.status().message());
    batch.not_before = now + delay;
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
    source_.StartDelete(std::move(handles),
                        [this, pending = std::move(pending)](Result<BatchResult> r) mutable {
                          OnDeleted(std::move(pending), std::move(r));
                        });
  }
}

void Pipeline::OnDeleted(PendingDelete pending, Result<BatchResult> result) {
  --deletes_in_flight_;
  auto now = Clock::now();
  if (!result.ok()) {
    pending.failures.Fail(now);
    bool give_up = !result.status().IsTransient() ||
                   (!options_.follow && pending.failures.Exhausted(now, options_.sqs_retry_timeout));
    if (!give_up) {
      auto delay = Backoff(pending.failures.failures);
      spdlog::warn("deleting {} committed messages failed ({} in a row), retrying in {} ms: {}",
                   pending.message_ids.size(), pending.failures.failures, Millis(delay),
                   result.status().message());
      pending.not_before = now + delay;
      deletes_.push_back(std::move(pending));
      return;
    }
    // Committed but not deleted: SQS delivers them again and the ledger skips them, for ever if
    // nothing changes. Say so every time, and end a drain: this needs an operator.
    spdlog::error(
        "deleting {} committed messages failed for good; they will be delivered again and skipped as "
        "duplicates until this is fixed (does the role have sqs:DeleteMessage?): {}",
        pending.message_ids.size(), result.status().message());
    stats_.delete_failures += pending.message_ids.size();
    for (const std::string& id : pending.message_ids) Release(id);
    if (!options_.follow && fatal_.ok()) fatal_ = result.status().Annotate("delete committed messages");
    return;
  }
  std::vector<bool> settled(pending.message_ids.size(), true);
  PendingDelete again;
  again.failures = pending.failures;
  for (size_t i : result->retryable) {
    if (i >= settled.size()) continue;
    settled[i] = false;
    again.message_ids.push_back(pending.message_ids[i]);
  }
  for (size_t i : result->refused) {
    if (i >= settled.size() || !settled[i]) continue;
    // Usually a receipt handle that expired: the message was delivered again meanwhile, and
    // that delivery is skipped as a duplicate.
    ++stats_.delete_failures;
    Release(pending.message_ids[i]);
    settled[i] = false;
  }
  for (size_t i = 0; i < settled.size(); ++i) {
    if (!settled[i]) continue;
    ++stats_.deleted;
    Release(pending.message_ids[i]);
    unlock_receive_due_ = options_.fifo;
  }
  if (!again.message_ids.empty()) {
    again.failures.Fail(now);
    again.not_before = now + Backoff(again.failures.failures);
    deletes_.push_back(std::move(again));
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
        std::move(handles), *options_.visibility_timeout,
        [this, ids = std::move(ids)](Result<BatchResult> r) {
          auto now = Clock::now();
          auto next = now + std::chrono::milliseconds(*options_.visibility_timeout) / 2;
          std::vector<bool> extended(ids.size(), r.ok());
          if (r.ok()) {
            for (size_t i : r->retryable)
              if (i < extended.size()) extended[i] = false;
          }
          for (size_t i = 0; i < ids.size(); ++i) {
            auto it = in_hand_.find(ids[i]);
            if (it == in_hand_.end()) continue;
            InHand& m = it->second;
            m.extending = false;
            if (extended[i]) {
              m.extend_failures = 0;
              m.extend_at = next;
            } else {
              // Try again soon, but back off: a failing call must not be resent every tick.
              m.extend_at = now + Backoff(++m.extend_failures);
            }
          }
          if (r.ok()) {
            stats_.visibility_extended += ids.size() - r->retryable.size() - r->refused.size();
          } else {
            spdlog::warn("extending the visibility of {} messages failed: {}", ids.size(),
                         r.status().message());
          }
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

bool Pipeline::Finished() const {
  bool no_more_input = stopping_ || !fatal_.ok() || drained_;
  return no_more_input && receives_in_flight_ == 0 && !checking_depth_ && building_.empty() &&
         ready_.empty() && loads_in_flight_ == 0 && deletes_.empty() && deletes_in_flight_ == 0;
}

void Pipeline::Abandon() {
  stats_.shutdown_timed_out = true;
  for (auto& sink : sinks_) sink->Interrupt();
  // Give the loaders a moment to come back: a batch that commits now is still deleted.
  auto grace_until = Clock::now() + kInterruptGrace;
  while (loads_in_flight_ > 0 && Clock::now() < grace_until) {
    source_.Poll(kTick);
    HandleLoaded();
    StartDeletes();
  }
  {
    std::lock_guard lock(mu_);
    // Not started: nothing to wait for.
    loads_in_flight_ -= static_cast<int>(to_load_.size());
    for (Batch& b : to_load_) {
      messages_loading_ -= b.messages.size();
      ready_.push_back(std::move(b));
    }
    to_load_.clear();
  }
  // Everything not committed goes back to SQS. Make it visible again at once, so another
  // consumer need not wait out the visibility timeout the heartbeat kept extending.
  std::vector<std::string> handles;
  auto release = [&](const ProcessedMessage& m) {
    auto it = in_hand_.find(m.message_id);
    if (it == in_hand_.end()) return;
    handles.push_back(it->second.receipt_handle);
    ++stats_.left_for_redelivery;
    Release(m.message_id);
    if (handles.size() == kMaxPerCall) {
      source_.StartExtendVisibility(std::exchange(handles, {}), std::chrono::seconds(0),
                                    [](Result<BatchResult>) {});
    }
  };
  for (const ProcessedMessage& m : building_) release(m);
  for (const Batch& b : ready_)
    for (const ProcessedMessage& m : b.messages) release(m);
  if (!handles.empty())
    source_.StartExtendVisibility(std::move(handles), std::chrono::seconds(0), [](Result<BatchResult>) {});
  building_.clear();
  ready_.clear();
  // Committed, not yet deleted: they come back and the ledger skips them.
  for (const PendingDelete& d : deletes_) stats_.delete_failures += d.message_ids.size();
  deletes_.clear();
  // Still inside a loader that did not come back: not committed as far as we know.
  stats_.left_for_redelivery += messages_loading_;
  auto until = Clock::now() + std::chrono::seconds(1);
  while (Clock::now() < until) source_.Poll(kTick);
}

Status Pipeline::Run(const std::atomic<bool>& stop, const ProgressFn& progress) {
  for (auto& sink : sinks_) loaders_.emplace_back([this, s = sink.get()] { LoaderLoop(*s); });
  auto started = Clock::now();
  auto last_heartbeat = started;
  while (true) {
    auto now = Clock::now();
    if (stop.load() && !stopping_) {
      stopping_ = true;
      shutdown_deadline_ = now + options_.shutdown_timeout;
      source_.CancelReceives();  // no need to wait out a long poll
      if (!NothingInHand()) {
        spdlog::info("stopping: committing the {} messages in hand (at most {} ms)", in_hand_.size(),
                     Millis(options_.shutdown_timeout));
      }
    }
    if (stopping_ && now >= shutdown_deadline_ && !Finished()) {
      spdlog::warn("stopping: the shutdown timeout ({} ms) ran out with {} messages in hand",
                   Millis(options_.shutdown_timeout), in_hand_.size());
      Abandon();
      break;
    }
    StartReceives();
    bool input_over = stopping_ || !fatal_.ok() || drained_;
    SealBatch(input_over || flush_now_);
    if (building_.empty()) flush_now_ = false;
    // A failed batch is not retried once the run is failing anyway.
    if (!fatal_.ok()) {
      for (auto it = ready_.begin(); it != ready_.end();) {
        if (it->failures.failures == 0) {
          ++it;
          continue;
        }
        stats_.left_for_redelivery += it->messages.size();
        for (const ProcessedMessage& m : it->messages) Release(m.message_id);
        it = ready_.erase(it);
      }
    }
    DispatchBatches();
    StartDeletes();
    if (now - last_heartbeat >= std::chrono::milliseconds(250)) {
      Heartbeat();
      last_heartbeat = now;
    }
    stats_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (progress) progress(stats_);
    if (Finished()) break;
    source_.Poll(kTick);
    HandleLoaded();
  }
  stats_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return fatal_;
}

}  // namespace sqs2pg::pipeline
