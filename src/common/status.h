#pragma once
// Errors as values. A Status says what went wrong and whether trying again can help;
// Annotate() prefixes context so a message reads outer to inner:
//   "load batch: COPY \"user_logins\": server closed the connection".
// Messages never hold a secret, a key, a conninfo password or a plaintext ip/device_id.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace sqs2pg {

class Status {
 public:
  enum class Code : std::uint8_t {
    kOk,
    kInvalidInput,  // the caller's data or configuration is wrong; retrying will not help
    kNotFound,      // a named thing (queue, key, file) does not exist
    kTransient,     // network, throttling, server restart: retrying may help
    kPermanent,     // the server refused for good (auth, permissions, schema)
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidInput(std::string msg) { return Status(Code::kInvalidInput, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Transient(std::string msg) { return Status(Code::kTransient, std::move(msg)); }
  static Status Permanent(std::string msg) { return Status(Code::kPermanent, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsTransient() const { return code_ == Code::kTransient; }

  // Returns the same error with "what: " put in front of its message.
  Status Annotate(std::string_view what) const& {
    if (ok()) return *this;
    return Status(code_, std::string(what) + ": " + message_);
  }
  Status Annotate(std::string_view what) && {
    if (ok()) return std::move(*this);
    message_.insert(0, std::string(what) + ": ");
    return std::move(*this);
  }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace sqs2pg
