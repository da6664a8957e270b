#include "aws/credential_cache.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "aws/credential_provider.h"
#include "common/log.h"

namespace sqs2pg::aws {
namespace {

using Clock = std::chrono::system_clock;

// Never hammer an endpoint: whatever the expiry says, at most one scheduled load a second.
constexpr std::chrono::seconds kMinInterval{1};

}  // namespace

std::shared_ptr<CredentialCache> CredentialCache::Create(std::unique_ptr<CredentialProvider> provider,
                                                         LoadedCredentials first, RefreshOptions options) {
  std::shared_ptr<CredentialCache> cache(new CredentialCache(std::move(provider), std::move(first), options));
  std::lock_guard lock(cache->mu_);
  if (cache->expiration_) cache->StartThreadLocked();
  return cache;
}

std::shared_ptr<CredentialCache> CredentialCache::Fixed(Credentials credentials, std::string source) {
  std::string name = source;
  return Create(StaticProvider(credentials, std::move(name)), {std::move(credentials), std::nullopt});
}

CredentialCache::CredentialCache(std::unique_ptr<CredentialProvider> provider, LoadedCredentials first,
                                 RefreshOptions options)
    : provider_(std::move(provider)), source_(provider_->Name()), options_(options) {
  current_ = std::make_shared<const Credentials>(std::move(first.credentials));
  expiration_ = first.expiration;
  loaded_at_ = Clock::now();
}

CredentialCache::~CredentialCache() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

CredentialCache::Snapshot CredentialCache::Current() const {
  std::lock_guard lock(mu_);
  return {current_, generation_};
}

std::optional<Clock::time_point> CredentialCache::expiration() const {
  std::lock_guard lock(mu_);
  return expiration_;
}

std::uint64_t CredentialCache::refreshes() const {
  std::lock_guard lock(mu_);
  return generation_ - 1;
}

Status CredentialCache::RefreshNow(std::uint64_t generation, std::chrono::milliseconds timeout) {
  std::uint64_t ticket = RequestRefresh(generation);
  if (ticket == 0) return Status::Ok();
  std::unique_lock lock(mu_);
  bool done = cv_.wait_for(lock, timeout, [&] { return served_ >= ticket || stop_; });
  if (!done) return Status::Transient("refreshing credentials from " + source_ + " timed out");
  if (generation_ > generation) return Status::Ok();
  return last_error_.ok() ? Status::Transient("credentials from " + source_ + " were not refreshed")
                          : last_error_;
}

std::uint64_t CredentialCache::RequestRefresh(std::uint64_t generation) {
  std::lock_guard lock(mu_);
  if (generation_ > generation) return 0;
  // Requests that arrive while one is pending share it: one load answers them all.
  if (requested_ <= served_) ++requested_;
  StartThreadLocked();
  cv_.notify_all();
  return requested_;
}

std::optional<Status> CredentialCache::RefreshDone(std::uint64_t ticket) const {
  std::lock_guard lock(mu_);
  if (served_ < ticket) return std::nullopt;
  return last_error_;
}

void CredentialCache::StartThreadLocked() {
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

Clock::time_point CredentialCache::NextRefreshLocked() const {
  if (retry_at_) return *retry_at_;
  if (!expiration_) return Clock::time_point::max();
  auto lifetime = *expiration_ - loaded_at_;
  auto margin = std::min<Clock::duration>(options_.margin, lifetime / 2);
  return std::max(*expiration_ - margin, loaded_at_ + kMinInterval);
}

void CredentialCache::Run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    bool requested = requested_ > served_;
    auto next = NextRefreshLocked();
    if (!requested && Clock::now() < next) {
      if (next == Clock::time_point::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, next);
      }
      continue;
    }
    std::uint64_t serving = requested_;
    lock.unlock();
    // The provider may take seconds (STS, a process); signers keep using the current credentials.
    Result<std::optional<LoadedCredentials>> loaded = provider_->Load();
    lock.lock();
    if (loaded.ok() && loaded->has_value()) {
      current_ = std::make_shared<const Credentials>(std::move((*loaded)->credentials));
      expiration_ = (*loaded)->expiration;
      loaded_at_ = Clock::now();
      ++generation_;
      retry_at_.reset();
      last_error_ = Status::Ok();
      log::Debug({{"credential_source", source_}}, "AWS credentials refreshed from {}", source_);
    } else {
      last_error_ = loaded.ok()
                        ? Status::Transient(source_ + " no longer has credentials: " + provider_->why_not())
                        : loaded.status();
      last_error_ = std::move(last_error_).Annotate("refresh AWS credentials");
      auto delay = std::chrono::duration_cast<Clock::duration>(options_.retry_delay);
      // While the current credentials still work, try more often as their end comes nearer.
      if (expiration_ && *expiration_ > Clock::now()) {
        delay = std::min(delay, std::max<Clock::duration>((*expiration_ - Clock::now()) / 2, kMinInterval));
      }
      retry_at_ = Clock::now() + std::max<Clock::duration>(delay, kMinInterval);
      log::Warn({{"credential_source", source_}}, "{} (trying again in {} s)", last_error_.message(),
                std::chrono::duration_cast<std::chrono::seconds>(delay).count());
    }
    served_ = std::max(served_, serving);
    cv_.notify_all();
  }
}

}  // namespace sqs2pg::aws
