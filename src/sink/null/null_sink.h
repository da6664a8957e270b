#pragma once
// A sink that commits nothing: `sqs2pg run --dry-run` uses it to measure what the queue alone can
// serve (receive, transform and delete, no database), and to try a configuration safely.

#include "common/stages.h"

namespace sqs2pg::sink {

class NullSink : public MessageSink {
 public:
  Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) override {
    LoadSummary summary;
    for (const ProcessedMessage& m : batch) {
      if (IsRow(m.record)) {
        ++summary.rows_loaded;
      } else {
        ++summary.rejects_stored;
      }
    }
    return summary;
  }
};

}  // namespace sqs2pg::sink
