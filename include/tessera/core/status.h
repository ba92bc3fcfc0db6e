// Status and Result<T>: how every Tessera module reports failure. No exceptions cross module
// boundaries. A Status is cheap when OK (no allocation).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <variant>

namespace tessera {

// One code enum for the whole system. Each code maps to exactly one HTTP status and one gRPC
// code (see HttpStatusOf / GrpcCodeOf) so frontends never guess.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // bad input from a caller: HTTP 400, gRPC INVALID_ARGUMENT
  kNotFound,            // unknown model / file / tensor: 404, NOT_FOUND
  kAlreadyExists,       // 409, ALREADY_EXISTS
  kFailedPrecondition,  // state does not allow it (e.g. model not ready): 400, FAILED_PRECONDITION
  kResourceExhausted,   // queue full, out of memory: 429, RESOURCE_EXHAUSTED
  kPayloadTooLarge,     // request body over the limit: 413, RESOURCE_EXHAUSTED
  kUnauthenticated,     // missing or wrong credentials: 401, UNAUTHENTICATED
  kDeadlineExceeded,    // could not meet deadline: 504, DEADLINE_EXCEEDED
  kUnimplemented,       // unsupported op / feature: 501, UNIMPLEMENTED
  kUnavailable,         // shutting down, device lost: 503, UNAVAILABLE
  kInternal,            // a bug in Tessera: 500, INTERNAL
};

const char* StatusCodeName(StatusCode code);
int HttpStatusOf(StatusCode code);
int GrpcCodeOf(StatusCode code);  // numeric value of grpc::StatusCode

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message);

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status PayloadTooLarge(std::string m) {
    return {StatusCode::kPayloadTooLarge, std::move(m)};
  }
  static Status Unauthenticated(std::string m) {
    return {StatusCode::kUnauthenticated, std::move(m)};
  }
  static Status DeadlineExceeded(std::string m) {
    return {StatusCode::kDeadlineExceeded, std::move(m)};
  }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  const std::string& message() const;
  // "INVALID_ARGUMENT: <message>" or "OK".
  std::string ToString() const;
  // Returns a copy whose message is "<prefix>: <message>"; OK stays OK.
  Status WithContext(const std::string& prefix) const;

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;  // null when OK
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status::Internal("Result constructed from OK status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tessera

#define TESSERA_CONCAT_IMPL(a, b) a##b
#define TESSERA_CONCAT(a, b) TESSERA_CONCAT_IMPL(a, b)

#define TESSERA_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::tessera::Status _tessera_st = (expr);    \
    if (!_tessera_st.ok()) return _tessera_st; \
  } while (0)

#define TESSERA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

#define TESSERA_ASSIGN_OR_RETURN(lhs, expr) \
  TESSERA_ASSIGN_OR_RETURN_IMPL(TESSERA_CONCAT(_tessera_res_, __LINE__), lhs, expr)
