// Status and Result<T>: the error currency of every module.
//
// Anything that can fail returns a Status or a Result<T> (shaped like std::expected). Codes
// are the gRPC canonical codes so kubelet/ maps them 1:1 to grpc::Status. Each layer adds
// context with WithContext(), so a message reads like
//   "publish slice efa-node1: PUT /apis/...: 409 Conflict".
// Value types; not synchronised (copy them across threads).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace efadra {

enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// "NOT_FOUND", "INVALID_ARGUMENT", ... (the gRPC spelling).
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(std::string_view context) const;

  // "NOT_FOUND: <message>", or "OK".
  std::string ToString() const;

  // Explicitly drops the status (documents that ignoring it is intended).
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

Status CancelledError(std::string message);
Status UnknownError(std::string message);
Status InvalidArgumentError(std::string message);
Status DeadlineExceededError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status PermissionDeniedError(std::string message);
Status ResourceExhaustedError(std::string message);
Status FailedPreconditionError(std::string message);
Status AbortedError(std::string message);
Status OutOfRangeError(std::string message);
Status UnimplementedError(std::string message);
Status InternalError(std::string message);
Status UnavailableError(std::string message);
Status DataLossError(std::string message);
Status UnauthenticatedError(std::string message);

// A T or a non-OK Status. Constructing a Result from an OK Status is a programming error
// (it becomes kInternal so it can never be mistaken for a value).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status)                          // NOLINT(google-explicit-constructor)
      : data_(status.ok() ? InternalError("Result constructed from an OK status")
                          : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(data_); }

  // OK when holding a value.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(data_); }

  // Precondition: ok().
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }

  T value_or(T fallback) const& { return ok() ? std::get<T>(data_) : std::move(fallback); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace efadra

// Returns from the current function when `expr` (a Status) is not OK.
#define EFADRA_RETURN_IF_ERROR(expr)                    \
  do {                                                  \
    ::efadra::Status efadra_status_ = (expr);           \
    if (!efadra_status_.ok()) return efadra_status_;    \
  } while (false)

#define EFADRA_CONCAT_INNER_(a, b) a##b
#define EFADRA_CONCAT_(a, b) EFADRA_CONCAT_INNER_(a, b)

// `EFADRA_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result or returns its status.
#define EFADRA_ASSIGN_OR_RETURN(lhs, expr) \
  EFADRA_ASSIGN_OR_RETURN_IMPL_(EFADRA_CONCAT_(efadra_result_, __LINE__), lhs, expr)
#define EFADRA_ASSIGN_OR_RETURN_IMPL_(result, lhs, expr) \
  auto result = (expr);                                  \
  if (!result.ok()) return result.status();              \
  lhs = std::move(result).value()
