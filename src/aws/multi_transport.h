#pragma once
// Many HTTP requests in flight on one thread: a libcurl multi handle. Completion callbacks run
// inside Poll(), on the thread that calls it, so their state needs no locking.

#include <chrono>
#include <functional>
#include <memory>

#include "aws/http.h"
#include "aws/transport_options.h"
#include "common/result.h"

namespace sqs2pg::aws {

class MultiTransport {
 public:
  using Done = std::function<void(Result<HttpResponse>)>;

  static Result<std::unique_ptr<MultiTransport>> Create(const TransportOptions& options);
  ~MultiTransport();
  MultiTransport(const MultiTransport&) = delete;
  MultiTransport& operator=(const MultiTransport&) = delete;

  // Queues the request; `done` runs in a later Poll(). Not thread-safe. A cancellable request can
  // be ended early by CancelCancellable().
  void Start(HttpRequest request, Done done, bool cancellable = false);
  // Ends every cancellable request in flight; their `done` gets a Transient "cancelled" error.
  void CancelCancellable();
  // Moves transfers along and runs the callbacks of those that finished. Waits up to max_wait
  // for network activity when none is ready; Wakeup() from any thread ends the wait early.
  void Poll(std::chrono::milliseconds max_wait);
  // Thread-safe.
  void Wakeup();
  size_t in_flight() const;

 private:
  struct Impl;
  explicit MultiTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sqs2pg::aws
