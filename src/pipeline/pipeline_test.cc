#include "pipeline/pipeline.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <set>
#include <thread>

#include "transform/keyring.h"
#include "transform/login_transform.h"
#include "transform/masker.h"

namespace sqs2pg::pipeline {
namespace {

using ::testing::HasSubstr;

std::string Body(int i) {
  return fmt::format(R"({{"user_id":"u{}","ip":"10.0.0.{}","device_id":"d-{}","locale":"FR"}})", i, i % 250,
                     i);
}

// An in-memory SQS queue. Calls complete inside Poll(), as on the real event loop. Every delivery
// gets a new receipt handle and only the newest one deletes, as in SQS.
class FakeSource : public AsyncMessageSource {
 public:
  explicit FakeSource(const std::set<std::string>* committed) : committed_(committed) {}

  void Add(int n, int first = 0) {
    std::lock_guard lock(mu_);
    for (int i = first; i < first + n; ++i)
      visible_.push_back({fmt::format("m{}", i), "", Body(i), 1'700'000'000'000, 0, 0});
  }

  void AddBody(std::string id, std::string body) {
    std::lock_guard lock(mu_);
    visible_.push_back({std::move(id), "", std::move(body), 1'700'000'000'000, 0, 0});
  }

  void StartReceive(int max_messages, std::chrono::seconds wait, ReceiveDone done) override {
    ++receive_calls;

    if (hang_when_empty && visible_.empty()) {  // a long poll on an empty queue: answers only when cancelled
      hanging_.push_back(std::move(done));
      return;
    }
    Later([this, max_messages, wait, done = std::move(done)]() mutable {
      if (fail_receives > 0) {
        --fail_receives;
        done(receive_error);
        return;
      }
      // The answer to a receive is lost: its messages stay hidden until their visibility timeout.
      ReturnLost();
      ReturnExpired();
      if (lose_receives > 0 && !visible_.empty()) {
        --lose_receives;
        for (int i = 0; i < max_messages && !visible_.empty(); ++i) {
          lost_.push_back({std::chrono::steady_clock::now() + lost_for, std::move(visible_.front())});
          visible_.pop_front();
        }
        done(Status::Transient("connection reset by peer (the receive took effect)"));
        return;
      }
      // A flaky network once the queue is empty: every other receive fails.
      if (flaky_when_empty && visible_.empty() && (++empty_receives_ % 2 == 0)) {
        done(Status::Transient("connection reset by peer"));
        return;
      }
      std::vector<ReceivedMessage> out, storm;
      for (auto it = visible_.begin(); it != visible_.end() && static_cast<int>(out.size()) < max_messages;) {
        // FIFO: a group's next message is not handed out while one of the group is in flight.
        if (fifo_groups > 0 && GroupInFlight(Group(it->message_id), out)) {
          ++it;
          continue;
        }
        ReceivedMessage m = std::move(*it);
        it = visible_.erase(it);
        m.receipt_handle = fmt::format("{}#{}", m.message_id, ++deliveries_);
        ++m.receive_count;
        hidden_[m.message_id] = m;
        if (visibility.count() > 0)
          hidden_until_[m.message_id] = std::chrono::steady_clock::now() + visibility;
        out.push_back(m);
        if (redeliver_each_once && m.receive_count == 1) storm.push_back(m);  // delivered again at once
      }
      visible_.insert(visible_.end(), storm.begin(), storm.end());
      max_hidden = std::max(max_hidden, hidden_.size());
      if (out.empty() && (long_polls || wake_long_polls) && wait.count() > 0) {
        // Like fauxqs: a long poll answers when it ends, even if a group unlocks meanwhile.
        std::lock_guard lock(mu_);
        polling_.push_back({std::chrono::steady_clock::now() + wait, std::move(done)});
        return;
      }
      done(std::move(out));
    });
  }

  void StartDelete(std::vector<std::string> handles, BatchDone done) override {
    EXPECT_LE(handles.size(), 10u);
    Later([this, handles = std::move(handles), done = std::move(done)] {
      ++delete_calls;
      if (!delete_error.ok()) {
        done(delete_error);
        return;
      }
      if (fail_deletes > 0) {
        --fail_deletes;
        done(Status::Transient("HTTP 503 Service Unavailable"));
        return;
      }
      BatchResult result;
      for (size_t i = 0; i < handles.size(); ++i) {
        const std::string& h = handles[i];
        // SQS failed this entry on its side (SenderFault=false): it stays, and is worth a retry.
        if (fail_delete_entry_once.erase(h.substr(0, h.find('#')))) {
          result.retryable.push_back(i);
          continue;
        }
        std::string id = h.substr(0, h.find('#'));
        {
          std::lock_guard lock(*committed_mu);
          EXPECT_TRUE(committed_->count(id)) << "deleted before its commit: " << id;
        }
        auto it = hidden_.find(id);
        if (it != hidden_.end() && it->second.receipt_handle == h) {
          hidden_.erase(it);
          hidden_until_.erase(id);
          deleted.push_back(id);
        } else {
          result.refused.push_back(i);
        }
      }
      done(std::move(result));
    });
  }

  void StartExtendVisibility(std::vector<std::string> handles, std::chrono::seconds,
                             BatchDone done) override {
    Later([this, handles = std::move(handles), done = std::move(done)] {
      BatchResult result;
      for (size_t i = 0; i < handles.size(); ++i) {
        std::string id = handles[i].substr(0, handles[i].find('#'));
        // SQS refuses for good (MessageNotInflight, ReceiptHandleIsInvalid): a dead handle.
        // Only the first delivery's handle is refused: a new delivery brings a live handle.
        if (refuse_extensions.count(id) &&
            refused_handle_.try_emplace(id, handles[i]).first->second == handles[i]) {
          result.refused.push_back(i);
          ++extensions_refused;
          continue;
        }
        auto it = hidden_until_.find(id);
        if (it != hidden_until_.end()) it->second = std::chrono::steady_clock::now() + visibility;
      }
      size_t n = handles.size();
      extended += n;
      extended_cv.notify_all();
      done(std::move(result));
    });
  }

  void StartQueueDepth(std::function<void(Result<QueueDepth>)> done) override {
    Later([this, done = std::move(done)] {
      ReturnLost();
      ++depth_checks;
      if (fail_depth_checks > 0) {
        --fail_depth_checks;
        done(Status::Transient("HTTP 503 Service Unavailable"));
        return;
      }
      done(QueueDepth{static_cast<std::int64_t>(visible_.size()),
                      static_cast<std::int64_t>(hidden_.size() + lost_.size()), 0});
    });
  }

  void CancelReceives() override {
    ++cancels;
    for (auto& done : std::exchange(hanging_, {}))
      Later([done = std::move(done)] { done(Status::Transient("cancelled")); });
  }

  void Poll(std::chrono::milliseconds max_wait) override {
    std::vector<std::function<void()>> now;
    {
      std::unique_lock lock(mu_);
      if (pending_.empty()) wake_.wait_for(lock, std::min(max_wait, std::chrono::milliseconds(5)));
      now.swap(pending_);
      auto t = std::chrono::steady_clock::now();
      if (wake_long_polls) ReturnExpired();
      for (auto it = polling_.begin(); it != polling_.end();) {
        if (wake_long_polls && !visible_.empty()) {
          // Like SQS: a long poll answers as soon as a message becomes visible.
          now.push_back([this, done = std::move(it->second)]() mutable {
            StartReceive(10, std::chrono::seconds(0), std::move(done));
          });
          it = polling_.erase(it);
          continue;
        }
        if (it->first > t) {
          ++it;
          continue;
        }
        ++long_polls_expired;
        now.push_back([done = std::move(it->second)] { done(std::vector<ReceivedMessage>{}); });
        it = polling_.erase(it);
      }
    }
    for (auto& f : now) f();
  }

  void Wakeup() override { wake_.notify_all(); }

  // Messages still in the queue: visible, or received and not deleted.
  size_t Remaining() const { return visible_.size() + hidden_.size() + lost_.size(); }

  std::atomic<int> receive_calls{0};
  int lose_receives = 0;  // receives whose answer is lost
  std::chrono::milliseconds lost_for{500};
  int fifo_groups = 0;  // > 0: message mN is in group N % fifo_groups, delivered in group order
  // > 0: a received message not deleted (nor extended) within this long is visible again.
  std::chrono::milliseconds visibility{0};
  bool flaky_when_empty = false;
  std::set<std::string> fail_delete_entry_once;
  Status delete_error;
  int delete_calls = 0;
  int fail_receives = 0;
  Status receive_error = Status::Transient("connection reset by peer");
  bool redeliver_each_once = false;
  bool hang_when_empty = false;
  // Receives with a wait answer only when it ends if nothing is deliverable when they start.
  bool long_polls = false;
  // Long polls answer as soon as a message is visible again (as SQS and fauxqs do).
  bool wake_long_polls = false;
  std::set<std::string> refuse_extensions;  // their visibility extensions are refused for good
  int extensions_refused = 0;
  int fail_depth_checks = 0;  // this many GetQueueAttributes calls fail (transient) before one works
  int depth_checks = 0;
  int fail_deletes = 0;  // this many DeleteMessageBatch calls fail (transient) before one works
  int long_polls_expired = 0;
  int cancels = 0;
  size_t max_hidden = 0;
  std::atomic<size_t> extended{0};
  std::condition_variable_any extended_cv;
  std::vector<std::string> deleted;
  std::mutex* committed_mu = nullptr;

 private:
  void Later(std::function<void()> f) {
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(f));
  }
  void ReturnLost() {
    auto now = std::chrono::steady_clock::now();
    while (!lost_.empty() && lost_.front().first <= now) {
      visible_.push_back(std::move(lost_.front().second));
      lost_.pop_front();
    }
  }
  void ReturnExpired() {
    auto now = std::chrono::steady_clock::now();
    for (auto it = hidden_until_.begin(); it != hidden_until_.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      visible_.push_back(std::move(hidden_[it->first]));
      hidden_.erase(it->first);
      it = hidden_until_.erase(it);
    }
  }
  int Group(const std::string& id) const { return std::stoi(id.substr(1)) % fifo_groups; }
  bool GroupInFlight(int group, const std::vector<ReceivedMessage>& taking) const {
    for (const auto& [id, m] : hidden_)
      if (Group(id) == group) return true;
    for (const auto& m : taking)
      if (Group(m.message_id) == group) return true;
    return false;
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<std::function<void()>> pending_;
  std::vector<ReceiveDone> hanging_;
  std::vector<std::pair<std::chrono::steady_clock::time_point, ReceiveDone>> polling_;
  std::deque<ReceivedMessage> visible_;
  std::map<std::string, ReceivedMessage> hidden_;
  std::map<std::string, std::chrono::steady_clock::time_point> hidden_until_;
  int deliveries_ = 0;
  int empty_receives_ = 0;
  std::deque<std::pair<std::chrono::steady_clock::time_point, ReceivedMessage>> lost_;
  const std::set<std::string>* committed_;
  std::map<std::string, std::string> refused_handle_;  // id -> the handle refused for it
};

// What the Postgres sinks do together, through their shared ledger: each id at most once.
struct Ledger {
  std::mutex mu;
  std::set<std::string> committed;
  std::vector<std::string> rows;
  int loads = 0;
  int transient_failures = 0;
  bool permanent_failure = false;
  std::set<std::string> poison;  // never loaded: reported as left for redelivery
  // The database refuses every row systemically (say, no partition for their date): all left.
  bool systemic = false;
  std::atomic<bool> interrupted{false};
  std::function<void()> before_load;  // runs on the loader thread, outside the lock
  std::function<void()> after_load;
};

class FakeSink : public MessageSink {
 public:
  explicit FakeSink(Ledger& ledger) : ledger_(ledger) {}
  Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) override {
    if (ledger_.before_load) ledger_.before_load();
    LoadSummary s;
    {
      std::lock_guard lock(ledger_.mu);
      ++ledger_.loads;
      if (ledger_.transient_failures > 0) {
        --ledger_.transient_failures;
        return Status::Transient("server closed the connection unexpectedly");
      }
      if (ledger_.permanent_failure) return Status::Permanent("permission denied for table user_logins");
      if (ledger_.systemic) {
        for (const auto& m : batch) s.left_for_redelivery.push_back(m.message_id);
        s.systemic_refusal = "the database refuses messages of different shapes with SQLSTATE 23514";
        return s;
      }
      for (const auto& m : batch) {
        if (ledger_.poison.count(m.message_id)) {
          s.left_for_redelivery.push_back(m.message_id);
          continue;
        }
        if (!ledger_.committed.insert(m.message_id).second) {
          ++s.duplicates;
        } else if (IsRow(m.record)) {
          ++s.rows_loaded;
          ledger_.rows.push_back(m.message_id);
        } else {
          ++s.rejects_stored;
        }
      }
    }
    if (ledger_.after_load) ledger_.after_load();
    return s;
  }
  void Interrupt() override { ledger_.interrupted = true; }

 private:
  Ledger& ledger_;
};

class PipelineTest : public ::testing::Test {
 protected:
  PipelineTest()
      : keyring_(std::move(transform::Keyring::Generate()).value()),
        masker_(std::move(transform::Masker::Create(keyring_)).value()),
        transform_(masker_, {}),
        source_(&ledger_.committed) {
    source_.committed_mu = &ledger_.mu;
    options_.poll_wait = std::chrono::seconds(1);
    options_.retry_first_delay = std::chrono::milliseconds(1);
    options_.retry_max_delay = std::chrono::milliseconds(2);
  }

  // Run(), stopped after `limit` if it has not ended by itself, which is then a test failure.
  Status RunOrStopAfter(std::chrono::seconds limit) {
    std::atomic<bool> done{false}, had_to_stop{false};
    std::thread guard([&] {
      auto until = std::chrono::steady_clock::now() + limit;
      while (!done && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!done) {
        had_to_stop = true;
        stop_ = true;
      }
    });
    Status st = Run();
    done = true;
    guard.join();
    EXPECT_FALSE(had_to_stop) << "the run did not end by itself within " << limit.count() << " s";
    return st;
  }

  Status Run(int sinks = 1) {
    std::vector<std::unique_ptr<MessageSink>> s;
    for (int i = 0; i < sinks; ++i) s.push_back(std::make_unique<FakeSink>(ledger_));
    Pipeline pipeline(source_, transform_, std::move(s), options_);
    Status st = pipeline.Run(stop_);
    stats_ = pipeline.stats();
    return st;
  }

  transform::Keyring keyring_;
  transform::Masker masker_;
  transform::LoginTransform transform_;
  Ledger ledger_;
  FakeSource source_;
  PipelineOptions options_;
  RunStats stats_;
  std::atomic<bool> stop_{false};
};

TEST_F(PipelineTest, MetricsCountWhatTheRunStatsCount) {
  source_.Add(300);
  source_.AddBody("bad-json", "{not json");
  source_.AddBody("no-ip", R"({"user_id":"u","device_id":"d"})");
  ledger_.transient_failures = 1;
  metrics::Registry registry;
  metrics::Metrics m(registry);
  options_.metrics = &m;
  options_.batch_size = 100;
  ASSERT_TRUE(Run(2).ok());
  EXPECT_EQ(m.received.Value(), stats_.received);
  EXPECT_EQ(m.received.Value(), 302u);
  EXPECT_EQ(m.loaded.Value(), 300u);
  EXPECT_EQ(m.deleted.Value(), 302u);
  EXPECT_EQ(m.rejected.With({"invalid_json"}).Value(), 1u);
  EXPECT_EQ(m.rejected.With({"missing_field"}).Value(), 1u);
  EXPECT_EQ(m.postgres_retries.Value(), 1u);
  EXPECT_GE(m.batch_messages.Count(), 2u);
  EXPECT_EQ(m.batch_messages.Sum(), 302);
  EXPECT_EQ(m.newest_loaded_sent_ms.load(), 1'700'000'000'000);
  EXPECT_EQ(m.in_hand_messages.Value(), 0);
  EXPECT_GT(m.health.loop_turned_ms.load(), 0);
  // The depth cross-check of the drain is published too.
  EXPECT_EQ(m.queue_visible.Value(), 0);
}

TEST_F(PipelineTest, DrainLoadsEveryMessageOnceWithManyReceiversAndSinks) {
  source_.Add(1000);
  options_.receivers = 16;
  options_.batch_size = 50;
  ASSERT_TRUE(Run(3).ok());
  EXPECT_EQ(ledger_.rows.size(), 1000u);
  EXPECT_EQ(std::set<std::string>(ledger_.rows.begin(), ledger_.rows.end()).size(), 1000u);
  EXPECT_EQ(stats_.received, 1000u);
  EXPECT_EQ(stats_.loaded, 1000u);
  EXPECT_EQ(stats_.deleted, 1000u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, ARedeliveryStormStillLoadsEachMessageOnce) {
  source_.Add(300);
  source_.redeliver_each_once = true;
  options_.receivers = 8;
  options_.batch_size = 20;
  ASSERT_TRUE(Run(2).ok());
  EXPECT_EQ(ledger_.rows.size(), 300u);
  EXPECT_EQ(stats_.received, 600u);
  EXPECT_EQ(stats_.duplicates, 300u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, RejectsAreCommittedAndDeletedToo) {
  source_.Add(5);
  options_.receivers = 2;
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(stats_.loaded, 5u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, MessagesInHandNeverExceedTheBound) {
  source_.Add(2000);
  options_.receivers = 16;
  options_.batch_size = 40;
  options_.max_in_flight = 100;
  // The database is slow: each load waits a little, so receiving outpaces loading and only the
  // bound stops the receivers.
  ledger_.before_load = [] { std::this_thread::sleep_for(std::chrono::milliseconds(2)); };
  ASSERT_TRUE(Run(2).ok());
  EXPECT_EQ(ledger_.rows.size(), 2000u);
  EXPECT_LE(stats_.max_in_flight_seen, 100u);
  EXPECT_LE(source_.max_hidden, 100u);
  EXPECT_GE(stats_.max_in_flight_seen, 80u) << "the receivers never filled up to the bound";
}

// A bound below the batch size stops receiving before a batch is full. Nothing more can join the
// batch until it is loaded and deleted, so it must go at once, not after --batch-max-wait: here an
// hour, which the run would otherwise sit out for every batch.
TEST_F(PipelineTest, ABatchGoesAtOnceWhenTheInFlightBoundStopsItGrowing) {
  source_.Add(1000);
  options_.receivers = 4;
  options_.batch_size = 500;
  options_.max_in_flight = 100;
  options_.batch_max_wait = std::chrono::hours(1);
  ASSERT_TRUE(RunOrStopAfter(std::chrono::seconds(60)).ok());
  EXPECT_EQ(ledger_.rows.size(), 1000u);
  EXPECT_LE(stats_.max_in_flight_seen, 100u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, ABatchGoesAtOnceWhenTheBytesBoundStopsItGrowing) {
  source_.Add(500);
  options_.receivers = 4;
  options_.batch_size = 500;
  options_.max_in_flight_bytes = 4000;  // a body is about 70 bytes: some 60 messages
  options_.batch_max_wait = std::chrono::hours(1);
  ASSERT_TRUE(RunOrStopAfter(std::chrono::seconds(60)).ok());
  EXPECT_EQ(ledger_.rows.size(), 500u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

// While a load is running or its deletes are about to make room, a batch held back by the bound
// still waits to fill: a slow database gets full batches, not a small one each time.
TEST_F(PipelineTest, WhileRoomIsComingABatchStillFillsUp) {
  source_.Add(1000);
  options_.receivers = 4;
  options_.batch_size = 200;
  options_.max_in_flight = 250;  // one batch loading, the next stopped at 50 by the bound
  ledger_.before_load = [] { std::this_thread::sleep_for(std::chrono::milliseconds(50)); };
  ASSERT_TRUE(Run(1).ok());
  EXPECT_EQ(ledger_.rows.size(), 1000u);
  EXPECT_LE(ledger_.loads, 6) << "1,000 messages in batches of 200 (the last may be split)";
}

TEST_F(PipelineTest, HeartbeatExtendsVisibilityWhileALoadIsSlow) {
  source_.Add(30);
  options_.visibility_timeout = std::chrono::seconds(1);  // extended after 0.5 s in hand
  // The load does not finish until the heartbeat has extended the messages' visibility.
  ledger_.before_load = [this] {
    std::mutex m;
    std::unique_lock lock(m);
    source_.extended_cv.wait_for(lock, std::chrono::seconds(60), [this] { return source_.extended >= 30; });
  };
  ASSERT_TRUE(Run().ok());
  EXPECT_GE(source_.extended.load(), 30u);
  EXPECT_GE(stats_.visibility_extended, 30u);
  EXPECT_EQ(ledger_.rows.size(), 30u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, FollowModeLoadsALoneMessageWithoutWaitingForAFullBatch) {
  options_.follow = true;
  options_.batch_size = 500;
  options_.batch_max_wait = std::chrono::milliseconds(0);
  source_.Add(1);
  // Stop only once the lone message is committed: if the pipeline waited for a full batch this
  // never happens and the test hangs (ctest's timeout catches it).
  ledger_.after_load = [this] { stop_ = true; };
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows, std::vector<std::string>{"m0"});
  EXPECT_EQ(source_.deleted, std::vector<std::string>{"m0"});
}

TEST_F(PipelineTest, NothingIsDeletedWhenTheLoadFailsForGood) {
  source_.Add(25);
  ledger_.permanent_failure = true;
  Status st = Run();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("permission denied"));
  EXPECT_TRUE(source_.deleted.empty());
  EXPECT_EQ(source_.Remaining(), 25u);  // they come back after their visibility timeout
}

TEST_F(PipelineTest, TransientLoadFailuresAreRetriedThenDeleted) {
  source_.Add(5);
  ledger_.transient_failures = 2;
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 5u);
  EXPECT_EQ(source_.deleted.size(), 5u);
}

TEST_F(PipelineTest, ADrainRunGivesUpOnceTheRetryTimeoutRunsOutWithoutDeleting) {
  source_.Add(1);
  ledger_.transient_failures = 1'000'000;
  options_.db_retry_timeout = std::chrono::milliseconds(300);
  options_.retry_max_delay = std::chrono::milliseconds(20);
  auto started = std::chrono::steady_clock::now();
  Status st = Run();
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(st.IsTransient());
  // Many attempts, not a fixed count: the budget is time.
  EXPECT_GT(ledger_.loads, 5);
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_TRUE(source_.deleted.empty());
  EXPECT_EQ(stats_.left_for_redelivery, 1u);
}

TEST_F(PipelineTest, TransientReceiveFailuresAreRetried) {
  source_.Add(3);
  source_.fail_receives = 2;
  options_.receivers = 1;
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(source_.deleted.size(), 3u);
}

TEST_F(PipelineTest, AMissingQueueEndsTheRun) {
  source_.fail_receives = 1;
  source_.receive_error = Status::NotFound("queue login-queue does not exist at http://127.0.0.1:1");
  options_.receivers = 1;
  Status st = Run();
  EXPECT_EQ(st.code(), Status::Code::kNotFound);
}

TEST_F(PipelineTest, StopRequestLoadsAndDeletesWhatIsInHand) {
  options_.follow = true;
  options_.batch_max_wait = std::chrono::hours(1);
  source_.Add(7);
  options_.receivers = 1;
  std::thread stopper([this] {
    while (source_.receive_calls < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stop_ = true;
  });
  Status st = Run();
  stopper.join();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(ledger_.rows.size(), stats_.received);
  EXPECT_EQ(source_.deleted.size(), stats_.received);
}

TEST_F(PipelineTest, AStopDoesNotWaitOutTheLongPollsInFlight) {
  options_.follow = true;
  options_.poll_wait = std::chrono::seconds(20);
  source_.hang_when_empty = true;
  source_.Add(3);
  // Once the messages are committed every receiver sits in a long poll that never answers by
  // itself: Run returns only if the stop cancels them (else ctest's timeout fails the test).
  ledger_.after_load = [this] { stop_ = true; };
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(source_.cancels, 1);
  EXPECT_EQ(ledger_.rows.size(), 3u);
  EXPECT_EQ(source_.deleted.size(), 3u);
}

TEST_F(PipelineTest, ADrainEndsWhenTheLastReceiveFailsAfterAnEmptyOne) {
  // Regression: a failed receive returned before the "queue looks empty" bookkeeping, so when the
  // last receive in flight failed after another came back empty, the drain never ended.
  source_.Add(50);
  source_.flaky_when_empty = true;
  options_.receivers = 8;
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 50u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, AFifoDrainReadsEveryGroupToTheEndInOneRun) {
  // A group's next messages stay hidden while one of it is in hand, so receives come back empty
  // long before the queue is. The drain must load what it holds at once (not after
  // batch_max_wait) and decide "empty" only once nothing is in hand.
  source_.fifo_groups = 6;
  source_.Add(600);
  options_.receivers = 4;
  options_.batch_max_wait = std::chrono::hours(1);
  ASSERT_TRUE(Run(2).ok());
  EXPECT_EQ(ledger_.rows.size(), 600u);
  EXPECT_EQ(stats_.deleted, 600u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, AFifoGroupAdvancesWithoutWaitingOutLongPolls) {
  // One group, one message a receive, and long polls that do not wake when the group unlocks:
  // each delete's short poll must fetch the next message, or every message costs a long poll.
  source_.fifo_groups = 1;
  source_.long_polls = true;
  source_.Add(30);
  options_.fifo = true;
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 30u);
  EXPECT_EQ(source_.Remaining(), 0u);
  // The drain's last round of receives waits its long polls out; nothing before it should.
  EXPECT_LE(source_.long_polls_expired, 2 * options_.receivers);
}

TEST_F(PipelineTest, ASingleHotFifoGroupIsDrainedToo) {
  source_.fifo_groups = 1;
  source_.Add(120);
  options_.batch_max_wait = std::chrono::hours(1);
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 120u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, DeleteEntriesThatFailedOnSqsSideAreRetried) {
  source_.Add(20);
  source_.fail_delete_entry_once = {"m3", "m7", "m15"};
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(stats_.deleted, 20u);
  EXPECT_EQ(stats_.delete_failures, 0u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

TEST_F(PipelineTest, APermanentDeleteFailureEndsADrain) {
  source_.Add(20);
  source_.delete_error = Status::Permanent("SQS DeleteMessageBatch: AccessDenied (HTTP 403)");
  Status st = Run();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("AccessDenied"));
  EXPECT_EQ(ledger_.rows.size(), 20u);  // committed: a redelivery is skipped
  EXPECT_EQ(stats_.delete_failures, 20u);
}

TEST_F(PipelineTest, APermanentDeleteFailureDoesNotEndAFollowingRun) {
  options_.follow = true;
  source_.Add(20);
  source_.delete_error = Status::Permanent("SQS DeleteMessageBatch: AccessDenied (HTTP 403)");
  ledger_.after_load = [this] {
    if (ledger_.rows.size() == 20) stop_ = true;
  };
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(stats_.delete_failures, 20u);
}

TEST_F(PipelineTest, AMessageTheSinkLeavesIsNotDeletedButItsBatchMatesAre) {
  source_.Add(30);
  ledger_.poison = {"m11"};
  options_.visibility_timeout = std::chrono::seconds(1);  // the drain waits that (plus 5 s) for it
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 29u);
  EXPECT_EQ(stats_.deleted, 29u);
  EXPECT_EQ(stats_.left_for_redelivery, 1u);
  EXPECT_EQ(source_.Remaining(), 1u);  // m11 comes back after its visibility timeout
}

TEST_F(PipelineTest, ADrainEndsThoughAMessageTheSinkAlwaysLeavesKeepsComingBack) {
  // --max-receives 0 and no redrive policy: nothing ever ends the poison message's cycle, so its
  // redeliveries are not progress, and the drain ends after one visibility timeout (plus 5 s).
  source_.Add(20);
  source_.visibility = std::chrono::milliseconds(1000);
  options_.visibility_timeout = std::chrono::seconds(1);
  options_.max_receives = 0;
  ledger_.poison = {"m7"};
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 19u);
  EXPECT_GE(stats_.left_for_redelivery, 2u);  // it did come back
  EXPECT_EQ(source_.Remaining(), 1u);
}

TEST_F(PipelineTest, AStopGivesUpOnADatabaseThatDoesNotAnswerAfterTheShutdownTimeout) {
  options_.follow = true;
  options_.shutdown_timeout = std::chrono::milliseconds(300);
  source_.Add(10);
  // The database is down: every load fails, for as long as the run lasts.
  ledger_.transient_failures = 1'000'000;
  ledger_.before_load = [this] { stop_ = true; };
  auto started = std::chrono::steady_clock::now();
  Status st = Run();
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_TRUE(stats_.shutdown_timed_out);
  EXPECT_EQ(stats_.left_for_redelivery, 10u);
  EXPECT_TRUE(source_.deleted.empty());
  EXPECT_TRUE(ledger_.interrupted);
}

TEST_F(PipelineTest, BytesInHandStayNearTheBound) {
  source_.Add(500);
  options_.receivers = 4;
  options_.batch_size = 20;
  options_.max_in_flight_bytes = 4000;  // a body is about 70 bytes
  ledger_.before_load = [] { std::this_thread::sleep_for(std::chrono::milliseconds(1)); };
  ASSERT_TRUE(Run(2).ok());
  EXPECT_EQ(ledger_.rows.size(), 500u);
  // At most the bound plus what the receives in flight bring (4 receives of 10 messages).
  EXPECT_LE(stats_.max_bytes_in_hand_seen, 4000u + 4 * 10 * 80);
}

TEST_F(PipelineTest, ADrainWaitsForMessagesALostReceiveHid) {
  // Receives come back empty while a lost receive's messages are hidden; SQS's counts show them,
  // so the drain waits for them to reappear instead of ending with them in the queue.
  source_.Add(50);
  source_.lose_receives = 1;
  source_.lost_for = std::chrono::milliseconds(700);
  options_.receivers = 1;
  options_.visibility_timeout = std::chrono::seconds(1);
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 50u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

// The cross-check itself goes through the same faulty network: a GetQueueAttributes that fails
// once says nothing about the hidden messages, so it is asked again (CI's faults_sqs-mix ended a
// drain with 50 messages in flight this way).
TEST_F(PipelineTest, ADrainAsksAgainWhenTheCrossCheckFails) {
  source_.Add(50);
  source_.lose_receives = 1;
  source_.lost_for = std::chrono::milliseconds(700);
  source_.fail_depth_checks = 2;
  options_.receivers = 1;
  options_.visibility_timeout = std::chrono::seconds(1);
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 50u);
  EXPECT_EQ(source_.Remaining(), 0u);
  EXPECT_GE(source_.depth_checks, 3);
}

// Issue 17, item 6: a message the database always refuses, --max-receives 0, no redrive policy,
// and a visibility timeout shorter than the long poll: it comes back inside every confirmation
// round. Its answers say nothing new, so they count as empty and the drain still ends.
TEST_F(PipelineTest, ADrainEndsThoughALeftMessageComesBackWithinEveryLongPoll) {
  source_.Add(20);
  source_.wake_long_polls = true;
  source_.visibility = std::chrono::milliseconds(300);
  options_.poll_wait = std::chrono::seconds(1);
  options_.visibility_timeout = std::chrono::seconds(1);
  options_.max_receives = 0;
  ledger_.poison = {"m7"};
  // A hang is the failure: the run is stopped after 60 s, and that fails the test.
  Status st = RunOrStopAfter(std::chrono::seconds(60));
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(ledger_.rows.size(), 19u);
  EXPECT_EQ(source_.Remaining(), 1u);
}

// Item 8: a visibility extension SQS refuses for good is not a success: the handle is dead, so
// the message leaves the heartbeat, its delete is not sent with that handle nor counted as done.
TEST_F(PipelineTest, ARefusedVisibilityExtensionDropsTheMessageFromHand) {
  source_.Add(10);
  source_.visibility = std::chrono::milliseconds(2000);
  source_.refuse_extensions = {"m3"};
  options_.visibility_timeout = std::chrono::seconds(1);  // heartbeat after 500 ms
  ledger_.before_load = [] { std::this_thread::sleep_for(std::chrono::milliseconds(900)); };
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(source_.extensions_refused, 1);  // asked once, not again and again
  EXPECT_EQ(stats_.visibility_refused, 1u);
  EXPECT_EQ(ledger_.rows.size(), 10u);  // committed once, whatever came back
  // m3 was committed but its dead handle deleted nothing; its next delivery was skipped by the
  // ledger and deleted with its new handle.
  EXPECT_GE(stats_.delete_failures, 1u);
  EXPECT_EQ(source_.Remaining(), 0u);
}

// Item 3: committed messages whose delete keeps failing are reported (a dead-letter queue would
// get them already loaded).
TEST_F(PipelineTest, CommittedMessagesWhoseDeleteKeepsFailingAreCountedAndReported) {
  source_.Add(10);
  source_.fail_deletes = 4;
  options_.batch_size = 10;
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 10u);
  EXPECT_EQ(stats_.deletes_failing, 10u);  // one batch of 10 failed 3 times: reported once
  EXPECT_EQ(stats_.deleted, 10u);          // and deleted in the end
  EXPECT_EQ(source_.Remaining(), 0u);
}

// Item 4: a systemic refusal rejects nothing and deletes nothing; a drain ends with the error.
TEST_F(PipelineTest, ASystemicRefusalEndsADrainWithTheErrorAndDeletesNothing) {
  source_.Add(30);
  ledger_.systemic = true;
  Status st = Run();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("SQLSTATE 23514"));
  EXPECT_EQ(stats_.rejected, 0u);
  EXPECT_TRUE(source_.deleted.empty());
  EXPECT_GE(stats_.systemic_refusals, 1u);
}

// ...and a follow run keeps going, backing its receives off, until the database takes rows again.
TEST_F(PipelineTest, AFollowRunRidesOutASystemicRefusal) {
  source_.Add(30);
  source_.visibility = std::chrono::milliseconds(200);
  options_.follow = true;
  options_.visibility_timeout = std::chrono::seconds(1);
  ledger_.systemic = true;
  ledger_.before_load = [this] {
    std::lock_guard lock(ledger_.mu);
    if (ledger_.loads >= 3) ledger_.systemic = false;  // the DBA added the partition
  };
  ledger_.after_load = [this] {
    std::lock_guard lock(ledger_.mu);
    if (ledger_.rows.size() == 30) stop_ = true;
  };
  // A hang is the failure: the run is stopped after 30 s, and that fails the test.
  Status st = RunOrStopAfter(std::chrono::seconds(30));
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(ledger_.rows.size(), 30u);
  EXPECT_EQ(stats_.rejected, 0u);
  EXPECT_GE(stats_.systemic_refusals, 1u);
}

// Issue 20: a standard queue's drain ends one long poll after its last message. An empty answer
// to a receive sent after the last message arrived is the evidence; no second round of long
// polls is sent once everything is deleted (that round cost a whole --wait-seconds per drain).
TEST_F(PipelineTest, AStandardQueueDrainEndsWithoutASecondRoundOfLongPolls) {
  source_.Add(200);
  source_.long_polls = true;
  options_.poll_wait = std::chrono::seconds(1);
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(ledger_.rows.size(), 200u);
  EXPECT_EQ(source_.Remaining(), 0u);
  // Each receiver's last long poll comes back empty, once: no confirmation round after it.
  EXPECT_LE(source_.long_polls_expired, options_.receivers);
}

}  // namespace
}  // namespace sqs2pg::pipeline
