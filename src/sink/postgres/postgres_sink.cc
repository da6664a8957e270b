// PostgresSink's public members and Load(): the staging tables, COPY, the ledger merge, COMMIT
// (a WARNING during it means not committed), and isolating refused rows and messages. The
// connection, the tables and the ledger's upkeep live in the files postgres_sink_impl.h names.

#include "sink/postgres/postgres_sink.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <unordered_map>
#include <vector>

#include "common/json_writer.h"
#include "common/log.h"
#include "sink/postgres/copy_format.h"
#include "sink/postgres/ledger_partitions.h"
#include "sink/postgres/pg_handles.h"
#include "sink/postgres/postgres_sink_impl.h"
#include "sink/postgres/schema_ddl.h"
#include "sink/postgres/sqlstate.h"

namespace sqs2pg::sink {
namespace {

// A refused row as JSON, to be sealed into its reject (the row is already masked; only its
// key holders can read it back), with its body_shape in clear: column names and JSON types.
struct RowJson {
  std::string json, shape;
};
RowJson RowAsJson(std::span<const std::string> names, std::span<const std::optional<std::string>> values) {
  RowJson out{"{", "{"};
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    const char* comma = i + 1 < names.size() ? "," : "";
    AppendJsonString(out.json, names[i]);
    out.json.push_back(':');
    if (values[i]) {
      AppendJsonString(out.json, *values[i]);
    } else {
      out.json += "null";
    }
    out.json += comma;
    AppendJsonString(out.shape, names[i]);
    out.shape += values[i] ? ":\"string\"" : ":\"null\"";
    out.shape += comma;
  }
  out.json.push_back('}');
  out.shape.push_back('}');
  return out;
}

RowJson RowAsJson(const LoginRow& row) {
  static const std::string kNames[] = {"user_id",          "device_type", "masked_ip",
                                       "masked_device_id", "locale",      "app_version"};
  const std::optional<std::string> values[] = {row.user_id,          row.device_type, row.masked_ip,
                                               row.masked_device_id, row.locale,      row.app_version};
  return RowAsJson(kNames, values);
}

// What tells messages apart for the systemic-refusal check, without their values: which
// fields are null and how long each value is. Two good messages of one producer usually differ
// in some length; a bug that refuses one kind of message repeats one shape.
std::string ShapeKey(const ProcessedMessage& m) {
  auto len = [](const std::optional<std::string>& v) { return v ? static_cast<long>(v->size()) : -1L; };
  if (const auto* row = std::get_if<LoginRow>(&m.record)) {
    return fmt::format("{}/{}/{}/{}/{}/{}", row->user_id.size(), len(row->device_type), row->masked_ip.size(),
                       row->masked_device_id.size(), len(row->locale), len(row->app_version));
  }
  if (const auto* row = std::get_if<MappedRow>(&m.record)) {
    std::string key;
    for (const auto& v : row->values) fmt::format_to(std::back_inserter(key), "{}/", len(v));
    return key;
  }
  return "reject";
}

// A conninfo value, quoted when it holds a space, a quote or a backslash, or is empty.
std::string QuoteConninfoValue(std::string_view value) {
  if (!value.empty() && value.find_first_of(" '\\") == std::string_view::npos) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

}  // namespace

// The staging tables are made once per connection, outside any load (ON COMMIT DELETE ROWS: each
// commit or rollback empties them). Creating and dropping them in every batch (ON COMMIT DROP,
// as an earlier version did) is catalog work for the server, CPU a busy machine takes from
// fauxqs or the SQS clients: it was most of issue 20's per-message regression.
//
// Why that version dropped them per batch: session-long temporary tables are dropped when the
// connection ends, in a transaction of its own whose commit waits for a synchronous standby;
// during a failover that wait never ends and the old primary cannot finish shutting down (seen
// with pg_auto_failover). The session therefore runs with synchronous_commit = local (see
// SetUpSession), so that end-of-session cleanup never waits, and each load transaction sets the
// user's own level back (SET LOCAL), so a batch is as durable as the user asked.
//
// Each message's SentTimestamp (the partitioned ledger's key) is the last column of both staging
// tables rather than a table of its own. In the rows' staging table the id and the timestamp are
// sqs2pg_message_id and sqs2pg_sent_ms: a mapping's table may have a message_id column of its own.
Status PostgresSink::Impl::CreateStaging(bool ordered) {
  // FIFO order's table only when a FIFO batch comes: every ON COMMIT DELETE ROWS table is
  // emptied at every commit, used or not.
  if (ordered && !order_staging_ready) {
    RETURN_IF_ERROR(
        Exec("CREATE TEMP TABLE IF NOT EXISTS sqs2pg_stage_order (message_id text NOT NULL, message_group_id "
             "text, sequence_number numeric) ON COMMIT DELETE ROWS"));
    order_staging_ready = true;
  }
  if (staging_ready) return Status::Ok();
  std::string rows = "CREATE TEMP TABLE IF NOT EXISTS sqs2pg_stage (sqs2pg_message_id text NOT NULL";
  for (size_t i = 0; i < row_columns.size(); ++i) {
    rows += fmt::format(", {} {}", QuoteIdentifier(row_columns[i]), column_types[i]);
  }
  rows += ", sqs2pg_sent_ms bigint NOT NULL) ON COMMIT DELETE ROWS";
  RETURN_IF_ERROR(Exec(rows));
  RETURN_IF_ERROR(
      Exec("CREATE TEMP TABLE IF NOT EXISTS sqs2pg_stage_rejects (message_id text NOT NULL, received_at "
           "timestamptz, reason text, body text, body_encrypted boolean, body_bytes bigint, body_shape text, "
           "sent_ms bigint NOT NULL) ON COMMIT DELETE ROWS"));
  staging_ready = true;
  return Status::Ok();
}

void PostgresSink::Impl::BuildStatements() {
  std::string columns, selected;
  for (const std::string& c : row_columns) {
    columns += (columns.empty() ? "" : ", ") + QuoteIdentifier(c);
    selected += (selected.empty() ? "s." : ", s.") + QuoteIdentifier(c);
  }
  copy_rows_sql =
      fmt::format("COPY pg_temp.sqs2pg_stage (sqs2pg_message_id, {}, sqs2pg_sent_ms) FROM STDIN", columns);
  // The same for every row of this process, so it is a constant of the INSERT, not a COPY column.
  if (!Mapped() && !lacks_masked_ip_key_id && !config.masked_ip_key_id.empty()) {
    columns += ", masked_ip_key_id";
    selected += ", " + QuoteLiteral(config.masked_ip_key_id);
  }
  copy_rejects_sql =
      "COPY pg_temp.sqs2pg_stage_rejects (message_id, received_at, reason, body, body_encrypted, body_bytes, "
      "body_shape, sent_ms) FROM STDIN";
  // A rejects table from before body_bytes/body_shape that this role may not alter: the two go
  // into the reason, so they are still kept (see TableShape::rejects_lack_shape_columns).
  std::string reject_columns =
      "message_id, received_at, reason, body, body_encrypted, body_bytes, body_shape";
  std::string reject_values =
      "r.message_id, r.received_at, r.reason, r.body, r.body_encrypted, r.body_bytes, r.body_shape";
  if (rejects_lack_shape_columns) {
    reject_columns = "message_id, received_at, reason, body, body_encrypted";
    reject_values =
        "r.message_id, r.received_at, r.reason || ' (body ' || r.body_bytes || ' bytes, shape ' || "
        "r.body_shape "
        "|| ')', r.body, r.body_encrypted";
  }
  // One statement so the ledger decides, atomically, which staged messages are new.
  // DISTINCT ON keeps one row when a batch holds the same message twice.
  std::string merge_rest = fmt::format(
      " loaded AS ("
      " INSERT INTO {table} ({columns})"
      " SELECT DISTINCT ON (s.sqs2pg_message_id) {selected} FROM pg_temp.sqs2pg_stage s"
      " JOIN fresh f ON f.message_id = s.sqs2pg_message_id AND f.outcome = 'loaded'"
      " ORDER BY s.sqs2pg_message_id RETURNING 1),"
      " rejected AS ("
      " INSERT INTO {rejects} ({reject_columns})"
      " SELECT DISTINCT ON (r.message_id) {reject_values}"
      " FROM pg_temp.sqs2pg_stage_rejects r"
      " JOIN fresh f ON f.message_id = r.message_id AND f.outcome = 'rejected'"
      // A reject whose id the rejects table already holds (committed before a ledger migration
      // that was not consulted, or a rejects table shared by two ledgers) is a duplicate, not an
      // error that would fail its batch at every delivery.
      " ORDER BY r.message_id ON CONFLICT DO NOTHING RETURNING 1)"
      " SELECT (SELECT count(*) FROM loaded), (SELECT count(*) FROM rejected)",
      fmt::arg("table", names.Quoted()), fmt::arg("rejects", names.Quoted("_rejects")),
      fmt::arg("columns", columns), fmt::arg("selected", selected),
      fmt::arg("reject_columns", reject_columns), fmt::arg("reject_values", reject_values));
  // The ledger insert. Partitioned, its key is (message_id, sent_at): a redelivery carries the
  // same SentTimestamp, so it lands in the same day partition as its first delivery and
  // conflicts there; the ledger from before partitioning is asked too, until all it knew has
  // expired. `ordered`: a FIFO batch, whose group and sequence number the ledger keeps.
  auto fresh = [&](bool ordered) {
    std::string columns = "message_id, outcome", values = "s.message_id, s.outcome", from;
    if (ledger_partitioned) {
      columns += ", sent_at";
      values += ", timestamptz 'epoch' + s.sent_ms * interval '1 millisecond'";
    }
    if (ordered) {
      columns += ", message_group_id, sequence_number";
      values += ", o.message_group_id, o.sequence_number";
      from += " LEFT JOIN pg_temp.sqs2pg_stage_order o ON o.message_id = s.message_id";
    }
    if (legacy_ledger_in_use) {
      from += fmt::format(" WHERE NOT EXISTS (SELECT 1 FROM {} l WHERE l.message_id = s.message_id)",
                          LegacyLedger());
    }
    return fmt::format(
        "WITH staged AS ("
        " SELECT sqs2pg_message_id AS message_id, 'loaded' AS outcome, sqs2pg_sent_ms AS sent_ms FROM "
        "pg_temp.sqs2pg_stage"
        " UNION ALL SELECT message_id, 'rejected', sent_ms FROM pg_temp.sqs2pg_stage_rejects),"
        " fresh AS ("
        " INSERT INTO {ledger} ({columns}) SELECT {values} FROM staged s{from}"
        " ON CONFLICT ({key}) DO NOTHING RETURNING message_id, outcome),",
        fmt::arg("ledger", names.Quoted("_ledger")), fmt::arg("columns", columns), fmt::arg("values", values),
        fmt::arg("from", from), fmt::arg("key", ledger_partitioned ? "message_id, sent_at" : "message_id"));
  };
  merge_sql = fresh(false) + merge_rest;
  merge_ordered_sql = fresh(true) + merge_rest;
  copy_order_sql =
      "COPY pg_temp.sqs2pg_stage_order (message_id, message_group_id, sequence_number) FROM STDIN";
}

Status PostgresSink::Impl::Copy(const std::string& sql, const std::string& data, size_t rows) {
  // PQputCopyData takes an int length: send in chunks, so no batch size can overflow it.
  constexpr size_t kChunk = size_t{1} << 20;
  PGconn* c = conn.get();
  Watched watched(*this);
  PgResult begin(PQexec(c, sql.c_str()));
  if (PQresultStatus(begin.get()) != PGRES_COPY_IN) return Fail(begin.get(), sql.substr(0, 40));
  for (size_t at = 0; at < data.size(); at += kChunk) {
    size_t n = std::min(kChunk, data.size() - at);
    if (PQputCopyData(c, data.data() + at, static_cast<int>(n)) != 1) return Fail(nullptr, "COPY data");
  }
  if (PQputCopyEnd(c, nullptr) != 1) return Fail(nullptr, "COPY end");
  PgResult end(PQgetResult(c));
  Status st = Status::Ok();
  if (PQresultStatus(end.get()) != PGRES_COMMAND_OK) {
    st = Fail(end.get(), "COPY");
  } else if (std::string copied = PQcmdTuples(end.get()); copied != std::to_string(rows)) {
    // COPY text that split or merged rows would load something else than the batch.
    last_failure = Failure::kRetry;
    st = Status::Permanent(fmt::format("COPY took {} rows where {} were sent", copied, rows));
  }
  while (PgResult extra{PQgetResult(c)}) {
  }  // drain to nullptr so the connection is ready for the next command
  return st;
}

Result<LoadSummary> PostgresSink::Impl::LoadOnce(std::span<const ProcessedMessage> batch) {
  std::string rows, rejects, order;
  size_t row_count = 0, reject_count = 0, order_count = 0;
  for (const ProcessedMessage& m : batch) {
    if (!m.fifo.message_group_id.empty() && !ledger_lacks_order_columns) {
      ++order_count;
      AppendCopyText(order, m.message_id);
      order.push_back('\t');
      AppendCopyText(order, m.fifo.message_group_id);
      order.push_back('\t');
      if (m.fifo.sequence_number.empty()) {
        order += "\\N";
      } else {
        AppendCopyText(order, m.fifo.sequence_number);
      }
      order.push_back('\n');
    } else if (!m.fifo.message_group_id.empty() && !warned_order_not_kept) {
      warned_order_not_kept = true;
      spdlog::warn(
          "{} has no message_group_id and sequence_number columns and this role may not add them: FIFO order "
          "is not kept; a DBA can apply the output of `sqs2pg schema --table {}`",
          names.Quoted("_ledger"), config.table);
    }
    // sent_ms, the staging tables' last column (see CreateStaging): the line's newline becomes
    // a tab before it.
    auto append_sent = [&m](std::string& out) {
      out.back() = '\t';
      out += fmt::format_int(m.sent_timestamp_ms).str();
      out.push_back('\n');
    };
    if (const auto* row = std::get_if<LoginRow>(&m.record)) {
      ++row_count;
      AppendCopyRow(rows, m.message_id, *row);
      append_sent(rows);
    } else if (const auto* mapped = std::get_if<MappedRow>(&m.record)) {
      ++row_count;
      AppendCopyMappedRow(rows, m.message_id, *mapped);
      append_sent(rows);
    } else {
      ++reject_count;
      AppendCopyReject(rejects, m.message_id, m.received_at_ms, std::get<Rejection>(m.record));
      append_sent(rejects);
    }
  }

  // Made outside the transaction, once per connection (see CreateStaging).
  RETURN_IF_ERROR(CreateStaging(order_count > 0));
  RETURN_IF_ERROR(Exec(begin_sql));
  auto fail = [this](Status st) {
    if (PQstatus(conn.get()) == CONNECTION_OK) Exec("ROLLBACK").ok();
    return st;
  };
  if (order_count > 0) {
    if (Status st = Copy(copy_order_sql, order, order_count); !st.ok()) return fail(st);
  }
  if (row_count > 0) {
    if (Status st = Copy(copy_rows_sql, rows, row_count); !st.ok()) return fail(st);
  }
  if (reject_count > 0) {
    if (Status st = Copy(copy_rejects_sql, rejects, reject_count); !st.ok()) return fail(st);
  }
  PgResult merged = ExecPrepared(order_count > 0 ? merge_ordered_sql : merge_sql);
  if (PQresultStatus(merged.get()) != PGRES_TUPLES_OK) {
    return fail(Fail(merged.get(), fmt::format("insert into {}", names.Quoted())));
  }
  LoadSummary summary;
  summary.rows_loaded = static_cast<size_t>(ParseCount(PQgetvalue(merged.get(), 0, 0)));
  summary.rejects_stored = static_cast<size_t>(ParseCount(PQgetvalue(merged.get(), 0, 1)));
  summary.duplicates = batch.size() - std::min(batch.size(), summary.rows_loaded + summary.rejects_stored);
  commit_warned = false;
  in_commit = true;
  auto commit_start = std::chrono::steady_clock::now();
  Status committed = Exec("COMMIT");
  in_commit = false;
  if (!committed.ok()) return fail(committed);
  if (config.metrics != nullptr) {
    config.metrics->postgres_commit_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_start).count());
  }
  if (commit_warned) {
    // An unknown outcome: keep the messages. They come back and the ledger on whichever node
    // survives decides whether they are loaded or skipped.
    reconnect = true;
    last_failure = Failure::kRetry;
    return Status::Transient(
        "COMMIT answered with a WARNING (e.g. a synchronous standby did not confirm it: a cancelled wait, "
        "or the server going down for a failover); its outcome is treated as unknown: the batch will be "
        "loaded again, and the ledger skips what did commit");
  }
  if (config.metrics != nullptr) config.metrics->postgres_commits.Inc();
  return summary;
}

Status PostgresSink::Impl::Isolate(std::span<const ProcessedMessage> batch, Isolation& found) {
  auto result = LoadOnce(batch);
  if (result.ok()) {
    // Rows load between the refusals: they are the messages' fault, not the database's.
    if (result->rows_loaded > 0) ResetRefusalStreak();
    found.summary += *result;
    return Status::Ok();
  }
  // One row (or message) spoils the whole COPY: halve the batch until it is found.
  bool isolate = last_failure == Failure::kData || last_failure == Failure::kMessage;
  if (!isolate) return result.status();
  if (last_failure == Failure::kData && !systemic_sqlstate.empty() && last_sqlstate == systemic_sqlstate) {
    // The database refuses everything with this SQLSTATE: halving would only turn good
    // messages into rejects, one statement each. Leave them untried.
    for (const ProcessedMessage& m : batch) found.untried.push_back(&m);
    return Status::Ok();
  }
  if (batch.size() == 1) {
    const ProcessedMessage& m = batch.front();
    // Remembered across a retry of this batch (a lost connection, a watchdog cut): isolation
    // does not start again from nothing.
    if (refusals.size() >= kMaxRemembered) refusals.clear();
    refusals[m.message_id] = Refusal{result.status(), last_failure, last_sqlstate};
    found.refused.push_back(&m);
    if (last_failure == Failure::kData) NoteDataRefusal(last_sqlstate, ShapeKey(m));
    return Status::Ok();
  }
  size_t half = batch.size() / 2;
  RETURN_IF_ERROR(Isolate(batch.first(half), found));
  return Isolate(batch.subspan(half), found);
}

void PostgresSink::Impl::NoteDataRefusal(const std::string& sqlstate, std::string shape) {
  if (sqlstate != streak_sqlstate) {
    streak_sqlstate = sqlstate;
    streak_shapes.clear();
  }
  streak_shapes.insert(std::move(shape));
  if (streak_shapes.size() >= kSystemicShapes && systemic_sqlstate != sqlstate) {
    systemic_sqlstate = sqlstate;
    log::Error(
        {{"table", config.table}, {"sqlstate", sqlstate}},
        "the database refused {} messages of different shapes in a row with SQLSTATE {}: the fault is the "
        "database's, not the messages'; they are left in the queue, not rejected, until a load succeeds",
        streak_shapes.size(), sqlstate);
  }
}

void PostgresSink::Impl::ResetRefusalStreak() {
  streak_sqlstate.clear();
  streak_shapes.clear();
  if (!systemic_sqlstate.empty()) {
    spdlog::info("{} takes rows again: the systemic refusal (SQLSTATE {}) is over", names.Quoted(),
                 systemic_sqlstate);
  }
  systemic_sqlstate.clear();
}

Result<LoadSummary> PostgresSink::Impl::LoadIsolating(std::span<const ProcessedMessage> batch) {
  Isolation found;
  // Messages an earlier try of this batch isolated and found refused are not tried again.
  std::vector<ProcessedMessage> to_try_copy;
  std::span<const ProcessedMessage> to_try = batch;
  if (!refusals.empty()) {
    bool any_known = std::any_of(batch.begin(), batch.end(), [this](const ProcessedMessage& m) {
      return refusals.contains(m.message_id);
    });
    if (any_known) {
      for (const ProcessedMessage& m : batch) {
        if (refusals.contains(m.message_id)) {
          found.refused.push_back(&m);
        } else {
          to_try_copy.push_back(m);
        }
      }
      to_try = to_try_copy;
    }
  }
  if (!to_try.empty()) RETURN_IF_ERROR(Isolate(to_try, found));
  // Pointers into to_try_copy must be read before it goes: they are, below, in this scope.
  LoadSummary& summary = found.summary;
  if (found.refused.empty() && found.untried.empty()) return std::move(summary);
  std::vector<ProcessedMessage> rejects;
  std::vector<std::string> decided;
  auto leave = [&](const ProcessedMessage& m) {
    summary.left_for_redelivery.push_back(m.message_id);
    decided.push_back(m.message_id);
  };
  for (const ProcessedMessage* m : found.untried) leave(*m);
  for (const ProcessedMessage* m : found.refused) {
    auto known = refusals.find(m->message_id);
    if (known == refusals.end()) {  // forgotten (kMaxRemembered): tried again at its next delivery
      leave(*m);
      continue;
    }
    const Refusal& r = known->second;
    if (r.failure == Failure::kData) {
      if (!systemic_sqlstate.empty() && r.sqlstate == systemic_sqlstate) {
        leave(*m);
        continue;
      }
      if (!IsRow(m->record)) {
        // The rejects table itself refused a reject: a schema matter for an operator.
        return Status::Permanent("storing a reject failed: " + r.why.message());
      }
      rejects.push_back(RefusedRowReject(*m, r.why, "database refused the row"));
      decided.push_back(m->message_id);
      continue;
    }
    // Not its data as such: maybe a passing condition of a trigger. SQS delivers it again, and
    // only after max_receives deliveries does it become a reject.
    if (config.max_receives <= 0 || m->receive_count < config.max_receives || !IsRow(m->record)) {
      log::Warn({{"message_id", m->message_id},
                 {"table", config.table},
                 {"attempt", m->receive_count},
                 {"sqlstate", r.sqlstate}},
                "message {} was refused by the database (delivery {}), left for SQS to deliver again: {}",
                m->message_id, m->receive_count, r.why.message());
      leave(*m);
      continue;
    }
    rejects.push_back(RefusedRowReject(
        *m, r.why, fmt::format("database refused the message at each of {} deliveries", m->receive_count)));
    decided.push_back(m->message_id);
  }
  if (!systemic_sqlstate.empty() && !summary.left_for_redelivery.empty()) {
    summary.systemic_refusal = fmt::format(
        "the database refuses messages of different shapes with SQLSTATE {} (a fault of the database, e.g. "
        "no "
        "partition for their date, or a reference table behind): {} messages left in the queue, not rejected",
        systemic_sqlstate, summary.left_for_redelivery.size());
  }
  if (!rejects.empty()) {
    // All of this batch's refused rows in one transaction.
    auto stored = LoadOnce(rejects);
    if (!stored.ok()) {
      // A deadlock, a lost connection or an unreplicated COMMIT while storing them is passing:
      // the batch is tried again (what committed is skipped by the ledger, what was refused is
      // remembered). Anything else is for an operator.
      std::string why = fmt::format("storing {} rejects for rows the database refused failed: {}",
                                    rejects.size(), stored.status().message());
      return last_failure == Failure::kRetry ? Status::Transient(std::move(why))
                                             : Status::Permanent(std::move(why));
    }
    stored->refused_by_database = stored->rejects_stored;
    summary += *stored;
  }
  for (const std::string& id : decided) refusals.erase(id);
  return std::move(summary);
}

ProcessedMessage PostgresSink::Impl::RefusedRowReject(const ProcessedMessage& message, const Status& why,
                                                      std::string_view reason) {
  // Kept like every other reject body: encrypted whole, with its size and shape in clear.
  const auto* mapped = std::get_if<MappedRow>(&message.record);
  RowJson row = mapped != nullptr ? RowAsJson(row_columns, mapped->values)
                                  : RowAsJson(std::get<LoginRow>(message.record));
  Rejection rejection;
  rejection.reason = fmt::format("{}: {}", reason, SafeDatabaseReason(why.message()));
  rejection.body_bytes = row.json.size();
  rejection.body_shape = std::move(row.shape);
  if (config.seal_body) {
    auto sealed = config.seal_body(row.json);
    if (sealed.ok()) {
      rejection.safe_body = std::move(sealed).value();
      rejection.body_encrypted = true;
    } else {
      rejection.reason += "; the row could not be encrypted and was not kept";
    }
  }
  ProcessedMessage reject{message.message_id, message.received_at_ms, std::move(rejection)};
  reject.sent_timestamp_ms = message.sent_timestamp_ms;  // the ledger row's key, as for the row
  return reject;
}

PostgresSink::PostgresSink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->StartWatchdog();
  impl_->UpdateUp();
}
PostgresSink::~PostgresSink() {
  if (impl_->counted_up) impl_->config.metrics->postgres_connections_up.Add(-1);
  impl_->StopWatchdog();
}

Result<std::unique_ptr<PostgresSink>> PostgresSink::Connect(const PostgresSinkConfig& config) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  ASSIGN_OR_RETURN(impl->names, ParseTableName(config.table));
  if (config.columns.empty()) {
    impl->row_columns.assign(kRowColumns.begin(), kRowColumns.end());
  } else {
    for (const TableColumn& c : config.columns) impl->row_columns.push_back(c.name);
  }
  RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<PostgresSink>(new PostgresSink(std::move(impl)));
}

std::string PostgresSink::ServerName() const {
  return fmt::format("{}:{}", PQhost(impl_->conn.get()), PQport(impl_->conn.get()));
}

std::string RedactedConninfo(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    // libpq's message may quote the text, password included: say only that it did not parse.
    PQfreemem(error);
    return "[a conninfo libpq cannot parse; not shown]";
  }
  std::string out;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (!out.empty()) out += ' ';
    // libpq marks every option it would not display with dispchar "*": password, sslpassword, and
    // whatever a later libpq adds. Going by that mark, not by a list of names, hides them all.
    const bool secret =
        o->dispchar != nullptr && std::string_view(o->dispchar).find('*') != std::string_view::npos;
    out += fmt::format("{}={}", o->keyword, secret ? "[redacted]" : QuoteConninfoValue(o->val));
  }
  PQconninfoFree(options);
  return out;
}

Result<TableShape> PostgresSink::Prepare() {
  Impl& d = *impl_;
  if (Status st = d.CreateMissingTables(); !st.ok()) return d.PrivilegeHint(std::move(st));
  auto shape = d.ReadShape();
  if (!shape.ok()) return d.PrivilegeHint(shape.status());
  auto lacking = d.LacksColumns("_rejects", kRejectsShapeColumns, MigrateRejectsSql(d.names),
                                "body_bytes and body_shape");
  if (!lacking.ok()) return d.PrivilegeHint(lacking.status());
  shape->rejects_lack_shape_columns = d.rejects_lack_shape_columns = *lacking;
  if (Status st = d.PrepareTablePartitions(); !st.ok()) return d.PrivilegeHint(std::move(st));
  if (Status st = d.PrepareLedger(); !st.ok()) return d.PrivilegeHint(std::move(st));
  lacking = d.LacksColumns("_ledger", kLedgerOrderColumns, MigrateLedgerSql(d.names),
                           "message_group_id and sequence_number");
  if (!lacking.ok()) return d.PrivilegeHint(lacking.status());
  d.ledger_lacks_order_columns = *lacking;
  if (!d.Mapped()) {  // a mapping's table has its own key id columns, if it asks for them
    lacking = d.LacksColumns("", kKeyIdColumns, MigrateKeyIdSql(d.names), "masked_ip_key_id");
    if (!lacking.ok()) return d.PrivilegeHint(lacking.status());
    shape->lacks_masked_ip_key_id = d.lacks_masked_ip_key_id = *lacking;
  }
  RETURN_IF_ERROR(d.CheckPrivileges());
  d.BuildStatements();
  if (Status st = d.CreateStaging(); !st.ok()) return d.PrivilegeHint(std::move(st));
  return shape;
}

Result<MaintenanceSummary> PostgresSink::Maintain() {
  Impl& d = *impl_;
  ASSIGN_OR_RETURN(TableShape shape, Prepare());
  (void)shape;
  if (!d.owns_ledger) {
    const char* user = PQuser(d.conn.get());
    return Status::Permanent(fmt::format(
        "role {} does not own {}: only its owner can create and drop its partitions; run `sqs2pg maintain` "
        "as the owner (the role that applied `sqs2pg schema`)",
        user ? user : "(unknown)", d.names.Quoted("_ledger")));
  }
  // Prepare() ran it too, but a failure there is only a warning: here it is the answer.
  RETURN_IF_ERROR(d.MaintainLedger());
  return d.maintained;
}

void PostgresSink::Interrupt() { impl_->Interrupt(); }

Result<TableShape> PostgresSink::Inspect() {
  ASSIGN_OR_RETURN(bool exists, impl_->Exists(""));
  if (!exists) return Status::NotFound(fmt::format("table {} does not exist", impl_->names.Quoted()));
  return impl_->ReadShape();
}

Result<bool> PostgresSink::TablesExist() {
  for (std::string_view suffix : {"", "_ledger", "_rejects"}) {
    ASSIGN_OR_RETURN(bool exists, impl_->Exists(suffix));
    if (!exists) return false;
  }
  return true;
}

Status PostgresSink::CheckPrivileges() { return impl_->PrivilegeHint(impl_->CheckPrivileges()); }

Result<std::vector<std::string>> PostgresSink::CommittedIds(std::span<const std::string> message_ids) {
  Impl& d = *impl_;
  std::vector<std::string> committed;
  if (message_ids.empty()) return committed;
  ASSIGN_OR_RETURN(bool exists, d.Exists("_ledger"));
  if (!exists) return committed;  // nothing was ever committed
  // A text[] literal: every element double-quoted, with " and \ escaped.
  std::string array = "{";
  for (const std::string& id : message_ids) {
    if (array.size() > 1) array.push_back(',');
    array.push_back('"');
    for (char c : id) {
      if (c == '"' || c == '\\') array.push_back('\\');
      array.push_back(c);
    }
    array.push_back('"');
  }
  array.push_back('}');
  std::string ledger = d.names.Quoted("_ledger");
  std::string sql = fmt::format("SELECT message_id FROM {} WHERE message_id = ANY($1::text[])", ledger);
  // The ledger from before partitioning still counts until sqs2pg drops it.
  ASSIGN_OR_RETURN(bool legacy, d.Exists("_ledger1"));
  if (legacy) {
    sql +=
        fmt::format(" UNION SELECT message_id FROM {} WHERE message_id = ANY($1::text[])", d.LegacyLedger());
  }
  ASSIGN_OR_RETURN(PgResult res, d.Query(sql, {array}, fmt::format("read ledger {}", ledger)));
  for (int i = 0; i < PQntuples(res.get()); ++i) committed.emplace_back(PQgetvalue(res.get(), i, 0));
  return committed;
}

Result<LoadSummary> PostgresSink::Load(std::span<const ProcessedMessage> batch) {
  if (batch.empty()) return LoadSummary{};
  Status connected = impl_->EnsureConnected();
  impl_->UpdateUp();
  RETURN_IF_ERROR(connected);
  auto start = std::chrono::steady_clock::now();
  if (impl_->ledger_partitioned && start >= impl_->next_maintenance) {
    // Not the batch's business: a failure is logged and tried again later.
    if (Status st = impl_->MaintainLedger(); !st.ok()) {
      spdlog::warn("ledger maintenance: {}; trying again in 5 minutes", st.message());
      impl_->next_maintenance = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    }
  }
  auto loaded = impl_->LoadIsolating(batch);
  impl_->UpdateUp();
  if (impl_->config.metrics != nullptr) {
    impl_->config.metrics->postgres_load_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (!loaded.ok()) return impl_->PrivilegeHint(loaded.status());
  return loaded;
}

}  // namespace sqs2pg::sink
