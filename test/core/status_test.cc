#include "efadra/core/status.h"

#include <gtest/gtest.h>

namespace efadra {
namespace {

Result<int> ParsePositive(int v) {
  if (v <= 0) return InvalidArgumentError("not positive: " + std::to_string(v));
  return v;
}

Status UsesMacros(int v, int* out) {
  EFADRA_ASSIGN_OR_RETURN(int parsed, ParsePositive(v));
  EFADRA_RETURN_IF_ERROR(parsed > 100 ? OutOfRangeError("too big") : Status::Ok());
  *out = parsed;
  return Status::Ok();
}

TEST(StatusTest, ContextIsPrependedAndOkStaysOk) {
  Status s = NotFoundError("open /sys/x: No such file").WithContext("discover efa_0");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "discover efa_0: open /sys/x: No such file");
  EXPECT_EQ(s.ToString(), "NOT_FOUND: discover efa_0: open /sys/x: No such file");
  EXPECT_TRUE(Status::Ok().WithContext("ignored").ok());
}

TEST(StatusTest, ResultHoldsValueOrError) {
  Result<int> good = ParsePositive(3);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 3);
  Result<int> bad = ParsePositive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.value_or(7), 7);
}

TEST(StatusTest, ResultFromOkStatusIsAnInternalError) {
  Result<int> r = Status::Ok();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(StatusTest, MacrosPropagate) {
  int out = 0;
  EXPECT_TRUE(UsesMacros(5, &out).ok());
  EXPECT_EQ(out, 5);
  EXPECT_EQ(UsesMacros(-2, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(UsesMacros(500, &out).code(), StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace efadra
