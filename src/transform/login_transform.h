#pragma once
// The transform stage: one SQS message body in, a LoginRow or a Rejection out.
// It validates against the table's real column sizes, masks ip and device_id, and never
// throws or crashes on bad input: every refusal carries a reason that names the field and
// the rule, never the value.

#include <cstdint>
#include <memory>
#include <string_view>
#include <variant>

#include "common/login_record.h"
#include "common/stages.h"
#include "common/status.h"

namespace sqs2pg::transform {

class Masker;

// Column sizes in characters, as Postgres counts them (code points). The sink reads them from
// the live table, so a widened column is honoured without a rebuild.
struct ColumnLimits {
  size_t user_id = 128;
  size_t device_type = 32;
  size_t locale = 32;
  size_t app_version = 15;              // ignored when app_version_is_integer
  size_t masked_value = 256;            // masked_ip and masked_device_id
  bool app_version_is_integer = false;  // the original assignment's DDL
};

using TransformOutcome = std::variant<LoginRow, Rejection>;

// Not thread-safe (it reuses one parser and one Masker): use one per thread.
class LoginTransform : public MessageTransform {
 public:
  // masker must outlive the transform.
  LoginTransform(Masker& masker, ColumnLimits limits);
  ~LoginTransform() override;
  LoginTransform(const LoginTransform&) = delete;
  LoginTransform& operator=(const LoginTransform&) = delete;

  // sent_timestamp_ms: the message's SentTimestamp attribute (ms since the Unix epoch).
  TransformOutcome Apply(std::string_view body, std::int64_t sent_timestamp_ms);
  // The same for the pipeline: the body and its SentTimestamp.
  Record Apply(const ReceivedMessage& message) override;
  // Parses and validates only: the reason Apply would reject the body for, without masking
  // anything. For measuring and for checking input files.
  Status Check(std::string_view body, std::int64_t sent_timestamp_ms);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The text form ip is masked in, so equal addresses mask equally however they were written:
// IPv4 in dotted decimal as given (glibc accepts no other spelling), IPv6 per RFC 5952
// ("2001:DB8:0::1" -> "2001:db8::1"), and an IPv4-mapped IPv6 address as its IPv4 form
// ("::ffff:198.51.100.17" -> "198.51.100.17"). nullopt if s is not an IPv4 or IPv6 address or
// holds U+0000 anywhere.
std::optional<std::string> CanonicalIp(std::string_view s);

}  // namespace sqs2pg::transform
