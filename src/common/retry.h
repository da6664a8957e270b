#pragma once
// Full-jitter exponential backoff
// (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/): the n-th retry sleeps a
// uniform random time in [0, min(cap, base * 2^(n-1))], so clients that failed together do not retry
// together.

#include <chrono>
#include <random>

namespace sqs2pg {

struct RetryPolicy {
  // Attempts per request, the first one included; 1 turns retries off.
  int max_attempts = 6;
  // Upper bound of the first retry's sleep; doubles with each retry.
  std::chrono::milliseconds base_delay{50};
  // No sleep is longer than this.
  std::chrono::milliseconds max_delay{5000};
};

// REQUIRES: retry >= 1 (the first retry is 1).
std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int retry, std::mt19937_64& rng);

// The failures in a row of one call (a batch's load, a delete, the receive loop), so a retry
// budget is measured in time since the first failure, not in attempts: eight receivers that hit
// the same throttling burst together must not use up a budget meant to ride out minutes.
struct FailureStreak {
  using Clock = std::chrono::steady_clock;
  int failures = 0;
  Clock::time_point since;  // the first failure of the streak

  void Fail(Clock::time_point now) {
    if (failures++ == 0) since = now;
  }
  void Reset() { failures = 0; }
  // True once the streak has lasted at least `budget` (at once for a budget of 0).
  bool Exhausted(Clock::time_point now, std::chrono::milliseconds budget) const {
    return failures > 0 && now - since >= budget;
  }
};

}  // namespace sqs2pg
