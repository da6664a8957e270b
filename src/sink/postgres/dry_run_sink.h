#pragma once
// The sink side of `sqs2pg run --dry-run`: writes nothing, and counts what a real run would do
// with each batch: rows, rejects (by reason) and duplicates. Duplicates are the message ids the
// ledger already holds, read with a plain SELECT when the database is reachable.

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/stages.h"
#include "sink/postgres/postgres_sink.h"

namespace sqs2pg::sink {

class DryRunSink : public MessageSink {
 public:
  // ledger: a connection used only for SELECTs on <table>_ledger; nullptr when the database is
  // not reachable (duplicates are then not known and counted as new).
  explicit DryRunSink(std::unique_ptr<PostgresSink> ledger);

  // rows_loaded / rejects_stored / duplicates: what a real run would have done. Never fails:
  // a failed ledger read leaves the rest of the run unchecked (see ledger_error()).
  Result<LoadSummary> Load(std::span<const ProcessedMessage> batch) override;

  // Thread-safe; read them after the run.
  std::map<std::string, size_t> RejectsByReason() const;
  // Empty while duplicates are checked against the ledger; else why they are not.
  std::string ledger_error() const;

 private:
  std::unique_ptr<PostgresSink> ledger_;
  mutable std::mutex mu_;
  std::map<std::string, size_t> rejects_by_reason_;
  std::string ledger_error_;
};

}  // namespace sqs2pg::sink
