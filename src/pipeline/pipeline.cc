#include "pipeline/pipeline.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_set>

#include "common/log.h"

namespace sqs2pg::pipeline {
namespace {

// SQS hands out, deletes and extends at most 10 messages a call.
constexpr int kMaxPerCall = 10;
// How often the loop looks at its timers (batch age, backoffs, heartbeat) when nothing happens.
constexpr std::chrono::milliseconds kTick{50};
// DeleteMessageBatch calls in flight at once. A committed batch of 500 would otherwise open 50
// connections in one burst; 16 keep up with any receive rate and reuse their connections.
constexpr int kMaxDeletesInFlight = 16;
// After the shutdown timeout, how long the loaders get to notice the interrupt, and how long the
// visibility releases of what was not committed get to answer: together well under the 2 s a
// stop may take past --shutdown-timeout.
constexpr std::chrono::milliseconds kInterruptGrace{1000};
constexpr std::chrono::milliseconds kReleaseGrace{500};

std::int64_t Millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

Pipeline::Pipeline(AsyncMessageSource& source, MessageTransform& transform,
                   std::vector<std::unique_ptr<MessageSink>> sinks, PipelineOptions options)
    : source_(source), transform_(transform), sinks_(std::move(sinks)), options_(options) {
  if (options_.max_in_flight == 0) {
    options_.max_in_flight = static_cast<size_t>(options_.receivers) * kMaxPerCall +
                             2 * options_.batch_size * std::max<size_t>(sinks_.size(), 1);
  }
  // A bound below one receive's worth would stop the pipeline for good.
  options_.max_in_flight = std::max<size_t>(options_.max_in_flight, kMaxPerCall);
  // Its buckets made once: grown by rehashing, every message in hand was hashed again each time.
  in_hand_.reserve(options_.max_in_flight);
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
  if (stopping_ || !fatal_.ok() || drained_) return;
  if (!options_.follow && !options_.fifo && idle_ && empty_seen_ && NothingInHand() &&
      receives_in_flight_ == 0 && !checking_depth_) {
    // The evidence answers a confirmation round already (see empty_seen_): check SQS's counts,
    // without waiting out the pause that follows an empty short poll (that pause is for receives).
    empty_seen_ = false;
    confirm_needed_ = 0;
    CheckDepthBeforeDraining();
    return;
  }
  if (Clock::now() < receive_not_before_) return;
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
      RoomToReceive(0)) {
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
  while (receives_in_flight_ < receivers && RoomToReceive(receives_in_flight_)) {
    StartOneReceive(0);
  }
}

void Pipeline::StartOneReceive(int round, bool unlock) {
  ++receives_in_flight_;
  if (round > 0) ++confirming_in_flight_;
  source_.StartReceive(kMaxPerCall, unlock ? std::chrono::seconds(0) : options_.poll_wait,
                       [this, round, unlock, started = Clock::now()](Result<std::vector<ReceivedMessage>> r) {
                         OnReceived(round, unlock, started, std::move(r));
                       });
}

void Pipeline::OnReceived(int round, bool unlock, Clock::time_point started,
                          Result<std::vector<ReceivedMessage>> received) {
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
    if (options_.metrics) options_.metrics->CountSqsRetries(metrics::SqsOp::kReceiveMessage);
    log::Warn({{"attempt", receive_failures_.failures},
               {"delay_ms", Millis(delay)},
               {"operation", "ReceiveMessage"}},
              "receive failed ({} in a row over {} ms), retrying in {} ms: {}", receive_failures_.failures,
              Millis(now - receive_failures_.since), Millis(delay), received.status().message());
    receive_not_before_ = std::max(receive_not_before_, now + delay);
    return;
  }
  receive_failures_.Reset();
  // Drain with --max-receives 0: an answer holding only messages the sink already left for
  // redelivery (and will leave again: nothing ends their cycle) says nothing new about the
  // queue. It counts as empty, or a visibility timeout shorter than the long poll would bring
  // them back into every confirmation round, and the drain would never end. They are not taken
  // into hand: SQS hands them out again after their visibility timeout.
  bool only_left = !options_.follow && options_.max_receives == 0 && !left_ids_.empty() &&
                   !received->empty() &&
                   std::all_of(received->begin(), received->end(), [this](const ReceivedMessage& m) {
                     return left_ids_.count(m.message_id) && !in_hand_.count(m.message_id);
                   });
  if (only_left) {
    stats_.received += received->size();
    stats_.left_for_redelivery += received->size();
  }
  if (received->empty() || only_left) {
    idle_ = true;
    if (started >= last_message_at_) empty_seen_ = true;
    // Messages in hand may be what keeps the queue empty (a FIFO group waits for them to be
    // deleted), and nothing else is coming to fill their batch: load them now.
    flush_now_ = true;
    // Without a long poll an empty queue answers at once: a follower pauses instead of spinning.
    // A drain does not: after an empty answer it sends receives only as a confirmation round,
    // once nothing is in hand, and a round that ends in doubt waits in the cross-check (1 s). The
    // pause cost every drain with --wait-seconds 0 200 ms at its end, when the last receives come
    // back empty while the last messages are loaded.
    if (options_.poll_wait.count() == 0 && options_.follow) {
      receive_not_before_ = now + std::chrono::milliseconds(200);
    }
    if (confirming && --confirm_needed_ == 0) CheckDepthBeforeDraining();
    return;
  }
  idle_ = false;
  last_message_at_ = now;
  empty_seen_ = false;
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
    if (it->second.handle_dead) --dead_handles_in_hand_;
    it->second.handle_dead = false;
    it->second.extend_at = now + half_visibility;
    if (!fresh) {
      // The newest receipt handle is the only one SQS still honours for a delete.
      it->second.receipt_handle = std::move(m.receipt_handle);
      ++stats_.duplicates;  // delivered again while still in hand
      continue;
    }
    it->second.bytes = m.body.size();
    it->second.received = now;
    bytes_in_hand_ += m.body.size();
    if (building_.empty()) building_since_ = now;
    Record record = transform_.Apply(m);
    // What the transform has read is moved, not copied: these strings were allocated per message.
    it->second.receipt_handle = std::move(m.receipt_handle);
    ProcessedMessage out{
        std::move(m.message_id), m.received_at_ms,    std::move(record), std::max(m.receive_count, 1),
        m.body.size(),           m.sent_timestamp_ms, std::move(m.fifo)};
    if (auto* rejection = std::get_if<Rejection>(&out.record)) {
      log::Info({{"message_id", out.message_id}, {"event", "reject"}}, "message {} rejected: {}",
                out.message_id, rejection->reason);
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
      // The cross-check crosses the same network as the receives: one that failed says nothing
      // about messages a lost receive hid. Ask again after a pause (the next confirmation round
      // asks), within the SQS retry budget; only a refusal or an exhausted budget leaves it to
      // the receives.
      bool again = depth.status().IsTransient() && !stopping_ &&
                   !depth_failures_.Exhausted(now, options_.sqs_retry_timeout);
      if (again) {
        depth_failures_.Fail(now);
        auto delay = Backoff(depth_failures_.failures);
        if (options_.metrics) options_.metrics->CountSqsRetries(metrics::SqsOp::kGetQueueAttributes);
        log::Warn({{"attempt", depth_failures_.failures},
                   {"delay_ms", Millis(delay)},
                   {"operation", "GetQueueAttributes"}},
                  "checking the queue's counts before ending the drain failed, asking again in {} ms: {}",
                  Millis(delay), depth.status().message());
        receive_not_before_ = std::max(receive_not_before_, now + delay);
        return;
      }
      spdlog::warn("ending the drain on the receives' word alone: SQS's counts cannot be had: {}",
                   depth.status().message());
      drained_ = true;
      return;
    }
    depth_failures_.Reset();
    PublishQueueDepth(*depth);
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
         Clock::now() - building_since_ >= options_.batch_max_wait || BatchCannotGrow();
}

// Receiving has stopped at the in-flight bound (messages or bytes) and nothing is on its way to
// lift it: no receive out, no delete pending that would make room. The batch being built can then
// grow only after a load, so when a loader is free with nothing else to load, waiting for
// --batch-max-wait would only idle: with --max-in-flight 300 and the default batch of 500, each
// batch of 300 sat out its whole second (288 msg/s). While loaders are busy or deletes are about
// to make room, the batch keeps growing as before, so a slow database still gets full batches.
bool Pipeline::BatchCannotGrow() const {
  return receives_in_flight_ == 0 && !RoomToReceive(0) && deletes_.empty() && deletes_in_flight_ == 0 &&
         ready_.empty() && loads_in_flight_ < static_cast<int>(sinks_.size());
}

bool Pipeline::RoomToReceive(int receives_out) const {
  return in_hand_.size() + static_cast<size_t>(kMaxPerCall) * static_cast<size_t>(receives_out + 1) <=
             options_.max_in_flight &&
         bytes_in_hand_ < options_.max_in_flight_bytes;
}

void Pipeline::SealBatch(bool force) {
  if (building_.empty()) return;
  if (!(BatchDue() || force)) return;
  // With a zero visibility timeout, a receive still in flight may hand out this batch's messages
  // again with new receipt handles: seal only once it has answered (see StartReceives).
  if (ZeroVisibility() && receives_in_flight_ > 0) return;
  ready_.push_back(Batch{std::move(building_), {}, Clock::now()});
  building_ = std::exchange(spare_building_, {});
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
  if (it->second.handle_dead) --dead_handles_in_hand_;
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
      if (!l.result->systemic_refusal.empty()) {
        OnSystemicRefusal(l.result->systemic_refusal, left.size(), now);
      } else if (l.result->rows_loaded > 0) {
        systemic_streak_ = 0;
      }
      PendingDelete pending;
      std::vector<std::string> dead;
      for (ProcessedMessage& m : batch.messages) {
        if (auto h = dead_handles_in_hand_ > 0 ? in_hand_.find(m.message_id) : in_hand_.end();
            h != in_hand_.end() && h->second.handle_dead && !left.count(m.message_id)) {
          // Committed, but SQS said its receipt handle is dead: a delete with it would not delete
          // it (and must not be counted as deleted). It comes back and the ledger skips it.
          dead.push_back(m.message_id);
          ++stats_.delete_failures;
          Release(m.message_id);
          continue;
        }
        if (left.count(m.message_id)) {
          // Not committed: it must not be deleted, and the heartbeat must not keep it hidden.
          ++stats_.left_for_redelivery;
          if (options_.max_receives == 0 && !options_.follow) left_ids_.insert(m.message_id);
          Release(m.message_id);
          continue;
        }
        // Moved: the batch is emptied below, and CountCommitted reads no ids.
        pending.message_ids.push_back(std::move(m.message_id));
        if (pending.message_ids.size() == kMaxPerCall) deletes_.push_back(std::exchange(pending, {}));
      }
      if (!pending.message_ids.empty()) deletes_.push_back(std::move(pending));
      if (!dead.empty())
        WarnDeleteFailing(dead, "SQS refused to extend their visibility (dead receipt handle)");
      if (options_.metrics) CountCommitted(batch, *l.result);
      if (batch.failures.failures > 0) {
        log::Info({{"messages", batch.messages.size()}, {"attempt", batch.failures.failures + 1}},
                  "load of {} messages succeeded after {} failures over {} ms", batch.messages.size(),
                  batch.failures.failures, Millis(now - batch.failures.since));
      }
      if (batch.messages.capacity() > spare_building_.capacity()) {
        batch.messages.clear();
        spare_building_ = std::move(batch.messages);
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
    if (options_.metrics) options_.metrics->postgres_retries.Inc();
    std::string budget = options_.follow ? "retrying until it succeeds"
                                         : fmt::format("giving up after {} s of failures",
                                                       Millis(options_.db_retry_timeout) / 1000);
    log::Warn({{"messages", batch.messages.size()},
               {"attempt", batch.failures.failures},
               {"delay_ms", Millis(delay)},
               {"sqlstate", log::SqlState(l.result.status())}},
              "load of {} messages failed ({} in a row over {} ms; {}), retrying in {} ms: {}",
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
    // Handles line up with pending.message_ids: OnDeleted reads the answer's entries by index.
    // One lookup per message: each is a hash of the id and a walk to a cold node.
    std::vector<std::string> handles;
    handles.reserve(pending.message_ids.size());
    size_t kept = 0;
    for (size_t i = 0; i < pending.message_ids.size(); ++i) {
      auto h = in_hand_.find(pending.message_ids[i]);
      if (h == in_hand_.end()) continue;
      handles.push_back(h->second.receipt_handle);
      if (kept != i) pending.message_ids[kept] = std::move(pending.message_ids[i]);
      ++kept;
    }
    pending.message_ids.resize(kept);
    if (pending.message_ids.empty()) continue;
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
      if (options_.metrics) options_.metrics->CountSqsRetries(metrics::SqsOp::kDeleteMessageBatch);
      log::Warn({{"messages", pending.message_ids.size()},
                 {"attempt", pending.failures.failures},
                 {"delay_ms", Millis(delay)},
                 {"operation", "DeleteMessageBatch"}},
                "deleting {} committed messages failed ({} in a row), retrying in {} ms: {}",
                pending.message_ids.size(), pending.failures.failures, Millis(delay),
                result.status().message());
      pending.not_before = now + delay;
      if (pending.failures.failures >= kDeleteWarnAfter && !pending.warned) {
        pending.warned = true;
        WarnDeleteFailing(pending.message_ids, result.status().message());
      }
      deletes_.push_back(std::move(pending));
      return;
    }
    // Committed but not deleted: SQS delivers them again and the ledger skips them, for ever if
    // nothing changes. Say so every time, and end a drain: this needs an operator.
    log::Error({{"messages", pending.message_ids.size()}, {"operation", "DeleteMessageBatch"}},
               "deleting {} committed messages failed for good; they will be delivered again and skipped as "
               "duplicates until this is fixed (does the role have sqs:DeleteMessage?): {}",
               pending.message_ids.size(), result.status().message());
    stats_.delete_failures += pending.message_ids.size();
    if (!pending.warned) WarnDeleteFailing(pending.message_ids, result.status().message());
    for (const std::string& id : pending.message_ids) Release(id);
    if (!options_.follow && fatal_.ok()) fatal_ = result.status().Annotate("delete committed messages");
    return;
  }
  std::vector<bool> settled(pending.message_ids.size(), true);
  PendingDelete again;
  again.failures = pending.failures;
  again.warned = pending.warned;
  std::vector<std::string> refused;
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
    refused.push_back(pending.message_ids[i]);
    Release(pending.message_ids[i]);
    settled[i] = false;
  }
  if (!refused.empty()) WarnDeleteFailing(refused, "SQS refused the delete (receipt handle no longer valid)");
  for (size_t i = 0; i < settled.size(); ++i) {
    if (!settled[i]) continue;
    ++stats_.deleted;
    Release(pending.message_ids[i]);
    unlock_receive_due_ = options_.fifo;
  }
  if (!again.message_ids.empty()) {
    if (options_.metrics)
      options_.metrics->CountSqsRetries(metrics::SqsOp::kDeleteMessageBatch, again.message_ids.size());
    again.failures.Fail(now);
    again.not_before = now + Backoff(again.failures.failures);
    if (again.failures.failures >= kDeleteWarnAfter && !again.warned) {
      again.warned = true;
      WarnDeleteFailing(again.message_ids, "SQS failed the delete entries on its side");
    }
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
          std::vector<bool> refused(ids.size(), false);
          if (r.ok()) {
            for (size_t i : r->retryable)
              if (i < extended.size()) extended[i] = false;
            for (size_t i : r->refused) {
              if (i >= extended.size()) continue;
              extended[i] = false;
              refused[i] = true;
            }
          }
          for (size_t i = 0; i < ids.size(); ++i) {
            auto it = in_hand_.find(ids[i]);
            if (it == in_hand_.end()) continue;
            InHand& m = it->second;
            m.extending = false;
            if (refused[i]) {
              // Not a success: the handle is dead (MessageNotInflight, ReceiptHandleIsInvalid, the
              // 12-hour cap). Dropped from the heartbeat and from deletes; once per message.
              if (!m.handle_dead) {
                m.handle_dead = true;
                ++dead_handles_in_hand_;
                ++stats_.visibility_refused;
                log::Warn(
                    {{"message_id", ids[i]}, {"operation", "ChangeMessageVisibilityBatch"}},
                    "SQS refused to extend the visibility of message {}: its receipt handle is dead; it is "
                    "no longer held (SQS may deliver it again; the ledger skips it if it was committed)",
                    ids[i]);
              }
              continue;
            }
            if (extended[i]) {
              m.extend_failures = 0;
              m.extend_at = next;
            } else {
              // Try again soon, but back off: a failing call must not be resent every tick.
              m.extend_at = now + Backoff(++m.extend_failures);
              if (options_.metrics)
                options_.metrics->CountSqsRetries(metrics::SqsOp::kChangeMessageVisibilityBatch);
            }
          }
          if (r.ok()) {
            stats_.visibility_extended += ids.size() - r->retryable.size() - r->refused.size();
          } else {
            log::Warn({{"messages", ids.size()}, {"operation", "ChangeMessageVisibilityBatch"}},
                      "extending the visibility of {} messages failed: {}", ids.size(), r.status().message());
          }
        });
    ids.clear();
  };
  for (auto& [id, m] : in_hand_) {
    if (m.extending || m.handle_dead || m.extend_at > now) continue;
    m.extending = true;
    ids.push_back(id);
    if (ids.size() == kMaxPerCall) flush();
  }
  flush();
}

bool Pipeline::Finished() const {
  bool no_more_input = stopping_ || !fatal_.ok() || drained_;
  return no_more_input && receives_in_flight_ == 0 && !checking_depth_ && !depth_in_flight_ &&
         building_.empty() && ready_.empty() && loads_in_flight_ == 0 && deletes_.empty() &&
         deletes_in_flight_ == 0;
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
      ++releases_in_flight_;
      source_.StartExtendVisibility(std::exchange(handles, {}), std::chrono::seconds(0),
                                    [this](Result<BatchResult>) { --releases_in_flight_; });
    }
  };
  for (const ProcessedMessage& m : building_) release(m);
  for (const Batch& b : ready_)
    for (const ProcessedMessage& m : b.messages) release(m);
  if (!handles.empty()) {
    ++releases_in_flight_;
    source_.StartExtendVisibility(std::move(handles), std::chrono::seconds(0),
                                  [this](Result<BatchResult>) { --releases_in_flight_; });
  }
  building_.clear();
  ready_.clear();
  // Committed, not yet deleted: they come back and the ledger skips them.
  for (const PendingDelete& d : deletes_) stats_.delete_failures += d.message_ids.size();
  deletes_.clear();
  // Still inside a loader that did not come back: not committed as far as we know.
  stats_.left_for_redelivery += messages_loading_;
  auto until = Clock::now() + kReleaseGrace;
  while (releases_in_flight_ > 0 && Clock::now() < until) source_.Poll(kTick);
}

void Pipeline::WarnDeleteFailing(const std::vector<std::string>& message_ids, const std::string& why) {
  stats_.deletes_failing += message_ids.size();
  // One line per call (at most 10 ids): the ids are what an operator needs to find them in a
  // dead-letter queue, where SQS puts them once their receive count passes maxReceiveCount.
  std::string ids;
  for (const std::string& id : message_ids) ids += (ids.empty() ? "" : ",") + id;
  log::Warn(
      {{"messages", message_ids.size()}, {"message_ids", ids}, {"operation", "DeleteMessageBatch"}},
      "{} committed messages are not deleted from the queue ({}): SQS delivers them again and the ledger "
      "skips them; if the queue's redrive policy moves them to a dead-letter queue first, they are "
      "there already loaded (docs/operations.md, \"Dead letters\"): {}",
      message_ids.size(), why, ids);
}

void Pipeline::OnSystemicRefusal(const std::string& why, size_t left, Clock::time_point now) {
  stats_.systemic_refusals += left;
  if (!options_.follow) {
    // A drain cannot wait for an operator: it ends with the error (exit 1); the messages stay.
    if (fatal_.ok()) fatal_ = Status::Permanent(why);
    return;
  }
  ++systemic_streak_;
  auto delay = Backoff(systemic_streak_);
  receive_not_before_ = std::max(receive_not_before_, now + delay);
  log::Error({{"messages", left}, {"attempt", systemic_streak_}, {"delay_ms", Millis(delay)}},
             "{}; receiving again in {} ms", why, Millis(delay));
}

void Pipeline::PublishMetrics(Clock::time_point now) {
  metrics::Metrics* m = options_.metrics;
  if (m == nullptr) return;
  auto add = [](metrics::Counter& counter, std::uint64_t total, std::uint64_t& published) {
    if (total > published) counter.Inc(total - published);
    published = total;
  };
  add(m->received, stats_.received, published_.received);
  add(m->loaded, stats_.loaded, published_.loaded);
  add(m->duplicates, stats_.duplicates, published_.duplicates);
  add(m->deleted, stats_.deleted, published_.deleted);
  add(m->delete_failures, stats_.delete_failures, published_.delete_failures);
  add(m->left_for_redelivery, stats_.left_for_redelivery, published_.left_for_redelivery);
  add(m->visibility_extended, stats_.visibility_extended, published_.visibility_extended);
  add(m->visibility_refused, stats_.visibility_refused, published_.visibility_refused);
  add(m->deletes_failing, stats_.deletes_failing, published_.deletes_failing);
  add(m->systemic_refusals, stats_.systemic_refusals, published_.systemic_refusals);
  m->in_hand_messages.Set(static_cast<double>(in_hand_.size()));
  m->in_hand_bytes.Set(static_cast<double>(bytes_in_hand_));
  m->caught_up.store(idle_ && NothingInHand(), std::memory_order_relaxed);
  // A walk over what is in hand (a few thousand entries at most) once a second, not per turn.
  if (now - oldest_checked_ >= std::chrono::seconds(1)) {
    oldest_checked_ = now;
    Clock::time_point oldest = now;
    for (const auto& [id, m_in_hand] : in_hand_) oldest = std::min(oldest, m_in_hand.received);
    m->oldest_in_hand_age_seconds.Set(std::chrono::duration<double>(now - oldest).count());
  }
  m->health.LoopTurned();
}

void Pipeline::CountCommitted(const Batch& batch, const LoadSummary& summary) {
  metrics::Metrics& m = *options_.metrics;
  m.batch_messages.Observe(static_cast<double>(batch.messages.size()));
  std::int64_t newest = m.newest_loaded_sent_ms.load(std::memory_order_relaxed);
  for (const ProcessedMessage& msg : batch.messages) newest = std::max(newest, msg.sent_timestamp_ms);
  m.newest_loaded_sent_ms.store(newest, std::memory_order_relaxed);
  // Rejects by reason class. The sink says how many it stored, not which: when some were
  // duplicates (rare: a redelivery of a committed reject) the first ones of the batch are counted.
  if (summary.refused_by_database > 0) m.CountRejects("database refused", summary.refused_by_database);
  size_t budget = summary.rejects_stored - std::min(summary.rejects_stored, summary.refused_by_database);
  for (const ProcessedMessage& msg : batch.messages) {
    if (budget == 0) break;
    if (const auto* rejection = std::get_if<Rejection>(&msg.record)) {
      m.CountRejects(rejection->reason);
      --budget;
    }
  }
}

void Pipeline::PublishQueueDepth(const QueueDepth& depth) {
  if (options_.metrics == nullptr) return;
  options_.metrics->queue_visible.Set(static_cast<double>(depth.visible));
  options_.metrics->queue_not_visible.Set(static_cast<double>(depth.not_visible));
  options_.metrics->queue_delayed.Set(static_cast<double>(depth.delayed));
}

Status Pipeline::Run(const std::atomic<bool>& stop, const ProgressFn& progress) {
  for (auto& sink : sinks_) loaders_.emplace_back([this, s = sink.get()] { LoaderLoop(*s); });
  auto started = Clock::now();
  auto last_heartbeat = started;
  while (true) {
    auto now = Clock::now();
    if (stop.load() && !stopping_) {
      stopping_ = true;
      if (options_.metrics) options_.metrics->health.stopping = true;
      shutdown_deadline_ = now + options_.shutdown_timeout;
      source_.CancelReceives();  // no need to wait out a long poll
      if (!NothingInHand()) {
        log::Info({{"event", "stopping"},
                   {"messages", in_hand_.size()},
                   {"timeout_ms", Millis(options_.shutdown_timeout)}},
                  "stopping: committing the {} messages in hand (at most {} ms)", in_hand_.size(),
                  Millis(options_.shutdown_timeout));
      }
    }
    if (stopping_ && now >= shutdown_deadline_ && !Finished()) {
      log::Warn({{"event", "stopping"},
                 {"messages", in_hand_.size()},
                 {"timeout_ms", Millis(options_.shutdown_timeout)}},
                "stopping: the shutdown timeout ({} ms) ran out with {} messages in hand",
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
    if (options_.metrics) {
      PublishMetrics(now);
      // The queue's depth now and then, for the "no progress while the queue has messages" alert.
      if (now >= depth_due_ && !depth_in_flight_ && !stopping_ && fatal_.ok() && !drained_) {
        depth_due_ = now + options_.queue_depth_every;
        depth_in_flight_ = true;
        source_.StartQueueDepth([this](Result<QueueDepth> depth) {
          depth_in_flight_ = false;
          if (depth.ok()) PublishQueueDepth(*depth);
        });
      }
    }
    if (progress) progress(stats_);
    if (Finished()) break;
    source_.Poll(kTick);
    HandleLoaded();
  }
  stats_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  PublishMetrics(Clock::now());
  return fatal_;
}

}  // namespace sqs2pg::pipeline
