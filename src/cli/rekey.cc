// sqs2pg rekey: re-masks stored values (rows and reject bodies) from older keys or modes to the
// keyring's active ones, online, in small transactions.
//
// Each batch is one transaction: SELECT ... FOR UPDATE SKIP LOCKED picks rows whose values are not
// yet in the active form, they are unmasked and masked again in this process, and UPDATEd by ctid.
// A running consumer only inserts rows (already in the active form), so the two never wait on each
// other. Which rows need work is read from the values themselves (the key id and format in front),
// so a rerun after a kill simply carries on: committed batches are done, the rest is found again.
// Limits: hmac values are one-way and stay as they are (reported); values of an older
// address-valued key (a bare address has no key id) cannot be told from the active key's, so a
// rotation between two address-valued keys is not re-masked.

#include <fmt/format.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "sink/postgres/pg_handles.h"
#include "transform/masker.h"

namespace sqs2pg::cli {
namespace {

using sink::PgConn;
using sink::PgResult;
using transform::MaskField;
using transform::MaskMode;

struct RekeyOptions {
  std::string db;
  std::string table = "user_logins";
  std::string key_file;
  MaskModeOptions modes;
  int batch_size = 500;
};

// "schema.table" or "table", each part quoted; `suffix` goes on the table name.
std::string QuotedTable(PGconn* conn, const std::string& table, const std::string& suffix) {
  auto quote = [&](const std::string& part) {
    char* q = PQescapeIdentifier(conn, part.c_str(), part.size());
    std::string out = q ? q : "\"\"";
    PQfreemem(q);
    return out;
  };
  size_t dot = table.find('.');
  if (dot == std::string::npos) return quote(table + suffix);
  return quote(table.substr(0, dot)) + "." + quote(table.substr(dot + 1) + suffix);
}

// SQL true when `column` (text) is not yet in the active form of `mode` under key `id`.
// hmac values under other keys are never selected: nothing can re-mask them.
std::string NeedsRekey(const std::string& column, MaskMode mode, const std::string& id) {
  const std::string keyed = fmt::format("{} ~ '^[0-9a-f]{{8}}[.]'", column);
  const std::string not_hmac = fmt::format("{} NOT LIKE '________.hmac.%'", column);
  if (transform::AddressValued(mode)) return fmt::format("({} AND {})", keyed, not_hmac);
  const std::string tag = mode == MaskMode::kHmac ? "hmac" : "v2";
  return fmt::format("({} NOT LIKE '{}.{}.%' AND {})", column, id, tag, not_hmac);
}

class Rekeyer {
 public:
  Rekeyer(PGconn* conn, transform::Masker& masker, int batch_size)
      : conn_(conn), masker_(masker), batch_size_(batch_size) {}

  Status Exec(const std::string& sql) {
    PgResult res(PQexec(conn_, sql.c_str()));
    if (PQresultStatus(res.get()) != PGRES_COMMAND_OK && PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
      return Status::Permanent(fmt::format("{}: {}", sql.substr(0, 60), PQerrorMessage(conn_)));
    }
    return Status::Ok();
  }

  // Re-masks `columns` of `table` (each with the field it holds; nullopt: a reject body) where
  // `where` holds, batch by batch in ctid order. Returns how many rows changed.
  Result<long> Run(const std::string& table,
                   const std::vector<std::pair<std::string, std::optional<MaskField>>>& columns,
                   const std::string& where, const std::string& what) {
    long done = 0, skipped = 0;
    std::string last = "(0,0)";
    std::string select = "SELECT ctid";
    for (const auto& [column, field] : columns) select += ", " + column + "::text";
    select +=
        fmt::format(" FROM {} WHERE ctid > $1::tid AND {} ORDER BY ctid LIMIT {} FOR UPDATE SKIP LOCKED",
                    table, where, batch_size_);
    std::string update = "UPDATE " + table + " SET ";
    for (size_t i = 0; i < columns.size(); ++i) {
      update += fmt::format("{}{} = ${}", i ? ", " : "", columns[i].first, i + 1);
    }
    update += fmt::format(" WHERE ctid = ${}::tid", columns.size() + 1);
    while (true) {
      RETURN_IF_ERROR(Exec("BEGIN"));
      const char* params[] = {last.c_str()};
      PgResult rows(PQexecParams(conn_, select.c_str(), 1, nullptr, params, nullptr, nullptr, 0));
      if (PQresultStatus(rows.get()) != PGRES_TUPLES_OK) {
        return Status::Permanent(fmt::format("select {}: {}", what, PQerrorMessage(conn_)));
      }
      const int n = PQntuples(rows.get());
      for (int r = 0; r < n; ++r) {
        std::vector<std::string> values;
        bool ok = true;
        for (size_t c = 0; c < columns.size() && ok; ++c) {
          std::string value = PQgetvalue(rows.get(), r, static_cast<int>(c + 1));
          ok = Remask(value, columns[c].second);
          values.push_back(std::move(value));
        }
        if (!ok) {
          ++skipped;  // its error was reported once; the value stays as it is
          continue;
        }
        std::vector<const char*> p;
        for (const std::string& v : values) p.push_back(v.c_str());
        p.push_back(PQgetvalue(rows.get(), r, 0));
        PgResult res(PQexecParams(conn_, update.c_str(), static_cast<int>(p.size()), nullptr, p.data(),
                                  nullptr, nullptr, 0));
        if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
          return Status::Permanent(fmt::format("update {}: {}", what, PQerrorMessage(conn_)));
        }
        ++done;
      }
      if (n > 0) last = PQgetvalue(rows.get(), n - 1, 0);
      RETURN_IF_ERROR(Exec("COMMIT"));
      if (pause_.count() > 0) std::this_thread::sleep_for(pause_);
      if (isatty(STDERR_FILENO))
        std::cerr << fmt::format("\r\033[K{}: {} re-masked", what, done) << std::flush;
      if (n < batch_size_) break;
    }
    if (isatty(STDERR_FILENO)) std::cerr << "\r\033[K";
    if (skipped > 0)
      std::cerr << fmt::format("sqs2pg: {}: {} values could not be unmasked and were left\n", what, skipped);
    return done;
  }

 private:
  // Unmask, then mask in the active mode. False (reported, without the value) if it cannot be unmasked.
  bool Remask(std::string& value, const std::optional<MaskField>& field) {
    auto plain = masker_.Unmask(value);
    if (!plain.ok()) {
      if (reported_ < 5) std::cerr << "sqs2pg: " << plain.status().message() << "\n";
      ++reported_;
      return false;
    }
    Status st = field ? masker_.MaskValueInto(*field, *plain, value) : masker_.MaskInto(*plain, value);
    if (!st.ok()) {
      std::cerr << "sqs2pg: " << st.message() << "\n";
      return false;
    }
    return true;
  }

  PGconn* conn_;
  transform::Masker& masker_;
  int batch_size_;
  int reported_ = 0;
  // SQS2PG_REKEY_BATCH_PAUSE_MS (undocumented, for tests): a pause after each batch, so a test can
  // kill rekey between batches.
  std::chrono::milliseconds pause_{
      std::getenv("SQS2PG_REKEY_BATCH_PAUSE_MS") ? std::atoi(std::getenv("SQS2PG_REKEY_BATCH_PAUSE_MS")) : 0};
};

// "key 1a2b3c4d: 12, address values: 87" for one text column.
Result<std::string> CountByKey(PGconn* conn, const std::string& table, const std::string& column,
                               const std::string& where) {
  std::string sql = fmt::format(
      "SELECT CASE WHEN {0}::text ~ '^[0-9a-f]{{8}}[.]' THEN 'key ' || split_part({0}::text, '.', 1) ELSE "
      "'address values' END, count(*) FROM {1} WHERE {2} GROUP BY 1 ORDER BY 1",
      column, table, where);
  PgResult res(PQexec(conn, sql.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return Status::Permanent(PQerrorMessage(conn));
  std::string out;
  for (int i = 0; i < PQntuples(res.get()); ++i) {
    out += fmt::format("{}{}: {}", i ? ", " : "", PQgetvalue(res.get(), i, 0), PQgetvalue(res.get(), i, 1));
  }
  return out.empty() ? "none" : out;
}

int Rekey(const RekeyOptions& o) {
  auto keyring = LoadKeyring(o.key_file);
  if (!keyring.ok()) return Fail(keyring.status());
  auto masker = transform::Masker::Create(*keyring, ToMaskerOptions(o.modes));
  if (!masker.ok()) return Fail(masker.status());
  PgConn conn(PQconnectdb(o.db.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Fail(Status::Permanent(fmt::format("cannot connect to Postgres: {}", PQerrorMessage(conn.get()))));
  }
  const std::string rows_table = QuotedTable(conn.get(), o.table, "");
  const std::string rejects_table = QuotedTable(conn.get(), o.table, "_rejects");
  const std::string ip_need =
      NeedsRekey("masked_ip::text", masker->mode(MaskField::kIp), masker->key_id(MaskField::kIp));
  const std::string device_need = NeedsRekey("masked_device_id", masker->mode(MaskField::kDeviceId),
                                             masker->key_id(MaskField::kDeviceId));
  const std::string body_need =
      "body_encrypted AND " + NeedsRekey("body", MaskMode::kSiv, masker->active_key_id());

  Rekeyer rekeyer(conn.get(), *masker, o.batch_size);
  // Only the columns that need it are rewritten; the other is left alone even in a selected row.
  auto rows_done = rekeyer.Run(rows_table, {{"masked_ip", MaskField::kIp}}, ip_need, o.table + " masked_ip");
  if (!rows_done.ok()) return Fail(rows_done.status());
  auto devices_done = rekeyer.Run(rows_table, {{"masked_device_id", MaskField::kDeviceId}}, device_need,
                                  o.table + " masked_device_id");
  if (!devices_done.ok()) return Fail(devices_done.status());
  auto bodies_done =
      rekeyer.Run(rejects_table, {{"body", std::nullopt}}, body_need, o.table + "_rejects body");
  if (!bodies_done.ok()) return Fail(bodies_done.status());

  std::cout << fmt::format("re-masked {} ips, {} device_ids, {} reject bodies", *rows_done, *devices_done,
                           *bodies_done)
            << "\n";
  // What each key still masks: a key that masks nothing any more can be retired.
  for (const auto& [column, table, where] :
       {std::tuple{std::string("masked_ip"), rows_table, std::string("true")},
        std::tuple{std::string("masked_device_id"), rows_table, std::string("true")},
        std::tuple{std::string("body"), rejects_table, std::string("body_encrypted")}}) {
    auto counts = CountByKey(conn.get(), table, column, where);
    if (!counts.ok()) return Fail(counts.status());
    std::cout << fmt::format("{}: {}", column, *counts) << "\n";
  }
  std::cout
      << fmt::format(
             "active: ip {} key {}, device_id {} key {}, bodies siv key {}. hmac values of other keys are "
             "one-way and cannot be re-masked; address values carry no key id (the keyring's field line "
             "says which key made them)",
             transform::ModeName(masker->mode(MaskField::kIp)), masker->key_id(MaskField::kIp),
             transform::ModeName(masker->mode(MaskField::kDeviceId)), masker->key_id(MaskField::kDeviceId),
             masker->active_key_id())
      << std::endl;
  return kExitOk;
}

}  // namespace

Command AddRekeyCommand(CLI::App& app) {
  auto o = std::make_shared<RekeyOptions>();
  CLI::App* cmd = app.add_subcommand(
      "rekey", "Re-mask stored rows and reject bodies from older keys or modes to the active ones (online)");
  AddOption(*cmd, "db", o->db);
  AddOption(*cmd, "table", o->table);
  AddKeyFileOption(*cmd, o->key_file);
  AddMaskModeOptions(*cmd, o->modes);
  AddOption(*cmd, "batch-size", o->batch_size)->check(CLI::Range(1, 100000));
  return {cmd, [o]() { return Rekey(*o); }};
}

}  // namespace sqs2pg::cli
