#include "pipeline/pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>
#include <unordered_map>

namespace sqs2pg::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

// SQS hands out at most 10 messages a call.
constexpr int kMaxReceive = 10;

// Sleeps in short steps so a stop request is noticed.
void SleepUnlessStopped(std::chrono::milliseconds d, const std::atomic<bool>& stop) {
  auto until = Clock::now() + d;
  while (!stop.load() && Clock::now() < until) {
    std::this_thread::sleep_for(
        std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(100)));
  }
}

}  // namespace

Pipeline::Pipeline(MessageSource& source, transform::LoginTransform& transform, MessageSink& sink,
                   PipelineOptions options)
    : source_(source), transform_(transform), sink_(sink), options_(options) {}

template <typename Fn>
auto Pipeline::WithRetries(const char* what, const std::atomic<bool>& stop, Fn&& attempt)
    -> decltype(attempt()) {
  for (int i = 1;; ++i) {
    auto result = attempt();
    if (result.ok() || !result.status().IsTransient()) return result;
    if (i >= options_.retry.max_attempts && !options_.follow) return result;
    auto delay = BackoffDelay(options_.retry, std::min(i, options_.retry.max_attempts), rng_);
    spdlog::warn("{} failed (attempt {}), retrying in {} ms: {}", what, i, delay.count(),
                 result.status().message());
    SleepUnlessStopped(delay, stop);
    // When stopping, one last attempt is still made for a load so the batch in hand lands.
    if (stop.load() && i >= 2) return result;
  }
}

Status Pipeline::ReceiveInto(std::chrono::seconds wait, size_t& got) {
  auto received = WithRetries("receive", *stop_, [&] { return source_.Receive(kMaxReceive, wait); });
  if (!received.ok()) return received.status().Annotate("receive messages");
  got = received->size();
  if (got > 0 && pending_.empty()) oldest_pending_ = Clock::now();
  for (ReceivedMessage& m : *received) {
    ++stats_.received;
    // A message redelivered while its first delivery is still in hand: keep one copy, with the
    // newest receipt handle (the only one SQS will still accept for the delete).
    auto same = std::find_if(pending_.begin(), pending_.end(),
                             [&](const ReceivedMessage& p) { return p.message_id == m.message_id; });
    if (same != pending_.end()) {
      same->receipt_handle = std::move(m.receipt_handle);
      ++stats_.duplicates;
      continue;
    }
    ProcessedMessage out{m.message_id, m.received_at_ms, {}};
    auto outcome = transform_.Apply(m.body, m.sent_timestamp_ms);
    if (auto* rejection = std::get_if<Rejection>(&outcome)) {
      spdlog::info("message {} rejected: {}", m.message_id, rejection->reason);
      out.record = std::move(*rejection);
    } else {
      out.record = std::move(std::get<LoginRow>(outcome));
    }
    processed_.push_back(std::move(out));
    pending_.push_back(std::move(m));
  }
  return Status::Ok();
}

Status Pipeline::Flush() {
  if (pending_.empty()) return Status::Ok();
  auto loaded = WithRetries("load", *stop_, [&] { return sink_.Load(processed_); });
  if (!loaded.ok()) {
    return loaded.status().Annotate(
        fmt::format("load {} messages (not deleted: SQS will deliver them again)", pending_.size()));
  }
  stats_.loaded += loaded->rows_loaded;
  stats_.rejected += loaded->rejects_stored;
  stats_.duplicates += loaded->duplicates;

  auto undeleted = WithRetries("delete", *stop_, [&] { return source_.Delete(pending_); });
  if (!undeleted.ok()) {
    // Committed but not deleted: harmless (the ledger skips the redelivery), so keep going.
    spdlog::warn("deleting {} committed messages failed, SQS will redeliver them: {}", pending_.size(),
                 undeleted.status().message());
    stats_.delete_failures += pending_.size();
  } else {
    stats_.deleted += pending_.size() - *undeleted;
    stats_.delete_failures += *undeleted;
  }
  pending_.clear();
  processed_.clear();
  return Status::Ok();
}

Status Pipeline::Run(const std::atomic<bool>& stop, const ProgressFn& progress) {
  stop_ = &stop;
  auto started = Clock::now();
  auto finish = [&](Status st) {
    stats_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (progress) progress(stats_);
    return st;
  };
  while (true) {
    // With messages in hand, wait for more only until the oldest must be loaded.
    bool had_pending = !pending_.empty();
    auto wait = options_.poll_wait;
    if (had_pending) {
      auto left = options_.batch_max_wait - (Clock::now() - oldest_pending_);
      wait = std::clamp(std::chrono::ceil<std::chrono::seconds>(left), std::chrono::seconds(0), wait);
    }
    size_t got = 0;
    if (!stop.load()) {
      if (Status st = ReceiveInto(wait, got); !st.ok()) {
        // What is already in hand can still be committed and deleted.
        if (Status flushed = Flush(); !flushed.ok()) spdlog::error("{}", flushed.message());
        return finish(st);
      }
    }
    bool due = had_pending && Clock::now() - oldest_pending_ >= options_.batch_max_wait;
    if (pending_.size() >= options_.batch_size || got == 0 || due || stop.load()) {
      if (Status st = Flush(); !st.ok()) return finish(st);
    }
    stats_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (progress) progress(stats_);
    // Drained: a full-length poll, made with nothing in hand, found nothing.
    if (stop.load() || (got == 0 && !had_pending && !options_.follow)) return finish(Status::Ok());
  }
}

}  // namespace sqs2pg::pipeline
