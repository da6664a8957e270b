// sqs2pg rekey: re-masks stored values (rows and reject bodies) from older keys or modes to the
// keyring's active ones, online, in small transactions.
//
// Each batch is one transaction: SELECT ... FOR UPDATE SKIP LOCKED picks rows whose values are not
// yet in the active form, they are unmasked and masked again in this process, and UPDATEd by ctid.
// A running consumer only inserts rows (already in the active form), so the two never wait on each
// other. Which rows need work is read from the values themselves (the key id and format in front),
// so a rerun after a kill simply carries on: committed batches are done, the rest is found again.
// A bare address (ipcrypt-*, cryptopan) has no key id in it: the row's masked_ip_key_id says which
// key made it, and rows written before that column existed are attributed to --address-key-id or
// to the keyring's only address-valued ip key. Without the column (a role that may not add it), a
// rotation between two address-valued keys is not re-masked. hmac values are one-way and stay as
// they are (reported).

#include <fmt/format.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "sink/postgres/pg_handles.h"
#include "transform/ip_address.h"
#include "transform/mapping/mapping.h"
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
  bool table_given = false;
  std::string mapping;  // a mapped table: its masked columns are re-masked instead of the login ones
  std::string key_file;
  MaskModeOptions modes;
  int batch_size = 500;
  std::string address_key_id;
};

std::string SqlIdentifier(PGconn* conn, const std::string& name) {
  char* q = PQescapeIdentifier(conn, name.c_str(), name.size());
  std::string out = q ? q : "\"\"";
  PQfreemem(q);
  return out;
}

// "schema.table" or "table", each part quoted; `suffix` goes on the table name.
std::string QuotedTable(PGconn* conn, const std::string& table, const std::string& suffix) {
  size_t dot = table.find('.');
  if (dot == std::string::npos) return SqlIdentifier(conn, table + suffix);
  return SqlIdentifier(conn, table.substr(0, dot)) + "." +
         SqlIdentifier(conn, table.substr(dot + 1) + suffix);
}

// The masked_ip column as the table has it.
struct IpColumn {
  bool is_inet = false;     // an inet column (address-valued modes only)
  bool has_key_id = false;  // masked_ip_key_id exists: which key made each bare address
};

Result<IpColumn> ReadIpColumn(PGconn* conn, const std::string& table) {
  const char* params[] = {table.c_str()};
  PgResult res(PQexecParams(conn,
                            "SELECT bool_or(attname = 'masked_ip' AND atttypid = 'inet'::regtype), "
                            "bool_or(attname = 'masked_ip_key_id') FROM pg_attribute "
                            "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
                            1, nullptr, params, nullptr, nullptr, 0));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    return Status::Permanent(fmt::format("read the columns of {}: {}", table, PQerrorMessage(conn)));
  }
  return IpColumn{std::string_view(PQgetvalue(res.get(), 0, 0)) == "t",
                  std::string_view(PQgetvalue(res.get(), 0, 1)) == "t"};
}

// SQL true when the text `value` is not yet in the active form of `mode` under key `id`.
// hmac values under other keys are never selected: nothing can re-mask them. `address_needs`:
// SQL true when a bare address (a value with no key id in front) needs re-masking.
std::string NeedsRekey(const std::string& value, MaskMode mode, const std::string& id,
                       const std::string& address_needs) {
  const std::string keyed = fmt::format("{} ~ '^[0-9a-f]{{8}}[.]'", value);
  const std::string not_hmac = fmt::format("{} NOT LIKE '________.hmac.%'", value);
  if (transform::AddressValued(mode)) {
    return fmt::format("(({} AND {}) OR (NOT {} AND {}))", keyed, not_hmac, keyed, address_needs);
  }
  const std::string tag = mode == MaskMode::kHmac ? "hmac" : "v2";
  return fmt::format("({} NOT LIKE '{}.{}.%' AND {} AND ({} OR {}))", value, id, tag, not_hmac, keyed,
                     address_needs);
}

// One column to re-mask.
struct Pass {
  std::string table;               // quoted
  std::string column;              // the column updated
  std::string read;                // SQL reading it as masked text (host() of an inet)
  std::optional<MaskField> field;  // nullopt: a reject body
  // "" or masked_ip_key_id: read with the value (the key of a bare address) and set to `new_key_id`.
  std::string key_id_column{};
  std::string new_key_id{};
  std::string unlabelled_key{};  // the key of a bare address whose key_id_column is NULL ("": unknown)
  std::string where;             // the rows that need it
  std::string what;              // for messages
  // A mapped column (rekey --mapping): masked with this key, bound to `bound`; `address`: its
  // values are addresses (masked in binary form).
  std::optional<transform::Masker::ColumnKey> column_key{};
  std::string bound{};
  bool address = false;
};

// The reject bodies of `table` (sealed with siv), to the active siv key.
Pass BodyPass(const std::string& rejects_table, const transform::Masker& masker, const std::string& table) {
  return Pass{
      .table = rejects_table,
      .column = "body",
      .read = "body",
      .field = std::nullopt,
      .where = "body_encrypted AND " + NeedsRekey("body", MaskMode::kSiv, masker.active_key_id(), "true"),
      .what = table + "_rejects body"};
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

  // Re-masks pass.column where pass.where holds, batch by batch in (tableoid, ctid) order: a
  // partitioned table's partitions each number their rows from (0,1), so a ctid alone names a row
  // only together with its partition. Returns how many rows changed.
  Result<long> Run(const Pass& pass) {
    long done = 0, skipped = 0;
    std::string last_table = "0", last_row = "(0,0)";
    const bool keyed_column = !pass.key_id_column.empty();
    const std::string select = fmt::format(
        "SELECT tableoid, ctid, {read}, {key} FROM {table}"
        " WHERE (tableoid > $1::oid OR (tableoid = $1::oid AND ctid > $2::tid)) AND {where}"
        " ORDER BY tableoid, ctid LIMIT {limit} FOR UPDATE SKIP LOCKED",
        fmt::arg("read", pass.read), fmt::arg("key", keyed_column ? pass.key_id_column : "NULL::text"),
        fmt::arg("table", pass.table), fmt::arg("where", pass.where), fmt::arg("limit", batch_size_));
    const std::string update =
        keyed_column
            ? fmt::format("UPDATE {} SET {} = $1, {} = $2 WHERE tableoid = $3::oid AND ctid = $4::tid",
                          pass.table, pass.column, pass.key_id_column)
            : fmt::format("UPDATE {} SET {} = $1 WHERE tableoid = $2::oid AND ctid = $3::tid", pass.table,
                          pass.column);
    while (true) {
      RETURN_IF_ERROR(Exec("BEGIN"));
      const char* params[] = {last_table.c_str(), last_row.c_str()};
      PgResult rows(PQexecParams(conn_, select.c_str(), 2, nullptr, params, nullptr, nullptr, 0));
      if (PQresultStatus(rows.get()) != PGRES_TUPLES_OK) {
        return Status::Permanent(fmt::format("select {}: {}", pass.what, PQerrorMessage(conn_)));
      }
      const int n = PQntuples(rows.get());
      for (int r = 0; r < n; ++r) {
        std::string value = PQgetvalue(rows.get(), r, 2);
        const std::string address_key =
            PQgetisnull(rows.get(), r, 3) ? pass.unlabelled_key : PQgetvalue(rows.get(), r, 3);
        if (!Remask(value, pass, address_key)) {
          ++skipped;  // its error was reported once; the value stays as it is
          continue;
        }
        std::vector<const char*> p = {value.c_str()};
        if (keyed_column) p.push_back(pass.new_key_id.c_str());
        p.push_back(PQgetvalue(rows.get(), r, 0));
        p.push_back(PQgetvalue(rows.get(), r, 1));
        PgResult res(PQexecParams(conn_, update.c_str(), static_cast<int>(p.size()), nullptr, p.data(),
                                  nullptr, nullptr, 0));
        if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
          return Status::Permanent(fmt::format("update {}: {}", pass.what, PQerrorMessage(conn_)));
        }
        ++done;
      }
      if (n > 0) {
        last_table = PQgetvalue(rows.get(), n - 1, 0);
        last_row = PQgetvalue(rows.get(), n - 1, 1);
      }
      RETURN_IF_ERROR(Exec("COMMIT"));
      if (pause_.count() > 0) std::this_thread::sleep_for(pause_);
      if (isatty(STDERR_FILENO))
        std::cerr << fmt::format("\r\033[K{}: {} re-masked", pass.what, done) << std::flush;
      if (n < batch_size_) break;
    }
    if (isatty(STDERR_FILENO)) std::cerr << "\r\033[K";
    if (skipped > 0) {
      std::cerr << fmt::format("sqs2pg: {}: {} values could not be unmasked and were left\n", pass.what,
                               skipped);
    }
    return done;
  }

 private:
  // Unmask, then mask in the active mode. False (reported, without the value) if it cannot be unmasked.
  bool Remask(std::string& value, const Pass& pass, const std::string& address_key) {
    const bool bare_address = transform::ParseIp(value).has_value();
    // A mapped column's siv values are bound to its name; addresses carry their key in the row.
    auto plain = pass.column_key && !bare_address ? masker_.UnmaskColumn(value, pass.bound)
                                                  : masker_.Unmask(value, address_key);
    if (!plain.ok()) {
      if (reported_ < 5) std::cerr << "sqs2pg: " << plain.status().message() << "\n";
      ++reported_;
      return false;
    }
    Status st;
    if (pass.column_key) {
      value.clear();
      std::optional<transform::IpAddress> ip = pass.address ? transform::ParseIp(*plain) : std::nullopt;
      st = ip ? masker_.MaskColumnIpInto(*pass.column_key, pass.bound, *ip, value)
              : masker_.MaskColumnInto(*pass.column_key, pass.bound, *plain, value);
    } else {
      st = pass.field ? masker_.MaskValueInto(*pass.field, *plain, value) : masker_.MaskInto(*plain, value);
    }
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

// "key 1a2b3c4d: 12, key 5e6f7a8b (addresses): 87" for one column; `label`, if not empty, is the
// SQL of a bare address's key id.
Result<std::string> CountByKey(PGconn* conn, const std::string& table, const std::string& value,
                               const std::string& label, const std::string& where) {
  const std::string address =
      label.empty()
          ? std::string("'addresses (key in the keyring''s field line)'")
          : fmt::format("coalesce('key ' || {} || ' (addresses)', 'addresses with no key id')", label);
  std::string sql = fmt::format(
      "SELECT CASE WHEN {0} ~ '^[0-9a-f]{{8}}[.]' THEN 'key ' || split_part({0}, '.', 1) ELSE {1} END, "
      "count(*) FROM {2} WHERE {3} GROUP BY 1 ORDER BY 1",
      value, address, table, where);
  PgResult res(PQexec(conn, sql.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return Status::Permanent(PQerrorMessage(conn));
  std::string out;
  for (int i = 0; i < PQntuples(res.get()); ++i) {
    out += fmt::format("{}{}: {}", i ? ", " : "", PQgetvalue(res.get(), i, 0), PQgetvalue(res.get(), i, 1));
  }
  return out.empty() ? "none" : out;
}

std::string SqlLiteral(PGconn* conn, const std::string& text) {
  char* q = PQescapeLiteral(conn, text.c_str(), text.size());
  std::string out = q ? q : "''";
  PQfreemem(q);
  return out;
}

int RekeyMapped(const RekeyOptions& o);

int Rekey(RekeyOptions o) {
  if (!o.mapping.empty()) return RekeyMapped(o);
  auto keyring = LoadKeyring(o.key_file);
  if (!keyring.ok()) return Fail(keyring.status());
  auto masker = transform::Masker::Create(*keyring, ToMaskerOptions(o.modes));
  if (!masker.ok()) return Fail(masker.status());
  const MaskMode ip_mode = masker->mode(MaskField::kIp);
  const std::string ip_key = masker->key_id(MaskField::kIp);
  // Bare addresses with no recorded key: the named key, or the keyring's only address-valued one.
  const std::vector<std::string> address_keys = masker->address_key_ids();
  std::string unlabelled_key = o.address_key_id;
  if (!unlabelled_key.empty() &&
      std::find(address_keys.begin(), address_keys.end(), unlabelled_key) == address_keys.end()) {
    return Fail(Status::InvalidInput(
        fmt::format("--address-key-id {}: not an address-valued ip key of this keyring", unlabelled_key)));
  }
  if (unlabelled_key.empty() && address_keys.size() == 1) unlabelled_key = address_keys.front();

  PgConn conn(PQconnectdb(o.db.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Fail(Status::Permanent(fmt::format("cannot connect to Postgres: {}", PQerrorMessage(conn.get()))));
  }
  const std::string rows_table = QuotedTable(conn.get(), o.table, "");
  const std::string rejects_table = QuotedTable(conn.get(), o.table, "_rejects");
  auto ip_column = ReadIpColumn(conn.get(), rows_table);
  if (!ip_column.ok()) return Fail(ip_column.status());
  if (ip_column->is_inet && !transform::AddressValued(ip_mode)) {
    return Fail(Status::InvalidInput(fmt::format(
        "{}.masked_ip is inet, and {} values are not addresses: rekey it to an address-valued ip mode "
        "(--ip-mask ipcrypt-deterministic, ipcrypt-pfx or cryptopan)",
        o.table, transform::ModeName(ip_mode))));
  }
  const std::string ip_value = ip_column->is_inet ? "host(masked_ip)" : "masked_ip::text";
  // Issue 17 item 12: no guessed keys. Without masked_ip_key_id, a bare address says nothing of the
  // key that made it; with several address-valued keys in the keyring, decrypting with the wrong
  // one would write a plausible wrong address, for good. Refuse before touching any row.
  if (!ip_column->has_key_id && o.address_key_id.empty() && address_keys.size() > 1) {
    PgResult bare(PQexec(conn.get(), fmt::format("SELECT count(*) FROM {} WHERE masked_ip IS NOT NULL AND "
                                                 "NOT ({} ~ '^[0-9a-f]{{8}}[.]')",
                                                 rows_table, ip_value)
                                         .c_str()));
    if (PQresultStatus(bare.get()) != PGRES_TUPLES_OK) {
      return Fail(Status::Permanent(
          fmt::format("count the bare addresses of {}: {}", o.table, PQerrorMessage(conn.get()))));
    }
    const std::string count = PQgetvalue(bare.get(), 0, 0);
    if (count != "0") {
      std::string ids;
      for (const std::string& id : address_keys) ids += (ids.empty() ? "" : ", ") + id;
      return Fail(Status::InvalidInput(fmt::format(
          "{} has no masked_ip_key_id column and the keyring holds {} address-valued ip keys ({}): which of "
          "them made each of its {} bare addresses is not known, and a wrong key would write a plausible "
          "wrong address for good. Nothing was changed. Name the key that made them all with "
          "--address-key-id ID, or add the column first (`sqs2pg schema --table {}` shows it) and load "
          "under it",
          o.table, address_keys.size(), ids, count, o.table)));
    }
  }
  // Which bare addresses to re-mask. With masked_ip_key_id: those of another key (into an address
  // mode) or all (into siv or hmac), each only if its key is known. Without it, a bare address's
  // key cannot be told from the active key's: none into an address mode, all (by the keyring's
  // field line) into siv or hmac.
  std::string address_needs;
  if (ip_column->has_key_id) {
    const std::string known = unlabelled_key.empty() ? "masked_ip_key_id IS NOT NULL" : "true";
    address_needs = transform::AddressValued(ip_mode)
                        ? fmt::format("masked_ip_key_id IS DISTINCT FROM {} AND {}",
                                      SqlLiteral(conn.get(), ip_key), known)
                        : known;
  } else {
    address_needs = transform::AddressValued(ip_mode) ? "false" : "true";
  }

  Rekeyer rekeyer(conn.get(), *masker, o.batch_size);
  // Only the column that needs it is rewritten; the other is left alone even in a selected row.
  const Pass ip_pass{.table = rows_table,
                     .column = "masked_ip",
                     .read = ip_value,
                     .field = MaskField::kIp,
                     .key_id_column = ip_column->has_key_id ? "masked_ip_key_id" : "",
                     .new_key_id = ip_key,
                     .unlabelled_key = unlabelled_key,
                     .where = NeedsRekey(ip_value, ip_mode, ip_key, address_needs),
                     .what = o.table + " masked_ip"};
  auto rows_done = rekeyer.Run(ip_pass);
  if (!rows_done.ok()) return Fail(rows_done.status());
  const Pass device_pass{.table = rows_table,
                         .column = "masked_device_id",
                         .read = "masked_device_id",
                         .field = MaskField::kDeviceId,
                         .where = NeedsRekey("masked_device_id", masker->mode(MaskField::kDeviceId),
                                             masker->key_id(MaskField::kDeviceId), "true"),
                         .what = o.table + " masked_device_id"};
  auto devices_done = rekeyer.Run(device_pass);
  if (!devices_done.ok()) return Fail(devices_done.status());
  auto bodies_done = rekeyer.Run(BodyPass(rejects_table, *masker, o.table));
  if (!bodies_done.ok()) return Fail(bodies_done.status());

  std::cout << fmt::format("re-masked {} ips, {} device_ids, {} reject bodies", *rows_done, *devices_done,
                           *bodies_done)
            << "\n";
  // What each key still masks: a key that masks nothing any more can be retired.
  for (const auto& [column, table, value, label, where] :
       {std::tuple{std::string("masked_ip"), rows_table, ip_value,
                   std::string(ip_column->has_key_id ? "masked_ip_key_id" : ""), std::string("true")},
        std::tuple{std::string("masked_device_id"), rows_table, std::string("masked_device_id"),
                   std::string(), std::string("true")},
        std::tuple{std::string("body"), rejects_table, std::string("body"), std::string(),
                   std::string("body_encrypted")}}) {
    auto counts = CountByKey(conn.get(), table, value, label, where);
    if (!counts.ok()) return Fail(counts.status());
    std::cout << fmt::format("{}: {}", column, *counts) << "\n";
  }
  std::cout << fmt::format("active: ip {} key {}, device_id {} key {}, bodies siv key {}.",
                           transform::ModeName(ip_mode), ip_key,
                           transform::ModeName(masker->mode(MaskField::kDeviceId)),
                           masker->key_id(MaskField::kDeviceId), masker->active_key_id());
  std::cout << " hmac values of other keys are one-way and cannot be re-masked.";
  if (!ip_column->has_key_id) {
    std::cout << fmt::format(
        " {} has no masked_ip_key_id column, so addresses of an older address-valued key cannot be told "
        "from the active key's and are not re-masked (`sqs2pg schema --table {}` shows the migration).",
        o.table, o.table);
  } else if (unlabelled_key.empty()) {
    std::cout << " Addresses with no key id were left: the keyring lists several address-valued ip keys; "
                 "name the one that made them with --address-key-id.";
  }
  std::cout << std::endl;
  return kExitOk;
}

// rekey --mapping: each masked column of a mapped table, to the key and mode the mapping and the
// keyring give it now (as `run` masks new rows), and the rejects' bodies. An address column is
// re-masked only where its <column>_key_id says which key made the value (--address-key-id names
// the key of rows whose key id is NULL): a key is never guessed, since decrypting an address with
// the wrong key gives a plausible wrong address.
int RekeyMapped(const RekeyOptions& o) {
  auto mapping = transform::mapping::LoadMappingFile(o.mapping);
  if (!mapping.ok()) return Fail(mapping.status());
  const std::string table = o.table_given || mapping->table.empty() ? o.table : mapping->table;
  auto keyring = LoadKeyring(o.key_file);
  if (!keyring.ok()) return Fail(keyring.status());
  auto masker = transform::Masker::Create(*keyring, ToMaskerOptions(o.modes));
  if (!masker.ok()) return Fail(masker.status());
  PgConn conn(PQconnectdb(o.db.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Fail(Status::Permanent(fmt::format("cannot connect to Postgres: {}", PQerrorMessage(conn.get()))));
  }
  const std::string rows_table = QuotedTable(conn.get(), table, "");
  Rekeyer rekeyer(conn.get(), *masker, o.batch_size);
  std::string summary;
  for (const transform::mapping::ColumnSpec& c : mapping->columns) {
    if (!c.mask) continue;
    const std::string bound = c.mask_field.empty() ? c.name : c.mask_field;
    auto key = masker->KeyForColumn(bound, c.mask->mode);
    if (!key.ok())
      return Fail(key.status().Annotate(fmt::format("{}:{}: column {}", mapping->origin, c.line, c.name)));
    const bool address = c.type.kind == transform::mapping::TypeKind::kInet ||
                         c.input.value_or(c.type).kind == transform::mapping::TypeKind::kInet;
    const std::string column = SqlIdentifier(conn.get(), c.name);
    const std::string key_id_column = c.key_id_column ? SqlIdentifier(conn.get(), c.name + "_key_id") : "";
    const std::string read = c.type.kind == transform::mapping::TypeKind::kInet
                                 ? fmt::format("host({})", column)
                                 : column + "::text";
    // Which bare addresses need it: those whose recorded key is another one (or NULL, with
    // --address-key-id). Without a key id column, none: their key cannot be known.
    std::string address_needs = "false";
    if (address && !key_id_column.empty()) {
      address_needs =
          fmt::format("{} IS DISTINCT FROM {}{}", key_id_column, SqlLiteral(conn.get(), key->id()),
                      o.address_key_id.empty() ? fmt::format(" AND {} IS NOT NULL", key_id_column) : "");
    } else if (address) {
      std::cerr << fmt::format(
          "sqs2pg: {}.{} has no {}_key_id column (key_id_column = true): which key made each address "
          "cannot be known, so its addresses are left as they are\n",
          table, c.name, c.name);
    }
    Pass pass{.table = rows_table,
              .column = column,
              .read = read,
              .field = std::nullopt,
              .key_id_column = key_id_column,
              .new_key_id = key->id(),
              .unlabelled_key = o.address_key_id,
              .where = NeedsRekey(read, key->mode(), key->id(), address_needs),
              .what = table + " " + c.name,
              .column_key = *key,
              .bound = bound,
              .address = address};
    auto done = rekeyer.Run(pass);
    if (!done.ok()) return Fail(done.status());
    auto counts = CountByKey(conn.get(), rows_table, read, key_id_column, "true");
    if (!counts.ok()) return Fail(counts.status());
    summary += fmt::format("{}: re-masked {}; now {}\n", c.name, *done, *counts);
  }
  const std::string rejects_table = QuotedTable(conn.get(), table, "_rejects");
  auto bodies = rekeyer.Run(BodyPass(rejects_table, *masker, table));
  if (!bodies.ok()) return Fail(bodies.status());
  std::cout << summary << fmt::format("reject bodies: re-masked {}", *bodies) << std::endl;
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
  AddOption(*cmd, "address-key-id", o->address_key_id);
  AddOption(*cmd, "mapping", o->mapping);
  return {cmd, [o, cmd]() {
            o->table_given = cmd->get_option("--table")->count() > 0;
            return Rekey(*o);
          }};
}

}  // namespace sqs2pg::cli
