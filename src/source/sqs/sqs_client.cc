#include "source/sqs/sqs_client.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <set>
#include <thread>
#include <type_traits>

#include "aws/aws_error.h"
#include "aws/credential_cache.h"
#include "aws/http_transport.h"
#include "common/digest.h"
#include "common/encoding.h"
#include "common/log.h"
#include "source/sqs/sqs_protocol.h"
#include "source/sqs/sqs_wire.h"

namespace sqs2pg::sqs {
namespace {

constexpr size_t kMaxBatchEntries = 10;
// How long a call waits for fresh credentials after AWS said the current ones expired.
constexpr std::chrono::seconds kRefreshWait{30};

}  // namespace

struct SqsClient::State {
  ClientConfig config;
  Endpoint endpoint;
  WireChoice wire;
  std::unique_ptr<aws::HttpTransport> transport;
  std::shared_ptr<aws::CredentialCache> cache;
  std::mt19937_64 rng{std::random_device{}()};

  void Backoff(int retry) { std::this_thread::sleep_for(BackoffDelay(config.retry, retry, rng)); }

  // One attempt. Sets `retry` when another attempt may succeed, and `expired` to the credentials'
  // generation when AWS said they have expired.
  // repeatable: false for a call that must not be sent twice when its outcome is unknown (a
  // SendMessageBatch whose answer was lost may have sent its messages: a resend would duplicate
  // them under new MessageIds, which no ledger can catch).
  Result<Answer> Attempt(std::string_view operation, const BodyFn& build, std::string_view queue,
                         std::chrono::milliseconds extra_timeout, bool& retry,
                         std::optional<std::uint64_t>& expired, bool repeatable) {
    retry = false;
    expired.reset();
    aws::CredentialCache::Snapshot credentials = cache->Current();
    const Wire& used = wire.Current();
    ASSIGN_OR_RETURN(std::string body, build(used));
    ASSIGN_OR_RETURN(HttpRequest request,
                     used.Sign(endpoint, operation, std::move(body), *credentials.credentials, config.region,
                               std::chrono::system_clock::now()));
    request.timeout = config.request_timeout + extra_timeout;
    Result<HttpResponse> response = transport->Post(request);
    if (!response.ok()) {
      retry = response.status().IsTransient();
      const std::string& why = response.status().message();
      bool never_sent = why.find("Failed to connect") != std::string::npos ||
                        why.find("Couldn't connect") != std::string::npos ||
                        why.find("Could not resolve") != std::string::npos;
      if (!repeatable && !never_sent) {
        retry = false;
        return Status::Transient(fmt::format(
            "cannot reach SQS at {}: {}; SQS may or may not have acted on this {}, so it is not sent again",
            endpoint.url, why, operation));
      }
      return response.status().Annotate("cannot reach SQS at " + endpoint.url);
    }
    if (wire.FallBack(used, *response)) {
      // A server that answered a JSON request in XML and 2xx did act on it: read the answer as
      // Query's. Any other such answer means it did nothing: send the call again, now in Query.
      if (response->status >= 200 && response->status < 300)
        return Answer{&WireFor(SqsProtocol::kQuery), std::move(response->body)};
      return Attempt(operation, build, queue, extra_timeout, retry, expired, repeatable);
    }
    if (response->status >= 200 && response->status < 300) return Answer{&used, std::move(response->body)};
    AwsError error = ParseError(*response);
    error.message = RedactSecrets(std::move(error.message), *credentials.credentials);
    retry = IsRetryable(error);
    if (aws::IsExpiredTokenCode(error.code)) expired = credentials.generation;
    return ErrorStatus(error, operation, queue, endpoint.url, cache->source());
  }

  // The response body of a successful call, after retrying what is worth retrying.
  Result<Answer> Call(std::string_view operation, const BodyFn& build, std::string_view queue,
                      std::chrono::milliseconds extra_timeout = std::chrono::milliseconds(0),
                      bool repeatable = true) {
    bool refreshed = false;
    for (int attempt = 1;; ++attempt) {
      bool retry = false;
      std::optional<std::uint64_t> expired;
      Result<Answer> result = Attempt(operation, build, queue, extra_timeout, retry, expired, repeatable);
      if (expired && !refreshed) {
        // Once per call: new credentials, then the same request again (not counted as a retry).
        refreshed = true;
        Status st = cache->RefreshNow(*expired, kRefreshWait);
        if (st.ok()) {
          log::Info({{"operation", operation}},
                    "SQS {}: credentials had expired; retrying with refreshed ones", operation);
          --attempt;
          continue;
        }
        return Status::InvalidInput(result.status().message() + "; " + st.message());
      }
      if (result.ok() || !retry) return result;
      if (attempt >= config.retry.max_attempts) {
        return Status::Transient(result.status().message() + " (gave up after " + std::to_string(attempt) +
                                 " attempts)");
      }
      log::Debug({{"operation", operation}, {"attempt", attempt}}, "SQS {} attempt {} failed, retrying: {}",
                 operation, attempt, result.status().message());
      Backoff(attempt);
    }
  }

  // Sends the entries, then again those that failed by a server fault, up to max_attempts rounds.
  // repeatable: see Attempt().
  template <typename Entry, typename BuildBody>
  Result<std::vector<BatchEntryFailure>> RunBatch(std::string_view operation, const std::string& queue_url,
                                                  std::span<const Entry> entries, BuildBody build_body,
                                                  bool repeatable = true) {
    if (entries.empty()) return std::vector<BatchEntryFailure>();
    if (entries.size() > kMaxBatchEntries) {
      return Status::InvalidInput("SQS " + std::string(operation) + ": " + std::to_string(entries.size()) +
                                  " entries; a batch holds at most 10");
    }
    std::vector<Entry> pending(entries.begin(), entries.end());
    std::vector<BatchEntryFailure> final_failures;
    std::vector<BatchEntryFailure> retryable;
    for (int round = 1;; ++round) {
      std::span<const Entry> round_entries(pending);
      Result<Answer> response = Call(
          operation, [&](const Wire& w) { return build_body(w, queue_url, round_entries); }, queue_url,
          std::chrono::milliseconds(0), repeatable);
      Result<BatchResponse> parsed = response.ok() ? response->wire->ParseBatchResponse(response->body)
                                                   : Result<BatchResponse>(response.status());
      if (!parsed.ok() && round == 1) return parsed.status();
      if (!parsed.ok()) break;  // the previous round's failures stand for the entries not retried
      retryable.clear();
      std::vector<Entry> retry_entries = Triage(pending, *parsed, final_failures, retryable);
      if (retry_entries.empty() || round >= config.retry.max_attempts) break;
      spdlog::debug("SQS {}: retrying {} entries that failed by a server fault", operation,
                    retry_entries.size());
      Backoff(round);
      pending = std::move(retry_entries);
    }
    final_failures.insert(final_failures.end(), retryable.begin(), retryable.end());
    return final_failures;
  }

  // Files each pending entry's outcome; returns the entries worth another round.
  template <typename Entry>
  std::vector<Entry> Triage(const std::vector<Entry>& pending, const BatchResponse& parsed,
                            std::vector<BatchEntryFailure>& final_failures,
                            std::vector<BatchEntryFailure>& retryable) {
    std::set<std::string_view> answered(parsed.successful_ids.begin(), parsed.successful_ids.end());
    std::map<std::string_view, const BatchEntryFailure*> failed;
    for (const BatchEntryFailure& f : parsed.failed) failed[f.id] = &f;
    std::vector<Entry> retry_entries;
    for (const Entry& entry : pending) {
      if (auto it = failed.find(entry.id); it != failed.end()) {
        if (it->second->sender_fault) {
          final_failures.push_back(*it->second);
        } else {
          retryable.push_back(*it->second);
          retry_entries.push_back(entry);
        }
      } else if (!answered.contains(entry.id)) {
        final_failures.push_back(
            {entry.id, "MissingFromResponse", "SQS returned no result for this entry", false});
      } else if constexpr (std::is_same_v<Entry, SendEntry>) {
        auto md5 = parsed.body_md5.find(entry.id);
        if (md5 != parsed.body_md5.end() && md5->second != HexEncode(Md5(entry.body))) {
          final_failures.push_back({entry.id, "MD5OfMessageBodyMismatch",
                                    "SQS stored a body whose MD5 differs from the one sent", false});
        }
      }
    }
    return retry_entries;
  }
};

SqsClient::SqsClient(std::unique_ptr<State> state) : state_(std::move(state)) {}
SqsClient::~SqsClient() = default;

Result<std::unique_ptr<SqsClient>> SqsClient::Create(ClientConfig config) {
  if (config.region.empty()) return Status::InvalidInput("SQS client: no region");
  if (!config.credential_cache &&
      (config.credentials.access_key_id.empty() || config.credentials.secret_access_key.empty())) {
    return Status::InvalidInput("SQS client: no access key id or secret access key");
  }
  if (config.retry.max_attempts < 1) {
    return Status::InvalidInput("SQS client: retry.max_attempts must be >= 1");
  }
  auto state = std::make_unique<State>();
  ASSIGN_OR_RETURN(state->endpoint, ParseEndpoint(config.endpoint_url));
  state->wire = WireChoice(config.protocol, state->endpoint.url);
  ASSIGN_OR_RETURN(state->transport, aws::HttpTransport::Create({config.connect_timeout, config.ca_file}));
  state->cache =
      config.credential_cache ? config.credential_cache : aws::CredentialCache::Fixed(config.credentials);
  state->config = std::move(config);
  return std::unique_ptr<SqsClient>(new SqsClient(std::move(state)));
}

const std::string& SqsClient::endpoint_url() const { return state_->endpoint.url; }

Result<std::string> SqsClient::GetQueueUrl(std::string_view queue_name) {
  ASSIGN_OR_RETURN(
      Answer answer,
      state_->Call(
          "GetQueueUrl", [&](const Wire& w) -> Result<std::string> { return w.GetQueueUrlBody(queue_name); },
          queue_name));
  return answer.wire->ParseQueueUrlResponse(answer.body);
}

Result<std::string> SqsClient::CreateQueue(std::string_view queue_name,
                                           const std::map<std::string, std::string>& attributes) {
  ASSIGN_OR_RETURN(Answer answer, state_->Call(
                                      "CreateQueue",
                                      [&](const Wire& w) -> Result<std::string> {
                                        return w.CreateQueueBody(queue_name, attributes);
                                      },
                                      queue_name));
  return answer.wire->ParseQueueUrlResponse(answer.body);
}

Result<std::vector<SqsMessage>> SqsClient::ReceiveMessage(const std::string& queue_url, int max_messages,
                                                          int wait_time_seconds,
                                                          std::optional<int> visibility_timeout_seconds) {
  if (max_messages < 1 || max_messages > 10) {
    return Status::InvalidInput("SQS ReceiveMessage: max_messages must be 1 to 10");
  }
  if (wait_time_seconds < 0 || wait_time_seconds > 20) {
    return Status::InvalidInput("SQS ReceiveMessage: wait_time_seconds must be 0 to 20");
  }
  if (visibility_timeout_seconds &&
      (*visibility_timeout_seconds < 0 || *visibility_timeout_seconds > 43200)) {
    return Status::InvalidInput("SQS ReceiveMessage: visibility timeout must be 0 to 43200 seconds");
  }
  ASSIGN_OR_RETURN(Answer answer, state_->Call(
                                      "ReceiveMessage",
                                      [&](const Wire& w) -> Result<std::string> {
                                        return w.ReceiveMessageBody(queue_url, max_messages,
                                                                    wait_time_seconds,
                                                                    visibility_timeout_seconds);
                                      },
                                      queue_url, std::chrono::seconds(wait_time_seconds)));
  ASSIGN_OR_RETURN(std::vector<SqsMessage> messages, answer.wire->ParseReceiveMessageResponse(answer.body));
  std::erase_if(messages, [](const SqsMessage& m) {
    if (m.body_corrupt)
      log::Warn({{"message_id", m.message_id}},
                "message {}: body does not match its MD5OfBody; left for SQS to deliver again", m.message_id);
    return m.body_corrupt;
  });
  return messages;
}

Result<std::vector<BatchEntryFailure>> SqsClient::DeleteMessageBatch(const std::string& queue_url,
                                                                     std::span<const DeleteEntry> entries) {
  return state_->RunBatch(
      "DeleteMessageBatch", queue_url, entries,
      [](const Wire& w, std::string_view url, std::span<const DeleteEntry> pending) -> Result<std::string> {
        return w.DeleteMessageBatchBody(url, pending);
      });
}

Result<std::vector<BatchEntryFailure>> SqsClient::SendMessageBatch(const std::string& queue_url,
                                                                   std::span<const SendEntry> entries,
                                                                   bool deduplicated) {
  return state_->RunBatch(
      "SendMessageBatch", queue_url, entries,
      [](const Wire& w, std::string_view url, std::span<const SendEntry> pending) {
        return w.SendMessageBatchBody(url, pending);
      },
      deduplicated);
}

Result<std::vector<BatchEntryFailure>> SqsClient::ChangeMessageVisibilityBatch(
    const std::string& queue_url, std::span<const VisibilityEntry> entries) {
  return state_->RunBatch("ChangeMessageVisibilityBatch", queue_url, entries,
                          [](const Wire& w, std::string_view url,
                             std::span<const VisibilityEntry> pending) -> Result<std::string> {
                            return w.ChangeMessageVisibilityBatchBody(url, pending);
                          });
}

Result<std::map<std::string, std::string>> SqsClient::GetQueueAttributes(
    const std::string& queue_url, const std::vector<std::string>& names) {
  ASSIGN_OR_RETURN(Answer answer, state_->Call(
                                      "GetQueueAttributes",
                                      [&](const Wire& w) -> Result<std::string> {
                                        return w.GetQueueAttributesBody(queue_url, names);
                                      },
                                      queue_url));
  return answer.wire->ParseGetQueueAttributesResponse(answer.body);
}

}  // namespace sqs2pg::sqs
