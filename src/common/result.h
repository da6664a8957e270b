#pragma once
// Result<T>: a value or the Status that explains why there is none.
// (std::expected needs C++23; this is the small subset we use.)

#include <cassert>
#include <utility>
#include <variant>

#include "common/status.h"

namespace sqs2pg {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}        // NOLINT: implicit on purpose, like std::expected
  Result(Status status) : data_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(data_).ok() && "a Result built from a Status must hold an error");
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(data_);
  }

  // REQUIRES: ok()
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace sqs2pg

// Early-return helpers: keep call sites flat instead of nesting ifs.
#define SQS2PG_CONCAT_INNER(a, b) a##b
#define SQS2PG_CONCAT(a, b) SQS2PG_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)      \
  do {                             \
    ::sqs2pg::Status _st = (expr); \
    if (!_st.ok()) return _st;     \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(SQS2PG_CONCAT(_result_, __LINE__), lhs, expr)
