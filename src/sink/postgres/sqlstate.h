#pragma once
// What a failed statement means: the SQLSTATE classes sorted into what to do with the batch
// (retry, isolate a row, stop for an operator, isolate a message), the Status for it, and a
// database's reason made safe to store (no value it quoted). Internal to src/sink/postgres.

#include <libpq-fe.h>

#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace sqs2pg::sink {

// A field of an error or notice (PG_DIAG_*), or "" (also for a null result).
std::string ResultField(const PGresult* res, int field);

// What a failed statement means for the batch.
enum class Failure {
  kRetry,    // the connection, the server or a lock: the same batch may well load later
  kData,     // a value the table will not take: isolate the row and reject it
  kConfig,   // schema, privileges, authentication: nothing loads until an operator acts
  kMessage,  // refused for another reason (a trigger's RAISE, say): isolate the message
};

Failure Classify(PGconn* conn, const std::string& sqlstate);

// A Status whose code tells the caller what to do with the batch, and the failure class.
std::pair<Status, Failure> PgError(PGconn* conn, const PGresult* res, std::string_view what);

// A refused row's reason keeps what Postgres said, but no value: data errors quote the
// offending value ('invalid input syntax for type integer: "abc"', 'value "99999999999" is out of
// range'). Everything after ': "' is dropped, and a quoted part is kept only when it names a
// constraint, column, relation, type or encoding.
std::string SafeDatabaseReason(const std::string& message);

// The error is SQLSTATE 42501 (insufficient privilege), as PgError() writes it.
bool IsPrivilegeError(const Status& st);

}  // namespace sqs2pg::sink
