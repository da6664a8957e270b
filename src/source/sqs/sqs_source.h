#pragma once
// The source stage: an SQS queue seen through the MessageSource contract.

#include <memory>
#include <optional>
#include <string>

#include "common/stages.h"

namespace sqs2pg::sqs {

class SqsClient;

struct SqsSourceConfig {
  std::string queue_url;
  // How long a received message stays hidden from other consumers. Must exceed the worst time
  // from receive to COMMIT, or a slow batch is delivered again (and then skipped by the ledger).
  // nullopt: the queue's own setting.
  std::optional<int> visibility_timeout_seconds;
};

// Not thread-safe: one per thread, like the client it wraps.
class SqsSource : public MessageSource {
 public:
  // client must outlive the source.
  SqsSource(SqsClient& client, SqsSourceConfig config);

  Result<std::vector<ReceivedMessage>> Receive(int max_messages, std::chrono::seconds wait) override;
  // DeleteMessageBatch in groups of ten; entries SQS refuses are counted, not fatal.
  Result<size_t> Delete(std::span<const ReceivedMessage> messages) override;

 private:
  SqsClient& client_;
  SqsSourceConfig config_;
};

}  // namespace sqs2pg::sqs
