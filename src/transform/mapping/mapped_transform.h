#pragma once
// The generic transform: a Mapping compiled once into a plan of column steps (pointer tokens
// pre-split into a dispatch tree, type rules and mask keys resolved), then run per message:
// one body in, one typed value per table column (the text COPY wants, or NULL) or a Rejection.
// A rejection's reason names the column and the rule, never a value; its body is kept only
// encrypted, as LoginTransform keeps it. No per-message lookup by column name.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/login_record.h"
#include "common/result.h"
#include "common/stages.h"
#include "transform/mapping/mapping.h"

namespace sqs2pg::transform {
class Masker;
}

namespace sqs2pg::transform::mapping {

// What SQS (or SNS) says about a message besides its body; the `$...` sources read it.
struct MessageAttribute {
  std::string_view name;
  std::string_view value;  // String and Number attributes, as sent
};
struct MessageMetadata {
  std::string_view message_id;
  std::int64_t sent_timestamp_ms = 0;            // 0: absent (SQS's SentTimestamp is always positive)
  int receive_count = 0;                         // 0: absent
  std::string_view group_id;                     // empty: absent (a standard queue)
  std::span<const MessageAttribute> attributes;  // SQS message attributes
};

// One row: a value per Mapping::TableColumns() entry, in that order (common/login_record.h).
using sqs2pg::MappedRow;
using MappedOutcome = std::variant<MappedRow, Rejection>;

// The live table can differ from the mapping: a widened varchar, or an integer column where the
// mapping says text (app_version in the original assignment's DDL). Stage 3 reads these from the
// catalog; the plan then follows the table, as LoginTransform follows ColumnLimits.
struct LiveColumn {
  std::string name;
  ColumnType type;
};
struct CompileOptions {
  std::vector<LiveColumn> live;
};

// Not thread-safe (it reuses its parsers, buffers and the Masker): one per thread.
class MappedTransform : public MessageTransform {
 public:
  // Compiles the plan: resolves each masked column's key (an error if the keyring lacks it),
  // applies `options`, and checks each default against its column's rules (errors name file:line).
  // `masker` must outlive the transform.
  static Result<std::unique_ptr<MappedTransform>> Create(const Mapping& mapping, Masker& masker,
                                                         const CompileOptions& options = {});
  ~MappedTransform() override;
  MappedTransform(const MappedTransform&) = delete;
  MappedTransform& operator=(const MappedTransform&) = delete;

  MappedOutcome Apply(std::string_view body, const MessageMetadata& metadata);
  // The same for the pipeline: the body, and SQS's metadata and message attributes.
  Record Apply(const ReceivedMessage& message) override;
  // The table's columns, in the order of MappedRow::values.
  const std::vector<std::string>& columns() const;

 private:
  struct Impl;
  explicit MappedTransform(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sqs2pg::transform::mapping
