// `run --mapping` end to end (issue 18): the real sqs2pg binary, fauxqs and PostgreSQL, with the
// mappings in examples/. Typed rows, masked columns that unmask, rejects with reasons and no
// plaintext, the login mapping storing what the built-in login table stores, and a table that
// does not fit the mapping named column by column.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "harness.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Example(const std::string& name) { return std::string(SQS2PG_SOURCE_DIR) + "/examples/" + name; }

// NDJSON of `n` orders as examples/orders.toml reads them; message i's e-mail is user<i>@example.com
// and its address 198.51.<i>.<i % 7 + 1>. Orders 5, 6 and 7 are bad: a fractional amount, no id, a
// timestamp that is not RFC 3339.
std::string OrdersFile(int n) {
  std::string path = TestDir() + "/orders.jsonl";
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) {
    std::string id = fmt::format("\"id\": \"00000000-0000-4000-8000-{:012}\", ", i);
    std::string total = i == 5 ? "1.5" : std::to_string(1000 + i);
    std::string placed = i == 7 ? "yesterday" : "2026-12-05T01:02:03.456Z";
    // item_count as a string for every third order (from_string = true); currency absent for odd ones.
    std::string count = i % 3 == 0 ? fmt::format("\"{}\"", i % 5) : std::to_string(i % 5);
    std::string currency = i % 2 ? "" : "\"currency\": \"USD\", ";
    out << fmt::format(
        "{{{}\"status\": \"paid\", \"customer\": {{\"id\": \"c-{}\", \"email\": \"user{}@example.com\"}}, "
        "\"client\": {{\"ip\": \"198.51.{}.{}\"}}, \"total_cents\": {}, {}\"items\": [{{\"sku\": \"A-{}\", "
        "\"qty\": 2}}], \"item_count\": {}, \"placed_at\": \"{}\", \"gift\": {}}}\n",
        i == 6 ? "" : id, i, i, i, i % 7 + 1, total, currency, i, count, placed, i % 2 ? "true" : "false");
  }
  return path;
}

class MappedRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    queue_ = UniqueName("q");
    table_ = UniqueName("t");
    key_ = MakeKeyFile();
  }

  void Send(const std::string& file) {
    CommandResult sent = RunSqs2pg({"send", "--create-queue", "--queue", queue_, file});
    ASSERT_EQ(sent.exit_code, 0) << sent.err;
  }
  CommandResult Run(const std::string& mapping, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"run", "--queue",   queue_,  "--table",        table_, "--key-file",
                                     key_,  "--mapping", mapping, "--wait-seconds", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunSqs2pg(args);
  }
  // Every text of the rejects table, for checks that no plaintext is in it.
  std::string RejectsText() {
    std::string all;
    for (const auto& row : db_.Rows(fmt::format("SELECT t::text FROM \"{}_rejects\" t", table_)))
      all += *row[0];
    return all;
  }

  std::string queue_, table_, key_;
  Db db_;
};

TEST_F(MappedRunTest, OrdersLoadAsTypedRowsWithMaskedColumnsThatUnmaskAndRejectsWithReasons) {
  // examples/orders.toml masks client_ip with cryptopan: the keyring needs such a key.
  CommandResult rotated = RunSqs2pg({"keygen", "--out", key_, "--rotate", "--ip-mask", "cryptopan"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  Send(OrdersFile(40));
  CommandResult r = Run(Example("orders.toml"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("received 40, loaded 37, duplicates skipped 0, rejected 3, deleted 40"));

  // Typed as the mapping says.
  EXPECT_EQ(
      db_.Scalar(fmt::format("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                             "'\"{}\"'::regclass AND attname = 'total_cents'",
                             table_)),
      "bigint");
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT sum(total_cents) FROM \"{}\"", table_)),
            std::to_string(40 * 1000 + 39 * 40 / 2 - (1005 + 1006 + 1007)));
  auto row = db_.Rows(
      fmt::format("SELECT order_id::text, customer_id, currency, item_count, items->0->>'sku', placed_at = "
                  "'2026-12-05T01:02:03.456Z', gift, sent_at > now() - interval '1 hour', customer_email, "
                  "host(client_ip), "
                  "client_ip_key_id FROM \"{}\" WHERE customer_id = 'c-9'",
                  table_));
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(*row[0][0], "00000000-0000-4000-8000-000000000009");
  EXPECT_EQ(*row[0][2], "EUR");  // absent: the mapping's default
  EXPECT_EQ(*row[0][3], "4");    // "4" from a string, from_string = true
  EXPECT_EQ(*row[0][4], "A-9");
  EXPECT_EQ(*row[0][5], "t");
  EXPECT_EQ(*row[0][6], "t");
  EXPECT_EQ(*row[0][7], "t");
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT currency FROM \"{}\" WHERE customer_id = 'c-8'", table_)), "USD");

  // The e-mail is masked, and only the key recovers it, bound to its column.
  const std::string email = *row[0][8];
  EXPECT_THAT(email, Not(HasSubstr("@")));
  CommandResult plain = RunSqs2pg({"unmask", "--key-file", key_, "--column", "customer_email", email});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.out, "user9@example.com\n");
  CommandResult wrong_column = RunSqs2pg({"unmask", "--key-file", key_, "--column", "customer_id", email});
  EXPECT_NE(wrong_column.exit_code, 0);
  // mask --column finds the row from the plaintext, as an analyst looks one up.
  CommandResult masked = RunSqs2pg({"mask", "--key-file", key_, "--mapping", Example("orders.toml"),
                                    "--column", "customer_email", "user9@example.com"});
  ASSERT_EQ(masked.exit_code, 0) << masked.err;
  EXPECT_EQ(masked.out, email + "\n");

  // The address stays an address (cryptopan), not the real one; its key id is in the row.
  const std::string ip = *row[0][9], key_id = *row[0][10];
  EXPECT_NE(ip, "198.51.9.3");
  CommandResult guessed = RunSqs2pg({"unmask", "--key-file", key_, "--column", "client_ip", ip});
  EXPECT_NE(guessed.exit_code, 0);
  EXPECT_THAT(guessed.err, HasSubstr("--address-key-id"));
  CommandResult address =
      RunSqs2pg({"unmask", "--key-file", key_, "--column", "client_ip", "--address-key-id", key_id, ip});
  ASSERT_EQ(address.exit_code, 0) << address.err;
  EXPECT_EQ(address.out, "198.51.9.3\n");

  // Rejects name the column and the rule; no value, and no plaintext anywhere in the table.
  std::set<std::string> reasons;
  for (const auto& reject : db_.Rows(fmt::format("SELECT reason FROM \"{}_rejects\"", table_)))
    reasons.insert(*reject[0]);
  EXPECT_EQ(reasons,
            (std::set<std::string>{
                "column total_cents must be a whole number", "missing column order_id",
                "column placed_at is not an RFC 3339 timestamp (YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm))"}));
  std::string rejects = RejectsText();
  EXPECT_THAT(rejects, Not(HasSubstr("example.com")));
  EXPECT_THAT(rejects, Not(HasSubstr("198.51.")));
}

// keygen --column gives one mapped column a key of its own: it masks that column only (not reject
// bodies, not other columns), and rotates alone, the older values still unmasking.
TEST_F(MappedRunTest, AColumnsOwnKeyMasksItAndRotatesAlone) {
  ASSERT_EQ(RunSqs2pg({"keygen", "--out", key_, "--rotate", "--ip-mask", "cryptopan"}).exit_code, 0);
  auto column_key = [&]() {
    CommandResult r =
        RunSqs2pg({"keygen", "--out", key_, "--rotate", "--column", "customer_email", "--mode", "siv"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    size_t at = r.out.find("column customer_email siv key ");
    EXPECT_NE(at, std::string::npos) << r.out;
    return at == std::string::npos ? std::string() : r.out.substr(at + 30, 8);
  };
  const std::string first = column_key();
  Send(OrdersFile(5));
  ASSERT_EQ(Run(Example("orders.toml")).exit_code, 0);
  const std::string second = column_key();
  ASSERT_NE(first, second);
  Send(OrdersFile(5));
  ASSERT_EQ(Run(Example("orders.toml")).exit_code, 0);
  auto with_key = [&](const std::string& id) {
    return db_.Scalar(
        fmt::format("SELECT count(*) FROM \"{}\" WHERE customer_email LIKE '{}.%'", table_, id));
  };
  EXPECT_EQ(with_key(first), "5");
  EXPECT_EQ(with_key(second), "5");
  for (const std::string& id : {first, second}) {
    std::string value = db_.Scalar(
        fmt::format("SELECT min(customer_email) FROM \"{}\" WHERE customer_email LIKE '{}.%'", table_, id));
    CommandResult plain = RunSqs2pg({"unmask", "--key-file", key_, "--column", "customer_email", value});
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    EXPECT_THAT(plain.out, HasSubstr("@example.com"));
  }
  // The keyring records it; a mapping asking another mode for the column is refused at start.
  std::ifstream in(key_);
  std::string keys((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(keys, HasSubstr("sqs2pg-column customer_email " + second + " " + first + "\n"));
  std::string hmac_mapping = TestDir() + "/hmac.toml";
  std::ofstream(hmac_mapping) << "[[column]]\nname = \"customer_email\"\nfrom = \"/customer/email\"\ntype = "
                                 "\"text\"\nmask = \"hmac\"\n";
  CommandResult refused = RunSqs2pg({"run", "--queue", queue_, "--table", UniqueName("th"), "--key-file",
                                     key_, "--mapping", hmac_mapping, "--wait-seconds", "1"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("keygen --rotate --column customer_email --mode hmac"));
}

// rekey --mapping moves every masked column of a mapped table to the key its mapping gets now, and
// the reject bodies to the active key. An address is re-masked only when its row says which key
// made it: one whose <column>_key_id is NULL is left until --address-key-id names its key.
TEST_F(MappedRunTest, RekeyMovesMappedColumnsToTheirNewKeysAndNeverGuessesAnAddressKey) {
  auto keygen = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"keygen", "--out", key_, "--rotate"};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = RunSqs2pg(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  };
  keygen({"--ip-mask", "cryptopan"});
  Send(OrdersFile(10));  // orders 5, 6 and 7 are rejects
  ASSERT_EQ(Run(Example("orders.toml")).exit_code, 0);
  const std::string old_siv =
      db_.Scalar(fmt::format("SELECT min(left(customer_email, 8)) FROM \"{}\"", table_));
  const std::string old_pan = db_.Scalar(fmt::format("SELECT min(client_ip_key_id) FROM \"{}\"", table_));
  const std::string unlabelled = db_.Scalar(fmt::format(
      "UPDATE \"{0}\" SET client_ip_key_id = NULL WHERE customer_id = 'c-0' RETURNING host(client_ip)",
      table_));
  keygen({});                          // a new active siv key: the e-mails' and the bodies'
  keygen({"--ip-mask", "cryptopan"});  // a new cryptopan key: the addresses'

  std::vector<std::string> rekey = {
      "rekey", "--table", table_, "--key-file", key_, "--mapping", Example("orders.toml")};
  CommandResult r = RunSqs2pg(rekey);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string new_pan = db_.Scalar(fmt::format(
      "SELECT min(client_ip_key_id) FROM \"{}\" WHERE client_ip_key_id <> '{}'", table_, old_pan));
  ASSERT_FALSE(new_pan.empty());
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT count(*) FROM \"{}\" WHERE left(customer_email, 8) = '{}'", table_,
                                   old_siv)),
            "0");
  EXPECT_EQ(
      db_.Scalar(fmt::format("SELECT count(*) FROM \"{}\" WHERE client_ip_key_id = '{}'", table_, new_pan)),
      "6");
  // The row whose key is not known is left exactly as it was.
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT host(client_ip) FROM \"{}\" WHERE customer_id = 'c-0'", table_)),
            unlabelled);
  // Every re-masked value still says what it was.
  std::string email =
      db_.Scalar(fmt::format("SELECT customer_email FROM \"{}\" WHERE customer_id = 'c-9'", table_));
  std::string ip =
      db_.Scalar(fmt::format("SELECT host(client_ip) FROM \"{}\" WHERE customer_id = 'c-9'", table_));
  EXPECT_EQ(RunSqs2pg({"unmask", "--key-file", key_, "--column", "customer_email", email}).out,
            "user9@example.com\n");
  EXPECT_EQ(
      RunSqs2pg({"unmask", "--key-file", key_, "--column", "client_ip", "--address-key-id", new_pan, ip}).out,
      "198.51.9.3\n");
  // Reject bodies follow the active siv key.
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT count(*) FROM \"{}_rejects\" WHERE left(body, 8) = '{}'", table_,
                                   old_siv)),
            "0");
  EXPECT_EQ(db_.Count(table_ + "_rejects"), 3);

  // Naming the key of the unlabelled row lets rekey move it too.
  rekey.insert(rekey.end(), {"--address-key-id", old_pan});
  r = RunSqs2pg(rekey);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT client_ip_key_id FROM \"{}\" WHERE customer_id = 'c-0'", table_)),
            new_pan);
  ip = db_.Scalar(fmt::format("SELECT host(client_ip) FROM \"{}\" WHERE customer_id = 'c-0'", table_));
  EXPECT_EQ(
      RunSqs2pg({"unmask", "--key-file", key_, "--column", "client_ip", "--address-key-id", new_pan, ip}).out,
      "198.51.0.1\n");
}

// envelope = "auto" (examples/orders.toml): a raw order, one fanned out by SNS and one delivered
// by an EventBridge rule all load alike; an EventBridge event whose detail is not an object is a
// reject with the envelope's own reason.
TEST_F(MappedRunTest, AutoEnvelopeTakesRawSnsAndEventBridgeAlike) {
  ASSERT_EQ(RunSqs2pg({"keygen", "--out", key_, "--rotate", "--ip-mask", "cryptopan"}).exit_code, 0);
  auto order = [](int i) {
    return fmt::format(
        R"({{"id": "00000000-0000-4000-8000-{:012}", "status": "paid", "customer": {{"id": "c-{}"}}, )"
        R"("total_cents": 100, "placed_at": "2026-12-05T01:02:03Z"}})",
        i, i);
  };
  std::string escaped = order(2);
  for (size_t at = 0; (at = escaped.find('"', at)) != std::string::npos; at += 2) escaped.insert(at, "\\");
  std::string path = TestDir() + "/envelopes.jsonl";
  std::ofstream(path)
      << order(1) << "\n"
      << R"({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-1:1:t", )"
      << R"("Message": ")" << escaped << "\"}\n"
      << R"({"version": "0", "id": "e", "detail-type": "OrderPlaced", "source": "shop", "detail": )"
      << order(3) << "}\n"
      << R"({"version": "0", "id": "e", "detail-type": "OrderPlaced", "source": "shop", "detail": 7})"
      << "\n";
  Send(path);
  CommandResult r = Run(Example("orders.toml"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("received 4, loaded 3, duplicates skipped 0, rejected 1"));
  EXPECT_EQ(
      db_.Scalar(fmt::format("SELECT string_agg(customer_id, ',' ORDER BY customer_id) FROM \"{}\"", table_)),
      "c-1,c-2,c-3");
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT reason FROM \"{}_rejects\"", table_)),
            "EventBridge envelope: detail is a number, expected a JSON object");
}

TEST_F(MappedRunTest, SnsNotificationsAreUnwrappedAndTheirAttributesRead) {
  std::string path = TestDir() + "/signups.jsonl";
  {
    std::ofstream out(path);
    for (int i = 0; i < 10; ++i) {
      std::string event = fmt::format(
          R"({{\"user\":{{\"id\":\"u-{}\",\"email\":\"u{}@example.com\"}},\"plan\":\"pro\",\"at\":1764896523,\"ref\":\"r{}\"}})",
          i, i, i);
      out << fmt::format(
                 R"({{"Type": "Notification", "MessageId": "00000000-0000-4000-8000-00000000000{}", "TopicArn": )"
                 R"("arn:aws:sns:eu-west-1:123456789012:signups", "Message": "{}", "Timestamp": "2026-12-05T01:02:03.456Z", )"
                 R"("MessageAttributes": {{"tenant": {{"Type": "String", "Value": "acme"}}}}}})",
                 i, event)
          << "\n";
    }
    // A raw event, not a notification: envelope = "sns" refuses it with a reason of its own.
    out << R"({"user": {"id": "u-raw", "email": "raw@example.com"}, "at": 1764896523})"
        << "\n";
  }
  Send(path);
  // email_hash is masked with hmac: the keyring needs such a key, and says so until it has one.
  CommandResult r = Run(Example("sns-fanout.toml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("sns-fanout.toml:32: column email_hash: the keyring has no hmac key"));
  CommandResult rotated = RunSqs2pg({"keygen", "--out", key_, "--rotate", "--device-id-mask", "hmac"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.err;
  r = Run(Example("sns-fanout.toml"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("received 11, loaded 10, duplicates skipped 0, rejected 1, deleted 11"));
  auto rows =
      db_.Rows(fmt::format("SELECT tenant, plan, signed_up_at = to_timestamp(1764896523), extra->>'ref', "
                           "\"user\"->>'id', email_hash "
                           "FROM \"{}\" WHERE user_id = 'u-3'",
                           table_));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(*rows[0][0], "acme");
  EXPECT_EQ(*rows[0][1], "pro");
  EXPECT_EQ(*rows[0][2], "t");
  EXPECT_EQ(*rows[0][3], "r3");  // unknown_fields = "keep": the rest of the event, in extra
  EXPECT_EQ(*rows[0][4], "u-3");
  EXPECT_THAT(*rows[0][5], Not(HasSubstr("@")));  // hmac: one-way
  auto reason = db_.Rows(fmt::format("SELECT reason FROM \"{}_rejects\"", table_));
  ASSERT_EQ(reason.size(), 1u);
  EXPECT_THAT(*reason[0][0], HasSubstr("SNS"));
  EXPECT_THAT(RejectsText(), Not(HasSubstr("raw@example.com")));
}

// The sender's SQS message attributes are $attribute.NAME (SQS sends them only when asked: run
// asks when a column reads one), over both protocols, against moto.
TEST_F(MappedRunTest, SqsMessageAttributesAreReadOverJsonAndQuery) {
  std::string mapping = TestDir() + "/tenants.toml";
  std::ofstream(mapping) << "envelope = \"none\"\n"
                            "[[column]]\nname = \"tenant\"\nfrom = \"$attribute.tenant\"\ntype = \"text\"\n"
                            "required = true\n"
                            "[[column]]\nname = \"who\"\nfrom = \"/user_id\"\ntype = \"text\"\n";
  const std::string endpoint = StackVar("MOTO_ENDPOINT_URL");
  for (std::string protocol : {"json", "query"}) {
    SCOPED_TRACE(protocol);
    const std::string queue = UniqueName("q" + protocol), table = UniqueName("t" + protocol);
    CommandResult sent =
        RunSqs2pg({"send", "--sqs-protocol", protocol, "--endpoint-url", endpoint, "--create-queue",
                   "--queue", queue, "--attribute", "tenant=acme,source=import", SampleDataPath()});
    ASSERT_EQ(sent.exit_code, 0) << sent.err;
    CommandResult r =
        RunSqs2pg({"run", "--sqs-protocol", protocol, "--endpoint-url", endpoint, "--queue", queue, "--table",
                   table, "--key-file", key_, "--mapping", mapping, "--wait-seconds", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // Not "received 100": moto's ReceiveMessage is not atomic under concurrent receives and now and
    // then hands one message to two of them (received 101, duplicates skipped 1), whatever
    // sqs2pg's revision; each is still loaded once and deleted.
    EXPECT_THAT(r.out, HasSubstr(" loaded 100,"));
    EXPECT_THAT(r.out, HasSubstr(" rejected 0, deleted 100,"));
    EXPECT_EQ(db_.Count(table), 100);
    EXPECT_EQ(db_.Scalar(fmt::format("SELECT string_agg(DISTINCT tenant, ',') FROM \"{}\"", table)), "acme");
  }
  // Without the attribute, the required column says so.
  CommandResult sent = RunSqs2pg({"send", "--create-queue", "--queue", queue_, SampleDataPath()});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  CommandResult r = Run(mapping);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("received 100, loaded 0, duplicates skipped 0, rejected 100"));
  EXPECT_THAT(db_.Scalar(fmt::format("SELECT min(reason) FROM \"{}_rejects\"", table_)), HasSubstr("tenant"));
}

// examples/logins.toml is the built-in login table said as a mapping: the same sample, the same
// key, two queues, two tables; every stored value must be the same.
TEST_F(MappedRunTest, TheLoginMappingStoresWhatTheBuiltInLoginTableStores) {
  Send(SampleDataPath());
  CommandResult mapped = Run(Example("logins.toml"));
  ASSERT_EQ(mapped.exit_code, 0) << mapped.err;
  const std::string builtin_queue = UniqueName("qb"), builtin_table = UniqueName("tb");
  CommandResult sent = RunSqs2pg({"send", "--create-queue", "--queue", builtin_queue, SampleDataPath()});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  CommandResult builtin = RunSqs2pg(
      {"run", "--queue", builtin_queue, "--table", builtin_table, "--key-file", key_, "--wait-seconds", "1"});
  ASSERT_EQ(builtin.exit_code, 0) << builtin.err;
  const char* kRows =
      "SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date::text, "
      "masked_ip_key_id FROM \"{}\" ORDER BY 1, 2, 3, 4, 5, 6";
  auto a = db_.Rows(fmt::format(fmt::runtime(kRows), table_)),
       b = db_.Rows(fmt::format(fmt::runtime(kRows), builtin_table));
  EXPECT_EQ(a.size(), 99u);
  EXPECT_EQ(a, b);
  const char* kRejects =
      "SELECT reason, body_bytes, body_shape, body_encrypted FROM \"{}_rejects\" ORDER BY 1";
  EXPECT_EQ(db_.Rows(fmt::format(fmt::runtime(kRejects), table_)),
            db_.Rows(fmt::format(fmt::runtime(kRejects), builtin_table)));
  // And the mapped run loads into the login table the built-in run made: it fits.
  ASSERT_EQ(RunSqs2pg({"send", "--queue", builtin_queue, SampleDataPath()}).exit_code, 0);
  CommandResult into_builtin =
      RunSqs2pg({"run", "--queue", builtin_queue, "--table", builtin_table, "--key-file", key_, "--mapping",
                 Example("logins.toml"), "--wait-seconds", "1"});
  ASSERT_EQ(into_builtin.exit_code, 0) << into_builtin.err;
  EXPECT_EQ(db_.Count(builtin_table), 198);
}

TEST_F(MappedRunTest, ATableThatDoesNotFitIsNamedColumnByColumnWithExit2) {
  db_.Exec(fmt::format(
      "CREATE TABLE \"{}\" (order_id uuid, status integer, customer_id text, customer_email text, client_ip "
      "inet, "
      "total_cents bigint, currency varchar(3), item_count integer, items text, placed_at timestamptz, gift "
      "boolean, sent_at timestamptz, client_ip_key_id text)",
      table_));
  ASSERT_EQ(RunSqs2pg({"keygen", "--out", key_, "--rotate", "--ip-mask", "cryptopan"}).exit_code, 0);
  Send(OrdersFile(3));
  CommandResult r = Run(Example("orders.toml"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("column status is integer where the mapping"));
  EXPECT_THAT(r.err, HasSubstr("says varchar(16)"));
  EXPECT_THAT(r.err, HasSubstr("column items is text where the mapping"));
  EXPECT_EQ(db_.Count(table_), 0);
  // A missing column is named too.
  db_.Exec(fmt::format("DROP TABLE \"{0}\"; CREATE TABLE \"{0}\" (order_id uuid)", table_));
  r = Run(Example("orders.toml"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("lacks the mapping's columns status, customer_id"));
}

TEST_F(MappedRunTest, SchemaPrintsTheMappingsTablesAndARunLoadsIntoThem) {
  CommandResult ddl = RunSqs2pg({"schema", "--mapping", Example("sns-fanout.toml"), "--table", table_});
  ASSERT_EQ(ddl.exit_code, 0) << ddl.err;
  EXPECT_THAT(ddl.out, HasSubstr("\"signed_up_at\" timestamptz"));
  EXPECT_THAT(ddl.out, HasSubstr("sqs2pg: from /user/email, masked (hmac)"));
  db_.Exec(ddl.out);
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT col_description('\"{}\"'::regclass, 2)", table_)),
            "sqs2pg: from $attribute.tenant");
}

}  // namespace
}  // namespace sqs2pg::integration
