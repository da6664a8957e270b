// A dry run must leave the queue as it found it: the real Pipeline runs over DryRunSource and a
// fake queue that keeps SQS's rules (receipt handles, visibility, deletes).

#include "source/dry_run/dry_run_source.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>

#include "pipeline/pipeline.h"
#include "transform/keyring.h"
#include "transform/login_transform.h"
#include "transform/masker.h"

namespace sqs2pg::source {
namespace {

class FakeQueue : public AsyncMessageSource {
 public:
  struct Message {
    std::string body;
    bool visible = true;
    std::string handle;
  };

  void Add(int n) {
    for (int i = 0; i < n; ++i) {
      std::string body = i % 5 == 4 ? R"({"IP":"203.0.113.1"})"
                                    : fmt::format(R"({{"user_id":"u{}","ip":"10.0.0.{}","device_id":"d{}"}})",
                                                  i, i % 250, i);
      messages_[fmt::format("m{:03}", i)] = Message{body, true, ""};
    }
  }
  size_t Visible() const {
    size_t n = 0;
    for (const auto& [id, m] : messages_) n += m.visible;
    return n;
  }
  size_t Size() const { return messages_.size(); }
  // What SQS does when a visibility timeout runs out.
  void MakeAllVisible() {
    for (auto& [id, m] : messages_) m.visible = true;
  }

  void StartReceive(int max_messages, std::chrono::seconds, ReceiveDone done) override {
    later_.push_back([this, max_messages, done = std::move(done)] {
      std::vector<ReceivedMessage> out;
      for (auto& [id, m] : messages_) {
        if (!m.visible || static_cast<int>(out.size()) == max_messages) continue;
        m.visible = false;
        m.handle = fmt::format("{}#{}", id, ++deliveries_);
        out.push_back({id, m.handle, m.body, 1'700'000'000'000, 1, 1'700'000'000'000});
      }
      done(std::move(out));
    });
  }
  void StartDelete(std::vector<std::string> handles, BatchDone done) override {
    later_.push_back([this, handles = std::move(handles), done = std::move(done)] {
      for (const std::string& h : handles) {
        for (auto it = messages_.begin(); it != messages_.end(); ++it) {
          if (it->second.handle == h) {
            messages_.erase(it);
            ++deleted;
            break;
          }
        }
      }
      done(BatchResult{});
    });
  }
  void StartExtendVisibility(std::vector<std::string> handles, std::chrono::seconds timeout,
                             BatchDone done) override {
    later_.push_back([this, handles = std::move(handles), timeout, done = std::move(done)] {
      BatchResult result;
      for (size_t i = 0; i < handles.size(); ++i) {
        const std::string& h = handles[i];
        bool found = false;
        for (auto& [id, m] : messages_) {
          if (m.handle != h) continue;
          found = true;
          if (timeout.count() == 0) m.visible = true;
        }
        if (!found) result.refused.push_back(i);
      }
      if (timeout.count() == 0) zero_visibility_calls += 1;
      done(std::move(result));
    });
  }
  void CancelReceives() override {}
  void Poll(std::chrono::milliseconds) override {
    std::vector<std::function<void()>> now;
    now.swap(later_);
    for (auto& f : now) f();
  }
  void Wakeup() override {}

  size_t deleted = 0;
  size_t zero_visibility_calls = 0;

 private:
  std::map<std::string, Message> messages_;
  std::vector<std::function<void()>> later_;
  int deliveries_ = 0;
};

class CountingSink : public MessageSink {
 public:
  Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) override {
    LoadSummary s;
    for (const auto& m : batch) (IsRow(m.record) ? s.rows_loaded : s.rejects_stored)++;
    return s;
  }
};

TEST(DryRunSourceTest, ARunOverItDeletesNothingAndReleasesEveryMessage) {
  FakeQueue queue;
  queue.Add(95);
  auto keyring = transform::Keyring::Generate();
  ASSERT_TRUE(keyring.ok());
  auto masker = transform::Masker::Create(*keyring);
  ASSERT_TRUE(masker.ok());
  transform::LoginTransform transform(*masker, {});

  DryRunSource dry(queue, std::chrono::seconds(30));
  std::vector<std::unique_ptr<MessageSink>> sinks;
  sinks.push_back(std::make_unique<CountingSink>());
  pipeline::PipelineOptions options;
  options.batch_size = 20;
  options.poll_wait = std::chrono::seconds(0);
  options.visibility_timeout = std::chrono::seconds(30);
  pipeline::Pipeline pipeline(dry, transform, std::move(sinks), options);
  std::atomic<bool> stop{false};
  ASSERT_TRUE(pipeline.Run(stop).ok());

  EXPECT_EQ(pipeline.stats().received, 95u);
  EXPECT_EQ(pipeline.stats().loaded, 76u);
  EXPECT_EQ(pipeline.stats().rejected, 19u);
  EXPECT_EQ(queue.deleted, 0u);
  EXPECT_EQ(queue.Visible(), 0u) << "held hidden until the run ends, so nothing is read twice";
  EXPECT_EQ(dry.held(), 95u);

  auto released = dry.Release();
  ASSERT_TRUE(released.ok()) << released.status().message();
  EXPECT_EQ(*released, 95u);
  EXPECT_EQ(queue.Size(), 95u);
  EXPECT_EQ(queue.Visible(), 95u);
  EXPECT_EQ(queue.zero_visibility_calls, 10u);  // ten messages a call
}

TEST(DryRunSourceTest, AMessageSeenAgainIsDroppedNotCountedTwice) {
  FakeQueue queue;
  queue.Add(3);
  DryRunSource dry(queue, std::chrono::seconds(0));
  size_t got = 0;
  auto receive = [&] {
    dry.StartReceive(10, std::chrono::seconds(0), [&](Result<std::vector<ReceivedMessage>> r) {
      ASSERT_TRUE(r.ok());
      got = r->size();
    });
    dry.Poll(std::chrono::milliseconds(0));
  };
  receive();
  EXPECT_EQ(got, 3u);
  queue.MakeAllVisible();  // their visibility timeout ran out
  receive();
  EXPECT_EQ(got, 0u);
  EXPECT_EQ(dry.redeliveries_dropped(), 3u);
  auto released = dry.Release();  // with the newest receipt handles
  ASSERT_TRUE(released.ok()) << released.status().message();
  EXPECT_EQ(*released, 3u);
}

}  // namespace
}  // namespace sqs2pg::source
