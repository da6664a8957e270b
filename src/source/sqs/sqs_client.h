#pragma once
// A client for the SQS operations sqs2pg uses, over the AWS JSON 1.0 or the Query protocol
// (ClientConfig::protocol) with SigV4.
// Retries throttling, HTTP 5xx and network failures itself (full-jitter backoff); what it
// returns is final for that call. Errors:
//   NotFound      the queue does not exist ("queue login-queue does not exist at <endpoint>")
//   Transient     network, throttling or server trouble that outlasted the retries
//   InvalidInput  SQS (or this client) found the request invalid, or AWS refused the credentials
//                 or their permissions (the message names the code and the credential source)
//   Permanent     anything else SQS refused
// No message holds the secret key or the session token.

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aws/credentials.h"
#include "common/result.h"
#include "common/retry.h"
#include "source/sqs/sqs_types.h"

namespace sqs2pg::aws {
class CredentialCache;
}  // namespace sqs2pg::aws

namespace sqs2pg::sqs {

struct ClientConfig {
  // scheme://host[:port][/path]. Every request goes here, whatever host a queue URL names
  // (emulators hand out URLs on hosts like sqs.us-east-1.localhost).
  std::string endpoint_url;
  std::string region;  // signing region, e.g. "us-east-1"
  // Fixed credentials, used when credential_cache is not set.
  aws::Credentials credentials;
  // Where each request's credentials come from (kept fresh in the background). An ExpiredToken
  // answer makes the client ask it for new credentials and try that request once more.
  std::shared_ptr<aws::CredentialCache> credential_cache;
  // For each HTTP request, and for each batch's entries that failed by a server fault.
  RetryPolicy retry;
  // TCP (and TLS) connection set-up, per attempt.
  std::chrono::milliseconds connect_timeout{3000};
  // PEM file of the CAs trusted for an https:// endpoint; empty: the system's store. Certificates
  // are always verified.
  std::string ca_file;
  // One whole exchange, per attempt. ReceiveMessage gets its long-poll wait on top.
  std::chrono::milliseconds request_timeout{10000};
  // The protocol to speak: JSON (AWS, current emulators), Query (LocalStack 0.14 and older
  // emulators), or auto: JSON, and Query once the server shows it does not understand JSON.
  SqsProtocol protocol = SqsProtocol::kAuto;
};

// One per thread: it owns one keep-alive connection. Not thread-safe.
class SqsClient {
 public:
  // InvalidInput for a bad endpoint URL, empty region or missing keys.
  static Result<std::unique_ptr<SqsClient>> Create(ClientConfig config);
  ~SqsClient();
  SqsClient(const SqsClient&) = delete;
  SqsClient& operator=(const SqsClient&) = delete;

  const std::string& endpoint_url() const;

  Result<std::string> GetQueueUrl(std::string_view queue_name);
  // Returns the URL of the new queue, or of the existing one if its attributes match.
  Result<std::string> CreateQueue(std::string_view queue_name,
                                  const std::map<std::string, std::string>& attributes);

  // Up to max_messages (1-10), waiting up to wait_time_seconds (0-20) for the first one. Asks for
  // SentTimestamp and ApproximateReceiveCount. A body whose MD5OfBody does not match fails the
  // whole call (Transient), as the AWS SDKs do; its messages come back after the visibility timeout.
  Result<std::vector<SqsMessage>> ReceiveMessage(const std::string& queue_url, int max_messages,
                                                 int wait_time_seconds,
                                                 std::optional<int> visibility_timeout_seconds);

  // The batch calls take 1-10 entries (none: nothing is sent) and return the entries that still
  // failed after entries failing by a server fault were retried. An error means the call as a
  // whole failed on the first round: no entry is known to have succeeded.
  Result<std::vector<BatchEntryFailure>> DeleteMessageBatch(const std::string& queue_url,
                                                            std::span<const DeleteEntry> entries);
  // Also reports an entry whose MD5OfMessageBody does not match (code "MD5OfMessageBodyMismatch").
  // A call whose answer was lost is not sent again (it may have sent its messages, and a resend
  // would duplicate them under new MessageIds), unless `deduplicated`: a FIFO queue drops a
  // resend with the same deduplication ids (given, or content-based) within five minutes.
  Result<std::vector<BatchEntryFailure>> SendMessageBatch(const std::string& queue_url,
                                                          std::span<const SendEntry> entries,
                                                          bool deduplicated = false);
  Result<std::vector<BatchEntryFailure>> ChangeMessageVisibilityBatch(
      const std::string& queue_url, std::span<const VisibilityEntry> entries);

  Result<std::map<std::string, std::string>> GetQueueAttributes(const std::string& queue_url,
                                                                const std::vector<std::string>& names);

 private:
  struct State;
  explicit SqsClient(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace sqs2pg::sqs
