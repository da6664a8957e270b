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

}  // namespace sqs2pg
