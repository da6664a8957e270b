#include "source/sqs/async_sqs_source.h"

#include <spdlog/spdlog.h>

#include <charconv>

#include "aws/aws_error.h"
#include "aws/credential_cache.h"
#include "aws/multi_transport.h"
#include "common/log.h"
#include "source/sqs/sqs_protocol.h"
#include "source/sqs/sqs_wire.h"

namespace sqs2pg::sqs {
namespace {

// The error MultiTransport gives a call CancelCancellable() ended.
constexpr std::string_view kCancelled = "cancelled";

std::int64_t NowMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

struct AsyncSqsSource::Impl {
  ClientConfig config;
  Endpoint endpoint;
  std::string queue_url;
  std::optional<int> visibility_timeout_seconds;
  bool message_attributes = false;  // receives ask for MessageAttributeNames All
  WireChoice wire;
  std::unique_ptr<aws::MultiTransport> transport;
  std::shared_ptr<aws::CredentialCache> cache;
  metrics::Metrics* metrics = nullptr;  // nullptr: metrics are off

  // Counts one answered (or failed) call: its operation, outcome and time.
  void Count(std::string_view operation, metrics::SqsOutcome outcome,
             std::chrono::steady_clock::time_point start) {
    if (metrics == nullptr) return;
    metrics->CountSqsCall(metrics::SqsOpFromName(operation), outcome,
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  using Done = std::function<void(Result<Answer>)>;
  // A call AWS answered ExpiredToken, waiting for the cache's refresher thread to load new
  // credentials; Poll() sends it again (once) when they are there.
  struct AwaitingCredentials {
    std::uint64_t ticket;
    std::string operation;
    BodyFn build;
    std::chrono::milliseconds extra_timeout;
    Done done;
    bool cancellable;
    Status error;  // the ExpiredToken answer, reported if the refresh fails
  };
  std::vector<AwaitingCredentials> awaiting;

  // Sends one signed call; `done` gets the body of a 2xx answer or the error, with AWS's code.
  // Signing reads the cache's current credentials: a mutex and a shared_ptr copy, never I/O.
  void Call(std::string_view operation, BodyFn build, std::chrono::milliseconds extra_timeout, Done done,
            bool cancellable = false, bool after_refresh = false) {
    aws::CredentialCache::Snapshot credentials = cache->Current();
    const Wire& used = wire.Current();
    Result<std::string> body = build(used);
    if (!body.ok()) {
      done(body.status());
      return;
    }
    auto request = used.Sign(endpoint, operation, std::move(body).value(), *credentials.credentials,
                             config.region, std::chrono::system_clock::now());
    if (!request.ok()) {
      done(request.status());
      return;
    }
    request->timeout = config.request_timeout + extra_timeout;
    auto start = std::chrono::steady_clock::now();
    transport->Start(
        std::move(request).value(),
        [this, op = std::string(operation), build = std::move(build), extra_timeout, credentials, cancellable,
         after_refresh, &used, start, done = std::move(done)](Result<HttpResponse> response) mutable {
          using metrics::SqsOutcome;
          if (!response.ok()) {
            // A receive cancelled by a stop is not a failure of SQS.
            if (response.status().message() != kCancelled) Count(op, SqsOutcome::kNetworkError, start);
            done(response.status().Annotate("cannot reach SQS at " + endpoint.url));
            return;
          }
          if (wire.FallBack(used, *response)) {
            // As in SqsClient: a 2xx XML answer is the call's result; anything else, send it again.
            if (response->status >= 200 && response->status < 300) {
              done(Answer{&WireFor(SqsProtocol::kQuery), std::move(response->body)});
            } else {
              Call(op, std::move(build), extra_timeout, std::move(done), cancellable, after_refresh);
            }
            return;
          }
          if (response->status >= 200 && response->status < 300) {
            Count(op, SqsOutcome::kSuccess, start);
            done(Answer{&used, std::move(response->body)});
            return;
          }
          AwsError error = ParseError(*response);
          Count(op,
                IsThrottlingCode(error.code) || error.http_status == 429 ? SqsOutcome::kThrottled
                : error.http_status >= 500                               ? SqsOutcome::kServerError
                                                                         : SqsOutcome::kClientError,
                start);
          error.message = RedactSecrets(std::move(error.message), *credentials.credentials);
          Status st = ErrorStatus(error, op, queue_url, endpoint.url, cache->source());
          if (aws::IsExpiredTokenCode(error.code) && !after_refresh) {
            std::uint64_t ticket = cache->RequestRefresh(credentials.generation);
            if (metrics != nullptr) metrics->CountSqsRetries(metrics::SqsOpFromName(op));
            if (ticket == 0) {  // newer credentials are already there
              Call(op, std::move(build), extra_timeout, std::move(done), cancellable, true);
            } else {
              awaiting.push_back(
                  {ticket, op, std::move(build), extra_timeout, std::move(done), cancellable, st});
            }
            return;
          }
          // Throttling and 5xx are worth another try; ErrorStatus decides the rest.
          done(IsRetryable(error) ? Status::Transient(st.message()) : st);
        },
        cancellable);
  }

  // Sends again the calls whose credentials have been refreshed; fails those whose refresh failed.
  void ResumeAwaiting() {
    if (awaiting.empty()) return;
    std::vector<AwaitingCredentials> ready;
    for (auto it = awaiting.begin(); it != awaiting.end();) {
      if (cache->RefreshDone(it->ticket)) {
        ready.push_back(std::move(*it));
        it = awaiting.erase(it);
      } else {
        ++it;
      }
    }
    for (AwaitingCredentials& a : ready) {
      Status refreshed = cache->RefreshDone(a.ticket).value_or(Status::Ok());
      if (refreshed.ok()) {
        log::Info({{"operation", a.operation}},
                  "SQS {}: credentials had expired; retrying with refreshed ones", a.operation);
        Call(a.operation, std::move(a.build), a.extra_timeout, std::move(a.done), a.cancellable, true);
      } else {
        a.done(Status::InvalidInput(a.error.message() + "; " + refreshed.message()));
      }
    }
  }

  void Batch(std::string_view operation, BodyFn build, BatchDone done) {
    Call(operation, std::move(build), std::chrono::milliseconds(0),
         [op = std::string(operation), done = std::move(done)](Result<Answer> answer) {
           if (!answer.ok()) {
             done(answer.status());
             return;
           }
           auto parsed = answer->wire->ParseBatchResponse(answer->body);
           if (!parsed.ok()) {
             done(parsed.status());
             return;
           }
           // Entry ids are the entries' indexes in the request (see StartDelete).
           BatchResult result;
           for (const BatchEntryFailure& f : parsed->failed) {
             size_t index = 0;
             auto [end, ec] = std::from_chars(f.id.data(), f.id.data() + f.id.size(), index);
             if (ec != std::errc() || end != f.id.data() + f.id.size()) {
               spdlog::warn("SQS {}: a failed entry has an id we did not send", op);
               continue;
             }
             log::Warn({{"operation", op}, {"code", f.code}}, "SQS {}: entry {} failed{}: {}: {}", op, f.id,
                       f.sender_fault ? "" : " (will retry)", f.code, f.message);
             (f.sender_fault ? result.refused : result.retryable).push_back(index);
           }
           done(std::move(result));
         });
  }
};

AsyncSqsSource::AsyncSqsSource(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AsyncSqsSource::~AsyncSqsSource() = default;

Result<std::unique_ptr<AsyncSqsSource>> AsyncSqsSource::Create(
    const ClientConfig& config, std::string queue_url, std::optional<int> visibility_timeout_seconds) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  ASSIGN_OR_RETURN(impl->endpoint, ParseEndpoint(config.endpoint_url));
  impl->wire = WireChoice(config.protocol, impl->endpoint.url);
  impl->queue_url = std::move(queue_url);
  impl->visibility_timeout_seconds = visibility_timeout_seconds;
  ASSIGN_OR_RETURN(impl->transport, aws::MultiTransport::Create({config.connect_timeout, config.ca_file}));
  if (config.credential_cache) {
    impl->cache = config.credential_cache;
  } else if (config.credentials.access_key_id.empty() || config.credentials.secret_access_key.empty()) {
    return Status::InvalidInput("SQS source: no access key id or secret access key");
  } else {
    impl->cache = aws::CredentialCache::Fixed(config.credentials);
  }
  return std::unique_ptr<AsyncSqsSource>(new AsyncSqsSource(std::move(impl)));
}

void AsyncSqsSource::StartReceive(int max_messages, std::chrono::seconds wait, ReceiveDone done) {
  Impl& d = *impl_;
  d.Call(
      "ReceiveMessage",
      [&d, max_messages, wait](const Wire& w) -> Result<std::string> {
        return w.ReceiveMessageBody(d.queue_url, max_messages, static_cast<int>(wait.count()),
                                    d.visibility_timeout_seconds, d.message_attributes);
      },
      wait,
      [done = std::move(done)](Result<Answer> answer) {
        if (!answer.ok()) {
          done(answer.status());
          return;
        }
        auto parsed = answer->wire->ParseReceiveMessageResponse(answer->body);
        if (!parsed.ok()) {
          done(parsed.status());
          return;
        }
        std::int64_t now = NowMillis();
        std::vector<ReceivedMessage> out;
        out.reserve(parsed->size());
        for (SqsMessage& m : *parsed) {
          if (m.body_corrupt) {
            log::Warn({{"message_id", m.message_id}},
                      "message {}: body does not match its MD5OfBody; left for SQS to deliver again",
                      m.message_id);
            continue;
          }
          out.push_back({std::move(m.message_id), std::move(m.receipt_handle), std::move(m.body),
                         m.sent_timestamp_ms, m.receive_count, now,
                         FifoOrder{std::move(m.message_group_id), std::move(m.sequence_number)},
                         std::move(m.message_attributes)});
        }
        done(std::move(out));
      },
      /*cancellable=*/true);
}

void AsyncSqsSource::StartDelete(std::vector<std::string> receipt_handles, BatchDone done) {
  std::vector<DeleteEntry> entries;
  entries.reserve(receipt_handles.size());
  for (size_t i = 0; i < receipt_handles.size(); ++i)
    entries.push_back({std::to_string(i), std::move(receipt_handles[i])});
  impl_->Batch(
      "DeleteMessageBatch",
      [this, entries = std::move(entries)](const Wire& w) -> Result<std::string> {
        return w.DeleteMessageBatchBody(impl_->queue_url, entries);
      },
      std::move(done));
}

void AsyncSqsSource::StartExtendVisibility(std::vector<std::string> receipt_handles,
                                           std::chrono::seconds timeout, BatchDone done) {
  std::vector<VisibilityEntry> entries;
  for (size_t i = 0; i < receipt_handles.size(); ++i) {
    entries.push_back({std::to_string(i), receipt_handles[i], static_cast<int>(timeout.count())});
  }
  impl_->Batch(
      "ChangeMessageVisibilityBatch",
      [this, entries = std::move(entries)](const Wire& w) -> Result<std::string> {
        return w.ChangeMessageVisibilityBatchBody(impl_->queue_url, entries);
      },
      std::move(done));
}

void AsyncSqsSource::StartQueueDepth(std::function<void(Result<QueueDepth>)> done) {
  Impl& d = *impl_;
  d.Call(
      "GetQueueAttributes",
      [&d](const Wire& w) -> Result<std::string> {
        return w.GetQueueAttributesBody(
            d.queue_url, {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                          "ApproximateNumberOfMessagesDelayed"});
      },
      std::chrono::milliseconds(0),
      [done = std::move(done)](Result<Answer> answer) {
        if (!answer.ok()) {
          done(answer.status());
          return;
        }
        auto attributes = answer->wire->ParseGetQueueAttributesResponse(answer->body);
        if (!attributes.ok()) {
          done(attributes.status());
          return;
        }
        auto number = [&](const char* name) -> std::int64_t {
          auto it = attributes->find(name);
          std::int64_t n = 0;
          if (it != attributes->end())
            std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
          return n;
        };
        done(QueueDepth{number("ApproximateNumberOfMessages"),
                        number("ApproximateNumberOfMessagesNotVisible"),
                        number("ApproximateNumberOfMessagesDelayed")});
      });
}

void AsyncSqsSource::CancelReceives() {
  impl_->transport->CancelCancellable();
  std::vector<Impl::AwaitingCredentials> cancelled;
  auto& awaiting = impl_->awaiting;
  for (auto it = awaiting.begin(); it != awaiting.end();) {
    if (it->cancellable) {
      cancelled.push_back(std::move(*it));
      it = awaiting.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& a : cancelled) a.done(Status::Transient("cancelled"));
}

void AsyncSqsSource::Poll(std::chrono::milliseconds max_wait) {
  impl_->ResumeAwaiting();
  // While calls wait for fresh credentials, look again soon: the refresher thread does not wake us.
  if (!impl_->awaiting.empty()) max_wait = std::min(max_wait, std::chrono::milliseconds(50));
  impl_->transport->Poll(max_wait);
}

void AsyncSqsSource::Wakeup() { impl_->transport->Wakeup(); }

void AsyncSqsSource::SetMetrics(metrics::Metrics* metrics) { impl_->metrics = metrics; }
void AsyncSqsSource::RequestMessageAttributes() { impl_->message_attributes = true; }

}  // namespace sqs2pg::sqs
