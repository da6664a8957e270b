#include "common/status.h"

#include <gtest/gtest.h>

#include "common/result.h"

namespace sqs2pg {
namespace {

TEST(StatusTest, AnnotateReadsOuterToInner) {
  Status st = Status::Transient("connection lost").Annotate("COPY user_logins").Annotate("load batch");
  EXPECT_EQ(st.message(), "load batch: COPY user_logins: connection lost");
  EXPECT_TRUE(st.IsTransient());
}

TEST(StatusTest, AnnotateLeavesOkAlone) {
  EXPECT_TRUE(Status::Ok().Annotate("anything").ok());
  EXPECT_EQ(Status::Ok().Annotate("anything").message(), "");
}

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidInput("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  return Half(half);
}

TEST(ResultTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidInput);
  EXPECT_EQ(r.status().message(), "odd");
}

}  // namespace
}  // namespace sqs2pg
