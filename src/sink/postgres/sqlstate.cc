#include "sink/postgres/sqlstate.h"

#include <fmt/format.h>

namespace sqs2pg::sink {

std::string ResultField(const PGresult* res, int field) {
  const char* v = res ? PQresultErrorField(res, field) : nullptr;
  return v ? v : "";
}

Failure Classify(PGconn* conn, const std::string& sqlstate) {
  if (PQstatus(conn) != CONNECTION_OK || sqlstate.empty() || sqlstate.starts_with("08"))
    return Failure::kRetry;
  if (sqlstate == "40001" || sqlstate == "40P01" ||  // serialization failure, deadlock
      sqlstate.starts_with("53") ||                  // insufficient resources, too many connections
      sqlstate.starts_with("57") ||                  // statement timeout, admin shutdown, crash recovery
      sqlstate == "55P03" || sqlstate == "55006" ||  // lock timeout, object in use
      sqlstate == "25006" ||  // read-only transaction: connected to a node that became a standby
      sqlstate == "58000" || sqlstate == "58030") {  // system error, I/O error
    return Failure::kRetry;
  }
  if (sqlstate.starts_with("22") || sqlstate.starts_with("23")) return Failure::kData;
  if (sqlstate.starts_with("42") || sqlstate.starts_with("28") || sqlstate.starts_with("3D") ||
      sqlstate.starts_with("3F") || sqlstate == "0A000") {
    return Failure::kConfig;
  }
  return Failure::kMessage;
}

std::pair<Status, Failure> PgError(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string sqlstate = ResultField(res, PG_DIAG_SQLSTATE);
  std::string message = ResultField(res, PG_DIAG_MESSAGE_PRIMARY);
  if (message.empty()) {
    message = PQerrorMessage(conn);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  }
  std::string text = sqlstate.empty() ? fmt::format("{}: {}", what, message)
                                      : fmt::format("{}: {} (SQLSTATE {})", what, message, sqlstate);
  Failure failure = Classify(conn, sqlstate);
  switch (failure) {
    case Failure::kRetry:
      return {Status::Transient(std::move(text)), failure};
    case Failure::kData:
      return {Status::InvalidInput(std::move(text)), failure};
    default:
      return {Status::Permanent(std::move(text)), failure};
  }
}

std::string SafeDatabaseReason(const std::string& message) {
  std::string text = message;
  if (size_t colon = text.find(": \""); colon != std::string::npos)
    text = text.substr(0, colon) + " (value omitted)";
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = text.find('"', pos);
    size_t close = open == std::string::npos ? open : text.find('"', open + 1);
    if (close == std::string::npos) {
      out += text.substr(pos);
      return out;
    }
    std::string before = text.substr(pos, open - pos);
    out += before;
    bool names_something = false;
    for (std::string_view word : {"constraint ", "column ", "relation ", "table ", "type ", "encoding "}) {
      std::string_view so_far = out;
      if (so_far.ends_with(word)) names_something = true;
    }
    out += names_something ? text.substr(open, close + 1 - open) : "(value omitted)";
    pos = close + 1;
  }
}

bool IsPrivilegeError(const Status& st) { return st.message().find("SQLSTATE 42501") != std::string::npos; }

}  // namespace sqs2pg::sink
