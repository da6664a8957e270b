// Issue 8, end to end against real fauxqs and PostgreSQL: no plaintext PII anywhere for any
// input, dry runs that change nothing, and a least-privilege role that can run the ETL.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "harness.h"
#include "transform/keyring.h"
#include "transform/masker.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string QueueUrl(const std::string& queue) {
  auto url = FauxqsClient()->GetQueueUrl(queue);
  EXPECT_TRUE(url.ok()) << url.status().message();
  return url.ok() ? *url : "";
}

// ApproximateNumberOfMessages and ...NotVisible.
std::pair<long, long> QueueDepth(const std::string& url) {
  auto attrs = FauxqsClient()->GetQueueAttributes(
      url, {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"});
  EXPECT_TRUE(attrs.ok()) << attrs.status().message();
  if (!attrs.ok()) return {-1, -1};
  return {std::stol((*attrs)["ApproximateNumberOfMessages"]),
          std::stol((*attrs)["ApproximateNumberOfMessagesNotVisible"])};
}

void SendBodies(const std::string& url, const std::vector<std::string>& bodies) {
  auto client = FauxqsClient();
  std::vector<sqs::SendEntry> batch;
  size_t batch_bytes = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    auto failed = client->SendMessageBatch(url, batch);
    ASSERT_TRUE(failed.ok()) << failed.status().message();
    for (const auto& f : *failed)
      ADD_FAILURE() << "entry " << f.id << " not sent: " << f.code << " " << f.message;
    batch.clear();
    batch_bytes = 0;
  };
  for (size_t i = 0; i < bodies.size(); ++i) {
    // A batch may carry as much as one message; big bodies go alone.
    if (batch.size() == 10 || batch_bytes + bodies[i].size() > 200'000) flush();
    batch.push_back({fmt::format("e{}", i), bodies[i]});
    batch_bytes += bodies[i].size();
  }
  flush();
}

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = TestDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// psql as the stack's superuser, stopping at the first error.
CommandResult Psql(const std::string& file) {
  LoadStackEnvironment();
  return RunShell(fmt::format("psql -X -q -v ON_ERROR_STOP=1 -f '{}'", file));
}

std::string PgDump() {
  std::string dump = TestDir() + "/dump.sql";
  CommandResult r = RunShell(fmt::format(
      "\"$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_dump\" --no-owner -f '{}'", dump));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(dump);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One adversarial message: its body, what must become of it ("row", a substring of the reject
// reason, or "*" for either), and the plaintext PII planted in it that must never be stored.
struct Case {
  std::string name;
  std::string body;
  std::string expect;
  std::vector<std::string> planted;
};

std::string Login(const std::string& user, const std::string& ip, const std::string& device,
                  const std::string& extra = "") {
  return fmt::format(R"({{"user_id":"{}","ip":"{}","device_id":"{}"{}}})", user, ip, device, extra);
}

std::vector<Case> AdversarialCorpus(const std::string& table) {
  std::vector<Case> c;
  // What was seen (issue 8).
  c.push_back({"PII under other member names",
               R"({"user_id":"u1","IP":"203.0.113.77","deviceId":"SECRET-DEV-1"})",
               "missing field ip",
               {"203.0.113.77", "SECRET-DEV-1"}});
  c.push_back({"NUL inside ip",
               Login("u2", R"(198.51.100.16\u0000x)", "PLANT-DEV-002"),
               "field ip contains U+0000",
               {"198.51.100.16", "PLANT-DEV-002"}});
  c.push_back({"IPv4-mapped IPv6",
               Login("u3", "::ffff:198.51.100.17", "PLANT-DEV-003"),
               "row",
               {"198.51.100.17", "PLANT-DEV-003"}});
  c.push_back({"the same IPv4", Login("u4", "198.51.100.17", "PLANT-DEV-004"), "row", {"PLANT-DEV-004"}});
  c.push_back({"NUL inside device_id",
               Login("u5", "203.0.113.5", R"(PLANT-DEV-005\u0000)"),
               "field device_id contains U+0000",
               {"203.0.113.5", "PLANT-DEV-005"}});
  // SQL injection, and COPY's own escapes.
  c.push_back({"SQL injection in user_id and device_id",
               Login(fmt::format("x'); DROP TABLE {}; --", table), "203.0.113.6",
                     "PLANT-DEV-006'); DROP TABLE users;--"),
               "row",
               {"203.0.113.6", "PLANT-DEV-006"}});
  c.push_back({"SQL injection in ip",
               Login("u7", "203.0.113.7' OR '1'='1", "PLANT-DEV-007"),
               "field ip is not a valid IPv4 or IPv6 address",
               {"203.0.113.7", "PLANT-DEV-007"}});
  c.push_back({"COPY escapes in values",
               Login(R"(u8\t\\N\\.\n)", "203.0.113.8", R"(PLANT-DEV-008\\N\t)"),
               "row",
               {"203.0.113.8", "PLANT-DEV-008"}});
  // Size.
  {
    std::string body = Login("u9", "203.0.113.9", "PLANT-DEV-009", R"(,"pad":")");
    body += std::string(256 * 1024 - body.size() - 2, 'a') + "\"}";
    c.push_back({"256 KiB valid body", body, "row", {"203.0.113.9", "PLANT-DEV-009"}});
    std::string text = "PLANT-DEV-010 203.0.113.10 ";
    text += std::string(256 * 1024 - text.size(), 'x');
    c.push_back({"256 KiB of not JSON", text, "body is not valid JSON", {"203.0.113.10", "PLANT-DEV-010"}});
  }
  // Depth, numbers, escapes, BOM.
  c.push_back({"arrays nested 10,000 deep",
               Login("u11", "203.0.113.11", "PLANT-DEV-011",
                     ",\"n\":" + std::string(10'000, '[') + std::string(10'000, ']')),
               "body is not valid JSON",
               {"203.0.113.11", "PLANT-DEV-011"}});
  {
    std::string deep;
    for (int i = 0; i < 10'000; ++i) deep += R"({"a":)";
    deep += Login("u12", "203.0.113.12", "PLANT-DEV-012") + std::string(10'000, '}');
    c.push_back(
        {"objects nested 10,000 deep", deep, "body is not valid JSON", {"203.0.113.12", "PLANT-DEV-012"}});
  }
  c.push_back({"number beyond double",
               Login("u13", "203.0.113.13", "PLANT-DEV-013", R"(,"n":1e999999)"),
               "body is not valid JSON",
               {"203.0.113.13", "PLANT-DEV-013"}});
  c.push_back({"integer beyond 64 bits",
               Login("u14", "203.0.113.14", "PLANT-DEV-014", R"(,"n":123456789012345678901234567890)"),
               "body is not valid JSON",
               {"203.0.113.14", "PLANT-DEV-014"}});
  c.push_back({"largest double",
               Login("u15", "203.0.113.15", "PLANT-DEV-015", R"(,"n":-1.7976931348623157e308)"),
               "row",
               {"203.0.113.15", "PLANT-DEV-015"}});
  c.push_back({"invalid escape",
               Login(R"(u16\x)", "203.0.113.16", "PLANT-DEV-016"),
               "body is not valid JSON",
               {"203.0.113.16", "PLANT-DEV-016"}});
  c.push_back({"lone surrogate escape",
               Login("u17", "203.0.113.17", R"(PLANT-DEV-017\ud800)"),
               "*",
               {"203.0.113.17", "PLANT-DEV-017"}});
  c.push_back({"unterminated string",
               R"({"user_id":"u18","ip":"203.0.113.18","device_id":"PLANT-DEV-018)",
               "body is not valid JSON",
               {"203.0.113.18", "PLANT-DEV-018"}});
  c.push_back({"UTF-8 byte order mark",
               "\xEF\xBB\xBF" + Login("u19", "203.0.113.19", "PLANT-DEV-019"),
               "*",
               {"203.0.113.19", "PLANT-DEV-019"}});
  c.push_back({"duplicate key",
               R"({"user_id":"u20","ip":"203.0.113.20","ip":"203.0.113.120","device_id":"PLANT-DEV-020"})",
               "field ip appears more than once",
               {"203.0.113.20", "203.0.113.120", "PLANT-DEV-020"}});
  // Not an object.
  c.push_back({"array body",
               "[" + Login("u21", "203.0.113.21", "PLANT-DEV-021") + "]",
               "body is an array, expected a JSON object",
               {"203.0.113.21", "PLANT-DEV-021"}});
  c.push_back({"string body",
               R"("203.0.113.22 PLANT-DEV-022")",
               "body is a string, expected a JSON object",
               {"203.0.113.22", "PLANT-DEV-022"}});
  c.push_back({"number body", "42", "body is a number, expected a JSON object", {}});
  c.push_back({"boolean body", "true", "body is a boolean, expected a JSON object", {}});
  c.push_back({"null body", "null", "body is null, expected a JSON object", {}});
  c.push_back({"whitespace body", "   ", "body is not valid JSON", {}});
  // PII as keys, and values too long.
  c.push_back({"PII as member names",
               R"({"user_id":"u23","203.0.113.23":"home","PLANT-DEV-023@example.org":1})",
               "missing field ip",
               {"203.0.113.23", "PLANT-DEV-023"}});
  c.push_back({"device_id too long to mask",
               Login("u24", "203.0.113.24", "PLANT-DEV-024" + std::string(200, 'd')),
               "field device_id is 213 bytes",
               {"203.0.113.24", "PLANT-DEV-024"}});
  c.push_back({"user_id too long",
               Login(std::string(129, 'u'), "203.0.113.25", "PLANT-DEV-025"),
               "field user_id is 129 characters",
               {"203.0.113.25", "PLANT-DEV-025"}});
  c.push_back({"control characters and IPv6",
               Login(R"(u26\n\t\r)", "2001:DB8::26", "PLANT-DEV-026"),
               "row",
               {"2001:DB8::26", "2001:db8::26", "PLANT-DEV-026"}});
  c.push_back({"non-ASCII device_id",
               Login("u27", "203.0.113.27", "PLANT-DEV-027-\u00e9\u65e5\u672c"),
               "row",
               {"203.0.113.27", "PLANT-DEV-027"}});
  // Every wrong type for every field.
  const std::map<std::string, std::string> wrong = {{"number", "7"},
                                                    {"fraction", "1.5"},
                                                    {"boolean", "true"},
                                                    {"null", "null"},
                                                    {"object", R"({"v":"203.0.113.99"})"},
                                                    {"array", R"(["203.0.113.98"])"}};
  int n = 0;
  for (std::string field : {"user_id", "ip", "device_id", "device_type", "locale", "app_version"}) {
    for (const auto& [type, json] : wrong) {
      ++n;
      std::string ip = fmt::format("203.0.113.{}", 130 + n), device = fmt::format("PLANT-DEV-{}", 100 + n);
      std::map<std::string, std::string> members = {
          {"user_id", "\"u\""}, {"ip", "\"" + ip + "\""}, {"device_id", "\"" + device + "\""}};
      members[field] = json;
      std::string body = "{";
      for (const auto& [k, v] : members)
        body += (body.size() > 1 ? "," : "") + fmt::format("\"{}\":{}", k, v);
      body += "}";
      bool optional = field == "device_type" || field == "locale" || field == "app_version";
      std::string expect = optional && type == "null" ? "row"
                           : optional       ? fmt::format("field {} must be a string or null", field)
                           : type == "null" ? fmt::format("field {} must be a string, got null", field)
                                            : fmt::format("field {} must be a string", field);
      c.push_back(
          {fmt::format("{} as {}", field, type), body, expect, {ip, device, "203.0.113.99", "203.0.113.98"}});
    }
  }
  return c;
}

class PrivacyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    queue_ = UniqueName("q");
    table_ = UniqueName("t");
    key_ = MakeKeyFile();
    CommandResult created = RunSqs2pg({"send", "--create-queue", "--queue", queue_, "/dev/null"});
    ASSERT_EQ(created.exit_code, 0) << created.err;
    queue_url_ = QueueUrl(queue_);
  }

  CommandResult Run(std::vector<std::string> extra = {}, const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> args = {"run", "--queue", queue_, "--table", table_, "--key-file", key_};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunSqs2pg(args, env);
  }

  // Sends the adversarial corpus, runs with the given --log-format, and checks every outcome and
  // that no planted value is stored or printed anywhere.
  void RunCorpus(const std::string& log_format);

  bool TableExists(const std::string& name) {
    return db_.Scalar(fmt::format("SELECT to_regclass('{}') IS NOT NULL", name)) == "t";
  }

  std::string queue_, queue_url_, table_, key_;
  Db db_;
};

// Every string of every JSON log line, decoded, one a line: escaping must not hide a value.
std::string DecodedJsonLog(const std::string& err) {
  std::string decoded;
  simdjson::dom::parser parser;
  std::istringstream lines(err);
  for (std::string line; std::getline(lines, line);) {
    simdjson::dom::object object;
    EXPECT_EQ(parser.parse(line).get(object), simdjson::SUCCESS) << "not a JSON object: " << line;
    for (auto [key, value] : object) {
      decoded += std::string(key) + "=";
      std::string_view text;
      if (value.get(text) == simdjson::SUCCESS) decoded += std::string(text);
      decoded += "\n";
    }
  }
  return decoded;
}

void PrivacyTest::RunCorpus(const std::string& log_format) {
  std::vector<Case> corpus = AdversarialCorpus(table_);
  std::vector<std::string> bodies;
  for (const Case& c : corpus) bodies.push_back(c.body);
  SendBodies(queue_url_, bodies);
  CommandResult r = RunSqs2pg({"--log-level", "debug", "--log-format", log_format, "run", "--queue", queue_,
                               "--table", table_, "--key-file", key_, "--batch-size", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("terminate")));

  // Every message is a row or a reject, once.
  long rows = db_.Count(table_), rejects = db_.Count(table_ + "_rejects");
  EXPECT_EQ(rows + rejects, static_cast<long>(corpus.size()));
  EXPECT_EQ(db_.Count(table_ + "_ledger"), static_cast<long>(corpus.size()));
  EXPECT_EQ(QueueDepth(queue_url_), std::make_pair(0L, 0L));

  // Each reject's body is the message, encrypted: recover it to learn which case it was.
  auto keyring = transform::Keyring::LoadFile(key_);
  ASSERT_TRUE(keyring.ok()) << keyring.status().message();
  auto masker = transform::Masker::Create(*keyring);
  ASSERT_TRUE(masker.ok());
  std::map<std::string, std::string> reason_of_body;
  for (const auto& row : db_.Rows(fmt::format(
           "SELECT reason, body, body_encrypted, body_bytes, body_shape FROM \"{}_rejects\"", table_))) {
    EXPECT_EQ(*row[2], "t");
    auto body = masker->Unmask(*row[1]);
    ASSERT_TRUE(body.ok()) << body.status().message();
    EXPECT_EQ(*row[3], std::to_string(body->size()));
    EXPECT_FALSE(row[4]->empty());
    reason_of_body[*body] = *row[0];
  }
  std::set<std::string> loaded_users;
  for (const auto& row : db_.Rows(fmt::format("SELECT user_id FROM \"{}\"", table_)))
    loaded_users.insert(*row[0]);

  std::string outcomes = "\n| case | outcome |\n|---|---|\n";
  for (const Case& c : corpus) {
    auto it = reason_of_body.find(c.body);
    std::string outcome = it == reason_of_body.end() ? "row" : "reject: " + it->second;
    outcomes += fmt::format("| {} | {} |\n", c.name, outcome);
    if (c.expect == "*") continue;
    if (c.expect == "row") {
      EXPECT_EQ(it, reason_of_body.end()) << c.name << " was rejected: " << it->second;
    } else {
      ASSERT_NE(it, reason_of_body.end()) << c.name << " was not rejected";
      EXPECT_THAT(it->second, HasSubstr(c.expect)) << c.name;
    }
  }
  std::cout << outcomes;  // the table in docs/reliability.md

  // ::ffff:198.51.100.17 and 198.51.100.17 mask the same.
  EXPECT_EQ(db_.Scalar(fmt::format(
                "SELECT count(DISTINCT masked_ip) FROM \"{}\" WHERE user_id IN ('u3', 'u4')", table_)),
            "1");
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT count(*) FROM \"{}\" WHERE user_id IN ('u3', 'u4')", table_)),
            "2");
  EXPECT_TRUE(TableExists("\"" + table_ + "\""));  // the injection strings were data, not SQL

  // Nothing stored and nothing printed (at debug level) holds a planted value.
  std::string everything = PgDump() + r.out + r.err;
  if (log_format == "json") everything += DecodedJsonLog(r.err);
  ASSERT_THAT(everything, HasSubstr(table_ + "_rejects"));
  size_t checked = 0;
  for (const Case& c : corpus) {
    for (const std::string& value : c.planted) {
      EXPECT_EQ(everything.find(value), std::string::npos)
          << c.name << ": " << value << " found in plaintext";
      ++checked;
    }
  }
  EXPECT_GT(checked, 100u);
}

TEST_F(PrivacyTest, AdversarialCorpusBecomesRowsAndRejectsWithNoPlaintextPiiAnywhere) { RunCorpus("text"); }

// The same corpus with JSON logs: every line parses, and no decoded string holds a planted value.
TEST_F(PrivacyTest, AdversarialCorpusLeavesNoPlaintextPiiInJsonLogs) { RunCorpus("json"); }

TEST_F(PrivacyTest, DryRunLeavesTheQueueAndTheDatabaseAsTheyWere) {
  CommandResult sent = RunSqs2pg({"send", "--queue", queue_, SampleDataPath()});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  // Ten of the messages are already in the ledger: a real run would skip them.
  auto peek = FauxqsClient()->ReceiveMessage(queue_url_, 10, 0, 0);
  ASSERT_TRUE(peek.ok()) << peek.status().message();
  ASSERT_EQ(peek->size(), 10u);
  ASSERT_EQ(Psql(WriteFile("schema.sql", RunSqs2pg({"schema", "--table", table_}).out)).exit_code, 0);
  std::vector<sqs::VisibilityEntry> back;
  for (const auto& m : *peek) back.push_back({fmt::format("v{}", back.size()), m.receipt_handle, 0});
  auto visible = FauxqsClient()->ChangeMessageVisibilityBatch(queue_url_, back);
  ASSERT_TRUE(visible.ok() && visible->empty());
  for (const auto& m : *peek) {
    // Keyed by SentTimestamp too, which a redelivery keeps.
    db_.Exec(
        fmt::format("INSERT INTO \"{}_ledger\" (message_id, sent_at, outcome) VALUES ('{}', timestamptz "
                    "'epoch' + {} * interval '1 millisecond', 'loaded')",
                    table_, m.message_id, m.sent_timestamp_ms));
  }
  ASSERT_EQ(QueueDepth(queue_url_), std::make_pair(100L, 0L));

  CommandResult r = Run({"--dry-run", "--batch-size", "7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("dry run: received 100; a real run would load"));
  EXPECT_THAT(r.out, HasSubstr("skip 10 as duplicates (duplicates per the ledger)"));
  EXPECT_THAT(r.out, HasSubstr("nothing was written or deleted, 100 messages made visible again"));
  EXPECT_THAT(r.out, HasSubstr("rejected: missing field user_id"));
  // Visible again at once, not after a visibility timeout; nothing deleted.
  EXPECT_EQ(QueueDepth(queue_url_), std::make_pair(100L, 0L));
  EXPECT_EQ(db_.Count(table_), 0);
  EXPECT_EQ(db_.Count(table_ + "_ledger"), 10);
  EXPECT_EQ(db_.Count(table_ + "_rejects"), 0);

  // The real run afterwards finds every message.
  CommandResult real = Run();
  ASSERT_EQ(real.exit_code, 0) << real.err;
  EXPECT_THAT(real.out, HasSubstr("received 100,"));
  EXPECT_THAT(real.out, HasSubstr("duplicates skipped 10"));
}

TEST_F(PrivacyTest, DryRunCreatesNoTableAndNeedsNoDatabase) {
  ASSERT_EQ(RunSqs2pg({"send", "--queue", queue_, SampleDataPath()}).exit_code, 0);
  CommandResult r = Run({"--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("a real run would load 99, reject 1, skip 0 as duplicates"));
  EXPECT_FALSE(TableExists("\"" + table_ + "\""));
  EXPECT_FALSE(TableExists("\"" + table_ + "_ledger\""));
  EXPECT_EQ(QueueDepth(queue_url_), std::make_pair(100L, 0L));

  CommandResult offline = Run({"--dry-run", "--db", "host=127.0.0.1 port=1 connect_timeout=2"});
  ASSERT_EQ(offline.exit_code, 0) << offline.err;
  EXPECT_THAT(offline.out, HasSubstr("duplicates not checked"));
  EXPECT_EQ(QueueDepth(queue_url_), std::make_pair(100L, 0L));

  EXPECT_EQ(Run({"--dry-run", "--follow"}).exit_code, 2);
}

TEST_F(PrivacyTest, DiscardMessagesIsHiddenAndDeletes) {
  CommandResult help = RunSqs2pg({"run", "--help"});
  EXPECT_THAT(help.out, HasSubstr("--dry-run"));
  EXPECT_THAT(help.out, Not(HasSubstr("discard")));
  ASSERT_EQ(RunSqs2pg({"send", "--queue", queue_, SampleDataPath()}).exit_code, 0);
  CommandResult r = Run({"--discard-messages"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("deleted 100"));
  EXPECT_EQ(QueueDepth(queue_url_), std::make_pair(0L, 0L));
  EXPECT_FALSE(TableExists("\"" + table_ + "\""));
}

// A DBA creates the tables from `sqs2pg schema`; sqs2pg then runs as a role that has SELECT and
// INSERT on them and nothing else: no CREATE on the schema, not the owner (so no COMMENT).
class LeastPrivilegeTest : public PrivacyTest {
 protected:
  void SetUp() override {
    PrivacyTest::SetUp();
    schema_ = UniqueName("s");
    role_ = UniqueName("r");
    qualified_ = schema_ + ".logins";
    db_.Exec(fmt::format("CREATE SCHEMA \"{}\"", schema_));
    db_.Exec(fmt::format("DROP ROLE IF EXISTS \"{}\"", role_));
    db_.Exec(fmt::format("CREATE ROLE \"{}\" LOGIN", role_));
    ASSERT_EQ(RunSqs2pg({"send", "--queue", queue_, SampleDataPath()}).exit_code, 0);
  }
  void TearDown() override {
    db_.Exec(fmt::format("DROP SCHEMA \"{}\" CASCADE", schema_));
    db_.Exec(fmt::format("REVOKE ALL ON DATABASE \"{}\" FROM \"{}\"", StackVar("PGDATABASE"), role_));
    db_.Exec(fmt::format("DROP ROLE \"{}\"", role_));
  }
  CommandResult RunAsRole(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"run", "--queue", queue_, "--table", qualified_, "--key-file", key_};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunSqs2pg(args, {{"PGUSER", role_}});
  }
  CommandResult ApplySchema() {
    CommandResult schema = RunSqs2pg({"schema", "--table", qualified_, "--role", role_});
    EXPECT_EQ(schema.exit_code, 0) << schema.err;
    return Psql(WriteFile("schema.sql", schema.out));
  }
  std::string Table(const std::string& suffix = "") {
    return fmt::format("\"{}\".\"logins{}\"", schema_, suffix);
  }

  std::string schema_, role_, qualified_;
};

TEST_F(LeastPrivilegeTest, RunsWithOnlyTheGrantsSqs2pgSchemaPrints) {
  CommandResult applied = ApplySchema();
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  ASSERT_EQ(ApplySchema().exit_code, 0) << "applying it again changes nothing";
  // The role really is least-privileged.
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT has_schema_privilege('{}', '{}', 'CREATE')", role_, schema_)),
            "f");
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT pg_has_role('{}', relowner, 'USAGE') FROM pg_class WHERE oid = "
                                   "'{}'::regclass",
                                   role_, Table("_rejects"))),
            "f");
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT has_table_privilege('{}', '{}', 'DELETE')", role_, Table())), "f");

  CommandResult r = RunAsRole({"--db-connections", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("received 100, loaded 99, duplicates skipped 0, rejected 1, deleted 100"));
  EXPECT_EQ(db_.Count(schema_ + "\".\"logins"), 99);
  auto reject = db_.Rows(
      fmt::format("SELECT reason, body_encrypted, body_bytes, body_shape FROM {}", Table("_rejects")));
  ASSERT_EQ(reject.size(), 1u);
  EXPECT_EQ(*reject[0][0], "missing field user_id");
  EXPECT_EQ(*reject[0][1], "t");
  EXPECT_EQ(*reject[0][3], R"({"foo":"string","bar":"string"})");
  EXPECT_THAT(db_.Scalar(fmt::format("SELECT obj_description('{}'::regclass)", Table("_rejects"))),
              HasSubstr("encrypted"));
}

TEST_F(LeastPrivilegeTest, AMissingGrantIsNamedWithItsTable) {
  ASSERT_EQ(ApplySchema().exit_code, 0);
  db_.Exec(fmt::format("REVOKE INSERT ON {} FROM \"{}\"", Table("_rejects"), role_));
  CommandResult r = RunAsRole();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(fmt::format("role {} lacks INSERT on table {}", role_, Table("_rejects"))));
  EXPECT_THAT(r.err, HasSubstr("sqs2pg schema --table " + qualified_));
  EXPECT_EQ(QueueDepth(queue_url_), std::make_pair(100L, 0L)) << "nothing received before the check";
}

TEST_F(LeastPrivilegeTest, NoTablesAndNoCreateRightIsAClearErrorWithoutRawSql) {
  db_.Exec(fmt::format("GRANT USAGE ON SCHEMA \"{}\" TO \"{}\"", schema_, role_));
  CommandResult r = RunAsRole();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(fmt::format("create table {}", Table())));
  EXPECT_THAT(r.err, HasSubstr("permission denied for schema"));
  EXPECT_THAT(r.err, HasSubstr("SQLSTATE 42501"));
  EXPECT_THAT(r.err, HasSubstr("sqs2pg schema --table " + qualified_ + " --role " + role_));
  EXPECT_THAT(r.err, Not(HasSubstr("BEGIN;")));
  EXPECT_THAT(r.err, Not(HasSubstr("CREATE TABLE")));
}

// Rejects tables made before body_bytes/body_shape existed: the role may not ALTER them, so the
// size and shape go into the reason, with one warning; the owner's next run adds the columns.
TEST_F(LeastPrivilegeTest, AnOldRejectsTableStillTakesRejectsAndTheOwnerMigratesIt) {
  ASSERT_EQ(ApplySchema().exit_code, 0);
  db_.Exec(fmt::format("ALTER TABLE {} DROP COLUMN body_bytes, DROP COLUMN body_shape", Table("_rejects")));
  CommandResult r = RunAsRole({"--db-connections", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("rejected 1"));
  size_t warnings = 0;
  for (size_t at = r.err.find("shows the migration"); at != std::string::npos;
       at = r.err.find("shows the migration", at + 1))
    ++warnings;
  EXPECT_EQ(warnings, 1u);
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT reason FROM {}", Table("_rejects"))),
            R"(missing field user_id (body 41 bytes, shape {"foo":"string","bar":"string"}))");

  ASSERT_EQ(RunSqs2pg({"send", "--queue", queue_, SampleDataPath()}).exit_code, 0);
  CommandResult owner = RunSqs2pg({"run", "--queue", queue_, "--table", qualified_, "--key-file", key_});
  ASSERT_EQ(owner.exit_code, 0) << owner.err;
  EXPECT_EQ(
      db_.Scalar(fmt::format("SELECT count(*) FROM {} WHERE body_shape IS NOT NULL", Table("_rejects"))),
      "1");
}

// Under a role that only loads, nothing makes the ledger's day partitions or drops expired ones:
// `sqs2pg maintain`, run by the owner (a daily job), does. The role's rows then land in their day's
// partition, not in the default one, which is never pruned.
TEST_F(LeastPrivilegeTest, MaintainAsTheOwnerKeepsTheLedgerPartitioned) {
  ASSERT_EQ(ApplySchema().exit_code, 0);
  CommandResult refused = RunSqs2pg({"maintain", "--table", qualified_}, {{"PGUSER", role_}});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr(fmt::format("role {} does not own {}", role_, Table("_ledger"))));
  // An expired day, as an earlier run would have left it.
  db_.Exec(
      fmt::format("CREATE TABLE \"{}\".\"logins_ledger_20200101\" PARTITION OF {} FOR VALUES FROM "
                  "('2020-01-01 00:00:00+00') "
                  "TO ('2020-01-02 00:00:00+00')",
                  schema_, Table("_ledger")));
  const std::string days_sql = fmt::format(
      "SELECT count(*) FROM pg_inherits WHERE inhparent = '{}'::regclass AND inhrelid::regclass::text ~ "
      "'_[0-9]{{8}}$'",
      Table("_ledger"));
  ASSERT_EQ(db_.Scalar(days_sql), "1");

  CommandResult owner = RunSqs2pg({"maintain", "--table", qualified_, "--message-retention", "345600"});
  ASSERT_EQ(owner.exit_code, 0) << owner.err;
  EXPECT_THAT(owner.out, HasSubstr("1 dropped"));
  EXPECT_EQ(
      db_.Scalar(fmt::format("SELECT to_regclass('\"{}\".\"logins_ledger_20200101\"') IS NULL", schema_)),
      "t");
  // 4 days' retention plus a day's margin, today, and 3 days ahead.
  const long days = std::stol(db_.Scalar(days_sql));
  EXPECT_GE(days, 8);
  EXPECT_LE(days, 10);
  EXPECT_THAT(owner.out, HasSubstr(fmt::format("{} partitions created", days)));
  CommandResult again = RunSqs2pg({"maintain", "--table", qualified_, "--message-retention", "345600"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("0 partitions created, 0 dropped"));

  CommandResult r = RunAsRole();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("loaded 99"));
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT count(*) FROM {}", Table("_ledger"))), "100");
  EXPECT_EQ(db_.Scalar(fmt::format("SELECT count(*) FROM {}", Table("_ledger_default"))), "0");
}

}  // namespace
}  // namespace sqs2pg::integration
