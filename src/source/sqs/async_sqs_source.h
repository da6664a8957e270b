#pragma once
// The SQS queue as an AsyncMessageSource: every call is built, signed and parsed by the same
// protocol code as SqsClient, but sent through one libcurl multi handle, so many receives,
// deletes and visibility extensions are in flight at once on one thread.

#include <memory>
#include <optional>

#include "common/stages.h"
#include "metrics/sqs2pg_metrics.h"
#include "source/sqs/sqs_client.h"

namespace sqs2pg::sqs {

class AsyncSqsSource : public AsyncMessageSource {
 public:
  // visibility_timeout_seconds: for each receive; nullopt uses the queue's setting.
  static Result<std::unique_ptr<AsyncSqsSource>> Create(const ClientConfig& config, std::string queue_url,
                                                        std::optional<int> visibility_timeout_seconds);
  ~AsyncSqsSource() override;

  void StartReceive(int max_messages, std::chrono::seconds wait, ReceiveDone done) override;
  void StartDelete(std::vector<std::string> receipt_handles, BatchDone done) override;
  void StartExtendVisibility(std::vector<std::string> receipt_handles, std::chrono::seconds timeout,
                             BatchDone done) override;
  void StartQueueDepth(std::function<void(Result<QueueDepth>)> done) override;
  void CancelReceives() override;
  void Poll(std::chrono::milliseconds max_wait) override;
  void Wakeup() override;
  // Counts every call by operation and outcome, with its time. nullptr (the default): no metrics.
  // REQUIRES: metrics outlives the source.
  void SetMetrics(metrics::Metrics* metrics);
  // Receives also ask for the sender's message attributes (a mapping reads $attribute.NAME).
  void RequestMessageAttributes();

 private:
  struct Impl;
  explicit AsyncSqsSource(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sqs2pg::sqs
