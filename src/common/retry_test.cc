#include "common/retry.h"

#include <gtest/gtest.h>

namespace sqs2pg {
namespace {

using std::chrono::milliseconds;

TEST(BackoffDelayTest, StaysUnderTheDoublingCeilingAndTheCap) {
  RetryPolicy policy{6, milliseconds(50), milliseconds(300)};
  std::mt19937_64 rng(42);
  for (int retry = 1; retry <= 40; ++retry) {
    milliseconds ceiling = std::min(milliseconds(300), milliseconds(50LL << std::min(retry - 1, 20)));
    milliseconds longest(0);
    for (int i = 0; i < 200; ++i) {
      milliseconds d = BackoffDelay(policy, retry, rng);
      EXPECT_GE(d.count(), 0);
      EXPECT_LE(d, ceiling) << "retry " << retry;
      longest = std::max(longest, d);
    }
    // Jitter spreads over the whole range, not just near zero.
    EXPECT_GT(longest, ceiling / 2) << "retry " << retry;
  }
}

TEST(BackoffDelayTest, ZeroBaseMeansNoSleep) {
  std::mt19937_64 rng(1);
  EXPECT_EQ(BackoffDelay({3, milliseconds(0), milliseconds(100)}, 3, rng), milliseconds(0));
}

}  // namespace
}  // namespace sqs2pg
