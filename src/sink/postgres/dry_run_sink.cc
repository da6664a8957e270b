#include "sink/postgres/dry_run_sink.h"

#include <set>
#include <vector>

namespace sqs2pg::sink {

DryRunSink::DryRunSink(std::unique_ptr<PostgresSink> ledger) : ledger_(std::move(ledger)) {
  if (!ledger_) ledger_error_ = "the database was not reachable";
}

Result<LoadSummary> DryRunSink::Load(std::span<const ProcessedMessage> batch) {
  std::set<std::string> committed;
  if (ledger_) {
    std::vector<std::string> ids;
    for (const ProcessedMessage& m : batch) ids.push_back(m.message_id);
    auto found = ledger_->CommittedIds(ids);
    if (found.ok()) {
      committed.insert(found->begin(), found->end());
    } else {
      std::lock_guard lock(mu_);
      ledger_error_ = found.status().message();
      ledger_.reset();  // one failure is enough to say the count is incomplete
    }
  }
  LoadSummary summary;
  std::set<std::string> seen;
  std::lock_guard lock(mu_);
  for (const ProcessedMessage& m : batch) {
    if (committed.contains(m.message_id) || !seen.insert(m.message_id).second) {
      ++summary.duplicates;
    } else if (const auto* r = std::get_if<Rejection>(&m.record)) {
      ++summary.rejects_stored;
      ++rejects_by_reason_[r->reason];
    } else {
      ++summary.rows_loaded;
    }
  }
  return summary;
}

std::map<std::string, size_t> DryRunSink::RejectsByReason() const {
  std::lock_guard lock(mu_);
  return rejects_by_reason_;
}

std::string DryRunSink::ledger_error() const {
  std::lock_guard lock(mu_);
  return ledger_error_;
}

}  // namespace sqs2pg::sink
