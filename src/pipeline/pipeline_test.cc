#include "pipeline/pipeline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <deque>
#include <map>
#include <set>

#include "transform/keyring.h"
#include "transform/masker.h"

namespace sqs2pg::pipeline {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::string Body(int i) {
  return fmt::format(R"({{"user_id":"u{}","ip":"10.0.0.{}","device_id":"d-{}","locale":"FR"}})", i, i % 250,
                     i);
}

// An in-memory queue: receive hands out messages (each delivery a new receipt handle), delete
// checks the handle, and `redeliver` puts a delivery back as an expired visibility timeout would.
class FakeSource : public MessageSource {
 public:
  void Add(std::string id, std::string body) {
    queue_.push_back({std::move(id), "", std::move(body), 1'700'000'000'000, 0, 0});
  }

  Result<std::vector<ReceivedMessage>> Receive(int max_messages, std::chrono::seconds wait) override {
    waits.push_back(wait);
    if (receive_error_count > 0) {
      --receive_error_count;
      return Status::Transient("connection reset");
    }
    std::vector<ReceivedMessage> out;
    while (!queue_.empty() && static_cast<int>(out.size()) < max_messages) {
      ReceivedMessage m = std::move(queue_.front());
      queue_.pop_front();
      m.receipt_handle = fmt::format("{}#{}", m.message_id, ++deliveries_);
      ++m.receive_count;
      in_flight_[m.message_id] = m;
      out.push_back(m);
      if (redeliver_now.erase(m.message_id)) queue_.push_back(m);
    }
    if (on_receive) on_receive(out);
    return out;
  }

  Result<size_t> Delete(std::span<const ReceivedMessage> messages) override {
    for (const auto& m : messages) {
      EXPECT_TRUE(sink_committed->count(m.message_id)) << "deleted before commit: " << m.message_id;
      auto it = in_flight_.find(m.message_id);
      if (it != in_flight_.end() && it->second.receipt_handle == m.receipt_handle) {
        in_flight_.erase(it);
        deleted.push_back(m.message_id);
      }
    }
    return size_t{0};
  }

  bool Empty() const { return queue_.empty(); }

  std::deque<ReceivedMessage> queue_;
  std::map<std::string, ReceivedMessage> in_flight_;
  std::set<std::string> redeliver_now;  // ids delivered twice in a row
  std::vector<std::string> deleted;
  std::vector<std::chrono::seconds> waits;
  int receive_error_count = 0;
  int deliveries_ = 0;
  const std::set<std::string>* sink_committed = nullptr;
  std::function<void(const std::vector<ReceivedMessage>&)> on_receive;
};

// Keeps what a Postgres sink with its ledger would: each message id at most once.
class FakeSink : public MessageSink {
 public:
  Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) override {
    ++load_calls;
    batch_sizes.push_back(batch.size());
    if (transient_failures > 0) {
      --transient_failures;
      return Status::Transient("server closed the connection");
    }
    if (permanent_failure) return Status::Permanent("permission denied for table user_logins");
    LoadSummary s;
    for (const auto& m : batch) {
      if (!committed.insert(m.message_id).second) {
        ++s.duplicates;
      } else if (std::holds_alternative<LoginRow>(m.record)) {
        ++s.rows_loaded;
        rows.push_back(std::get<LoginRow>(m.record).user_id);
      } else {
        ++s.rejects_stored;
      }
    }
    if (after_load) after_load();
    return s;
  }

  std::set<std::string> committed;
  std::vector<std::string> rows;
  std::vector<size_t> batch_sizes;
  int load_calls = 0;
  int transient_failures = 0;
  bool permanent_failure = false;
  std::function<void()> after_load;
};

class PipelineTest : public ::testing::Test {
 protected:
  PipelineTest()
      : keyring_(std::move(transform::Keyring::Generate()).value()),
        masker_(std::move(transform::Masker::Create(keyring_)).value()),
        transform_(masker_, {}) {
    source_.sink_committed = &sink_.committed;
    options_.poll_wait = std::chrono::seconds(1);
    options_.retry.base_delay = std::chrono::milliseconds(1);
    options_.retry.max_delay = std::chrono::milliseconds(2);
  }

  Status Run() {
    Pipeline pipeline(source_, transform_, sink_, options_);
    Status st = pipeline.Run(stop_);
    stats_ = pipeline.stats();
    return st;
  }

  transform::Keyring keyring_;
  transform::Masker masker_;
  transform::LoginTransform transform_;
  FakeSource source_;
  FakeSink sink_;
  PipelineOptions options_;
  RunStats stats_;
  std::atomic<bool> stop_{false};
};

TEST_F(PipelineTest, DrainLoadsEverythingThenDeletesAndStops) {
  for (int i = 0; i < 25; ++i) source_.Add(fmt::format("m{}", i), Body(i));
  source_.Add("bad", R"({"foo": "oops_wrong_msg_type", "bar": "123"})");
  options_.batch_size = 10;
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(stats_.received, 26u);
  EXPECT_EQ(stats_.loaded, 25u);
  EXPECT_EQ(stats_.rejected, 1u);
  EXPECT_EQ(stats_.deleted, 26u);
  EXPECT_EQ(sink_.rows.size(), 25u);
  EXPECT_TRUE(source_.Empty());
  EXPECT_THAT(source_.in_flight_, IsEmpty());
  for (size_t n : sink_.batch_sizes) EXPECT_LE(n, 10u);
}

TEST_F(PipelineTest, NothingIsDeletedWhenTheLoadFailsForGood) {
  for (int i = 0; i < 5; ++i) source_.Add(fmt::format("m{}", i), Body(i));
  sink_.permanent_failure = true;
  Status st = Run();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), ::testing::HasSubstr("permission denied"));
  EXPECT_THAT(source_.deleted, IsEmpty());
  EXPECT_EQ(source_.in_flight_.size(), 5u);  // they come back after the visibility timeout
}

TEST_F(PipelineTest, TransientLoadFailuresAreRetriedThenDeleted) {
  for (int i = 0; i < 5; ++i) source_.Add(fmt::format("m{}", i), Body(i));
  sink_.transient_failures = 2;
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(sink_.rows.size(), 5u);
  EXPECT_EQ(source_.deleted.size(), 5u);
  EXPECT_EQ(sink_.load_calls, 3);
}

TEST_F(PipelineTest, GivesUpAfterMaxAttemptsWithoutDeleting) {
  source_.Add("m1", Body(1));
  sink_.transient_failures = 100;
  options_.retry.max_attempts = 3;
  Status st = Run();
  EXPECT_TRUE(st.IsTransient());
  EXPECT_EQ(sink_.load_calls, 3);
  EXPECT_THAT(source_.deleted, IsEmpty());
}

TEST_F(PipelineTest, TransientReceiveFailuresAreRetried) {
  source_.Add("m1", Body(1));
  source_.receive_error_count = 2;
  ASSERT_TRUE(Run().ok());
  EXPECT_THAT(source_.deleted, ElementsAre("m1"));
}

TEST_F(PipelineTest, AMessageDeliveredTwiceInOneBatchIsLoadedOnceAndDeletedWithItsNewestHandle) {
  source_.Add("m1", Body(1));
  source_.Add("m2", Body(2));
  source_.redeliver_now.insert("m1");
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(sink_.rows.size(), 2u);
  EXPECT_EQ(stats_.duplicates, 1u);
  EXPECT_THAT(source_.in_flight_, IsEmpty());  // the delete used the receipt handle SQS still honours
}

TEST_F(PipelineTest, ARedeliveryOfACommittedMessageIsSkippedAndDeleted) {
  source_.Add("m1", Body(1));
  ASSERT_TRUE(Run().ok());
  source_.Add("m1", Body(1));  // the delete was lost, say, and SQS delivers it again
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(sink_.rows.size(), 1u);
  EXPECT_EQ(stats_.duplicates, 1u);
  EXPECT_EQ(source_.deleted.size(), 2u);
}

TEST_F(PipelineTest, FollowModeLoadsALoneMessageWithoutWaitingForAFullBatch) {
  options_.follow = true;
  options_.batch_size = 500;
  options_.batch_max_wait = std::chrono::milliseconds(0);
  source_.Add("lone", Body(1));
  // Stop only once the lone message has been committed: if the pipeline waited for a full
  // batch this would never happen and the test would hang (ctest's timeout catches it).
  sink_.after_load = [this] { stop_ = true; };
  ASSERT_TRUE(Run().ok());
  EXPECT_THAT(sink_.rows, ElementsAre("u1"));
  EXPECT_THAT(source_.deleted, ElementsAre("lone"));
}

TEST_F(PipelineTest, WithMessagesInHandTheNextPollIsShortened) {
  options_.batch_max_wait = std::chrono::milliseconds(0);
  options_.poll_wait = std::chrono::seconds(20);
  source_.Add("m1", Body(1));
  ASSERT_TRUE(Run().ok());
  ASSERT_GE(source_.waits.size(), 2u);
  EXPECT_EQ(source_.waits[0], std::chrono::seconds(20));  // nothing in hand: a full long poll
  // After the first message arrives, a batch is already due, so the next receive must not
  // block for the full long poll.
  EXPECT_EQ(source_.waits[1], std::chrono::seconds(0));
}

TEST_F(PipelineTest, StopRequestLoadsAndDeletesWhatIsInHand) {
  options_.follow = true;
  options_.batch_size = 500;
  options_.batch_max_wait = std::chrono::hours(1);
  for (int i = 0; i < 3; ++i) source_.Add(fmt::format("m{}", i), Body(i));
  source_.on_receive = [this](const std::vector<ReceivedMessage>& got) {
    if (!got.empty()) stop_ = true;
  };
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(sink_.rows.size(), 3u);
  EXPECT_EQ(source_.deleted.size(), 3u);
}

}  // namespace
}  // namespace sqs2pg::pipeline
