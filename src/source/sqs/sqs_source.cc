#include "source/sqs/sqs_source.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "source/sqs/sqs_client.h"

namespace sqs2pg::sqs {
namespace {

// DeleteMessageBatch takes at most ten entries.
constexpr size_t kMaxBatchEntries = 10;

std::int64_t NowMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

SqsSource::SqsSource(SqsClient& client, SqsSourceConfig config)
    : client_(client), config_(std::move(config)) {}

Result<std::vector<ReceivedMessage>> SqsSource::Receive(int max_messages, std::chrono::seconds wait) {
  ASSIGN_OR_RETURN(std::vector<SqsMessage> got,
                   client_.ReceiveMessage(config_.queue_url, max_messages, static_cast<int>(wait.count()),
                                          config_.visibility_timeout_seconds));
  std::int64_t now = NowMillis();
  std::vector<ReceivedMessage> out;
  out.reserve(got.size());
  for (SqsMessage& m : got) {
    out.push_back({std::move(m.message_id), std::move(m.receipt_handle), std::move(m.body),
                   m.sent_timestamp_ms, m.receive_count, now});
  }
  return out;
}

Result<size_t> SqsSource::Delete(std::span<const ReceivedMessage> messages) {
  size_t failed = 0;
  std::vector<DeleteEntry> entries;
  for (size_t start = 0; start < messages.size(); start += kMaxBatchEntries) {
    auto group = messages.subspan(start, std::min(kMaxBatchEntries, messages.size() - start));
    entries.clear();
    for (size_t i = 0; i < group.size(); ++i) entries.push_back({std::to_string(i), group[i].receipt_handle});
    ASSIGN_OR_RETURN(std::vector<BatchEntryFailure> failures,
                     client_.DeleteMessageBatch(config_.queue_url, entries));
    for (const BatchEntryFailure& f : failures) {
      size_t index = std::stoul(f.id);
      spdlog::warn("could not delete message {} ({}: {}); it will be delivered again and skipped",
                   index < group.size() ? group[index].message_id : f.id, f.code, f.message);
    }
    failed += failures.size();
  }
  return failed;
}

}  // namespace sqs2pg::sqs
