#pragma once
// The credentials every request is signed with, kept fresh. One provider (the one the chain
// picked) behind it; temporary credentials are replaced before they expire by a background
// thread, so neither the SQS client nor the event loop ever waits for STS or a metadata endpoint.
//
// Current() is cheap (a mutex and a shared_ptr copy), so the event loop may call it per request.
// When AWS still says ExpiredToken, callers ask for a refresh ahead of schedule: RefreshNow()
// blocks (for the synchronous client), RequestRefresh() + RefreshDone() poll (for the event loop).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "aws/provider.h"
#include "common/result.h"

namespace sqs2pg::aws {

struct RefreshOptions {
  // Replace temporary credentials this long before they expire, or at half their lifetime when
  // that is sooner (so credentials that live 15 s, as in tests, are replaced after 7.5 s).
  std::chrono::seconds margin{300};
  // After a failed refresh, try again this long later (halved while time runs out, at least 1 s).
  std::chrono::seconds retry_delay{10};
};

class CredentialCache {
 public:
  // The provider's first credentials are `first` (already loaded by the chain).
  static std::shared_ptr<CredentialCache> Create(std::unique_ptr<CredentialProvider> provider,
                                                 LoadedCredentials first, RefreshOptions options = {});
  // Fixed credentials (tests, tools): never refreshed.
  static std::shared_ptr<CredentialCache> Fixed(Credentials credentials, std::string source = "static");
  ~CredentialCache();
  CredentialCache(const CredentialCache&) = delete;
  CredentialCache& operator=(const CredentialCache&) = delete;

  struct Snapshot {
    std::shared_ptr<const Credentials> credentials;  // never null
    std::uint64_t generation = 0;                    // grows with every successful load
  };
  Snapshot Current() const;
  // The provider's name: safe to log.
  const std::string& source() const { return source_; }
  std::optional<std::chrono::system_clock::time_point> expiration() const;
  // Successful loads after the first: for tests and logs.
  std::uint64_t refreshes() const;

  // After AWS refused credentials of `generation` as expired: loads new ones unless that already
  // happened, waiting up to `timeout`. Ok means a newer generation is current.
  Status RefreshNow(std::uint64_t generation, std::chrono::milliseconds timeout);
  // The same without waiting: returns a ticket for RefreshDone(), or 0 when a newer generation is
  // already current.
  std::uint64_t RequestRefresh(std::uint64_t generation);
  // nullopt while the refresh asked for by `ticket` runs; then its outcome.
  std::optional<Status> RefreshDone(std::uint64_t ticket) const;

 private:
  CredentialCache(std::unique_ptr<CredentialProvider> provider, LoadedCredentials first,
                  RefreshOptions options);
  void StartThreadLocked();
  void Run();
  std::chrono::system_clock::time_point NextRefreshLocked() const;

  std::unique_ptr<CredentialProvider> provider_;  // used by the refresher thread only
  const std::string source_;
  const RefreshOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // wakes the refresher (requests, stop) and RefreshNow waiters
  std::shared_ptr<const Credentials> current_;
  std::optional<std::chrono::system_clock::time_point> expiration_;
  std::chrono::system_clock::time_point loaded_at_;
  std::uint64_t generation_ = 1;
  std::uint64_t requested_ = 0;                                    // last ticket handed out
  std::uint64_t served_ = 0;                                       // last ticket whose refresh finished
  Status last_error_;                                              // of the last failed load
  std::optional<std::chrono::system_clock::time_point> retry_at_;  // after a failed scheduled load
  bool stop_ = false;
  std::thread thread_;  // started when there is something to refresh
};

}  // namespace sqs2pg::aws
