#include "common/retry.h"

#include <algorithm>

namespace sqs2pg {

std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int retry, std::mt19937_64& rng) {
  // Past 2^20 the cap has long taken over; stopping there keeps the shift from overflowing.
  int exponent = std::clamp(retry - 1, 0, 20);
  std::int64_t ceiling =
      std::min<std::int64_t>(policy.max_delay.count(), policy.base_delay.count() << exponent);
  if (ceiling <= 0) return std::chrono::milliseconds(0);
  std::uniform_int_distribution<std::int64_t> pick(0, ceiling);
  return std::chrono::milliseconds(pick(rng));
}

}  // namespace sqs2pg
