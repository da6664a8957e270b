#pragma once
// RAII owners for libpq handles: each handle is owned on the line that creates it.

#include <libpq-fe.h>

#include <memory>

namespace sqs2pg::sink {

struct PgConnCloser {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
struct PgResultCloser {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
struct PgCancelCloser {
  void operator()(PGcancel* c) const noexcept { PQfreeCancel(c); }
};
using PgConn = std::unique_ptr<PGconn, PgConnCloser>;
using PgResult = std::unique_ptr<PGresult, PgResultCloser>;
using PgCancel = std::unique_ptr<PGcancel, PgCancelCloser>;

}  // namespace sqs2pg::sink
