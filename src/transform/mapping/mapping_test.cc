// Loading a mapping: the issue's format is read exactly, and every mistake is refused at load with
// the file and line that holds it.

#include "transform/mapping/mapping.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sqs2pg::transform::mapping {
namespace {

using ::testing::HasSubstr;

// The issue's own example, verbatim.
constexpr char kIssueExample[] = R"(table = "orders"
envelope = "auto"
unknown_fields = "ignore"

[[column]]
name = "order_id"
from = "/id"
type = "uuid"
required = true

[[column]]
name = "customer_email"
from = "/customer/email"
type = "text"
max_length = 254
mask = "siv"

[[column]]
name = "client_ip"
from = "/client/ip"
type = "inet"
mask = "cryptopan"

[[column]]
name = "total_cents"
from = "/total_cents"
type = "bigint"

[[column]]
name = "placed_at"
from = "/placed_at"
type = "timestamptz"
format = "rfc3339"

[[column]]
name = "items"
from = "/items"
type = "jsonb"

[[column]]
name = "sent_at"
from = "$sent_timestamp"
type = "timestamptz"

[[column]]
name = "channel"
from = "/channel"
type = "text"
default = "web"
)";

std::string Error(std::string_view text) {
  auto m = ParseMapping(text, "m.toml");
  EXPECT_FALSE(m.ok());
  return m.ok() ? "" : m.status().message();
}

// A one-column mapping with `extra` lines added to the column (line 4 on).
std::string ColumnError(std::string_view extra) {
  return Error(std::string("[[column]]\nname = \"c\"\nfrom = \"/c\"\n") + std::string(extra));
}

TEST(MappingTest, ReadsTheIssueExample) {
  auto m = ParseMapping(kIssueExample, "orders.toml");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->table, "orders");
  EXPECT_EQ(m->envelope, Envelope::kAuto);
  ASSERT_EQ(m->columns.size(), 8u);
  EXPECT_EQ(m->columns[1].from.tokens, (std::vector<std::string>{"customer", "email"}));
  EXPECT_EQ(m->columns[1].max_length, 254u);
  EXPECT_EQ(m->columns[1].mask->mode, MaskMode::kSiv);
  EXPECT_EQ(m->columns[1].label, "column customer_email");
  EXPECT_EQ(m->columns[2].mask->mode, MaskMode::kCryptoPan);
  EXPECT_EQ(m->columns[6].from.kind, SourceKind::kSentTimestamp);
  EXPECT_EQ(m->columns[7].default_json, "\"web\"");
  EXPECT_EQ(m->columns[0].line, 5);
}

TEST(MappingTest, PointersFollowRfc6901) {
  auto s = ParseSource("/a~1b/m~0n/0/");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->tokens, (std::vector<std::string>{"a/b", "m~n", "0", ""}));
  EXPECT_TRUE(ParseSource("").ok());
  EXPECT_TRUE(ParseSource("$attribute.tenant-id").ok());
  EXPECT_FALSE(ParseSource("a/b").ok());
  EXPECT_FALSE(ParseSource("/a~2").ok());
  EXPECT_FALSE(ParseSource("/a~").ok());
  EXPECT_FALSE(ParseSource("$sent").ok());
  EXPECT_FALSE(ParseSource("$attribute.").ok());
}

TEST(MappingTest, TypesAreTheIssueSet) {
  for (std::string_view t : {"text", "varchar(1)", "smallint", "integer", "bigint", "numeric",
                             "double precision", "boolean", "date", "timestamptz", "uuid", "inet", "jsonb"}) {
    auto parsed = ParseColumnType(t);
    ASSERT_TRUE(parsed) << t;
    EXPECT_EQ(ColumnTypeName(*parsed), t);
  }
  for (std::string_view t :
       {"varchar", "varchar(0)", "varchar(01)", "varchar(x)", "int", "json", "TEXT", "float"}) {
    EXPECT_FALSE(ParseColumnType(t)) << t;
  }
}

TEST(MappingTest, ErrorsNameFileAndLine) {
  EXPECT_THAT(Error("table = \"t\"\ncolour = 1\n[[column]]\nname=\"a\"\nfrom=\"/a\"\ntype=\"text\"\n"),
              HasSubstr("m.toml:2: unknown key 'colour'"));
  EXPECT_THAT(ColumnError("type = \"text\"\nmask_mode = \"siv\"\n"),
              HasSubstr("m.toml:5: column c: unknown key 'mask_mode'"));
  EXPECT_THAT(ColumnError("type = \"texts\"\n"), HasSubstr("m.toml:4: column c: type must be one of"));
  EXPECT_THAT(Error("[[column]]\nname = \"c\"\nfrom = \"c\"\ntype = \"text\"\n"),
              HasSubstr("m.toml:3: column c: from:"));
  EXPECT_THAT(Error("[[column]]\nname = \"c\"\nfrom = \"/c\"\ntype = \"text\"\n[[column]]\nname = "
                    "\"C\"\nfrom = \"/d\"\ntype = \"text\"\n"),
              HasSubstr("m.toml:5: two columns are named C"));
  EXPECT_THAT(Error("x = [\n"), HasSubstr("m.toml:"));
  EXPECT_THAT(Error("table = \"t\"\n"), HasSubstr("no [[column]]"));
  EXPECT_THAT(Error("[[column]]\nfrom = \"/c\"\ntype = \"text\"\n"),
              HasSubstr("m.toml:1: column 1: has no name"));
  EXPECT_THAT(Error("[[column]]\nname = \"c\"\ntype = \"text\"\n"), HasSubstr("has no from"));
}

TEST(MappingTest, MaskMustFitTheType) {
  EXPECT_THAT(ColumnError("type = \"inet\"\nmask = \"siv\"\n"),
              HasSubstr("m.toml:5: column c: mask siv makes text"));
  EXPECT_THAT(ColumnError("type = \"text\"\nmask = \"cryptopan\"\n"), HasSubstr("needs type inet"));
  EXPECT_THAT(ColumnError("type = \"bigint\"\nmask = \"hmac\"\n"), HasSubstr("cannot hold it"));
  EXPECT_THAT(ColumnError("type = \"jsonb\"\nmask = \"keyring\"\n"), HasSubstr("cannot hold it"));
  EXPECT_THAT(ColumnError("type = \"text\"\nmask = \"rot13\"\n"), HasSubstr("mask must be"));
  EXPECT_TRUE(
      ParseMapping(
          "[[column]]\nname=\"c\"\nfrom=\"/c\"\ntype=\"text\"\ninput=\"inet\"\nmask=\"ipcrypt-pfx\"\n", "m")
          .ok());
  EXPECT_TRUE(ParseMapping(
                  "[[column]]\nname=\"c\"\nfrom=\"/c\"\ntype=\"inet\"\nmask=\"ipcrypt-deterministic\"\n", "m")
                  .ok());
}

TEST(MappingTest, KeysThatDoNotFitTheColumnAreRefused) {
  EXPECT_THAT(ColumnError("type = \"bigint\"\nmax_length = 3\n"), HasSubstr("max_length is for text"));
  EXPECT_THAT(ColumnError("type = \"text\"\nmax_length = 0\n"), HasSubstr("max_length must be"));
  EXPECT_THAT(ColumnError("type = \"text\"\nformat = \"epoch_s\"\n"),
              HasSubstr("are for date and timestamptz"));
  EXPECT_THAT(ColumnError("type = \"text\"\nfrom_string = true\n"), HasSubstr("from_string is for"));
  EXPECT_THAT(ColumnError("type = \"text\"\nrequired = true\ndefault = \"x\"\n"),
              HasSubstr("required column"));
  EXPECT_THAT(ColumnError("type = \"text\"\nkey_id_column = true\n"), HasSubstr("masked columns only"));
  EXPECT_THAT(ColumnError("type = \"text\"\nrequired = \"yes\"\n"),
              HasSubstr("m.toml:5: column c: required must be true or false"));
  EXPECT_THAT(ColumnError("type = \"text\"\nlabel = \"a\\u0001\"\n"), HasSubstr("label must be"));
  EXPECT_THAT(Error("[[column]]\nname = \"c\"\nfrom = \"\"\ntype = \"text\"\n"),
              HasSubstr("needs type jsonb"));
  EXPECT_THAT(Error("[[column]]\nname = \"c\"\nfrom = \"$message_id\"\ntype = \"bigint\"\n"),
              HasSubstr("from_string"));
  EXPECT_THAT(Error("[[column]]\nname = \"c\"\nfrom = \"$receive_count\"\ntype = \"date\"\n"),
              HasSubstr("not a time"));
}

TEST(MappingTest, KeepNeedsAnExtraColumnThatCollidesWithNothing) {
  const std::string column = "[[column]]\nname = \"extra\"\nfrom = \"/c\"\ntype = \"text\"\n";
  EXPECT_THAT(Error("unknown_fields = \"keep\"\n" + column), HasSubstr("needs extra_column"));
  EXPECT_THAT(Error("extra_column = \"x\"\n" + column), HasSubstr("only with unknown_fields"));
  EXPECT_THAT(Error("unknown_fields = \"keep\"\nextra_column = \"extra\"\n" + column),
              HasSubstr("two columns are named extra"));
  EXPECT_THAT(
      Error("[[column]]\nname=\"m_key_id\"\nfrom=\"/a\"\ntype=\"text\"\n[[column]]\nname=\"m\"\nfrom=\"/b\"\n"
            "type=\"text\"\nmask=\"siv\"\nkey_id_column=true\n"),
      HasSubstr("m.toml:5: two columns are named m_key_id (the key id column of m)"));
  auto m = ParseMapping(
      "unknown_fields = \"keep\"\nextra_column = \"rest\"\n[[column]]\nname=\"m\"\nfrom=\"/b\"\n"
      "type=\"text\"\nmask=\"siv\"\nkey_id_column=true\n[[column]]\nname=\"n\"\nfrom=\"/n\"\ntype=\"text\"\n",
      "m");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->TableColumns(), (std::vector<std::string>{"m", "n", "m_key_id", "rest"}));
  // The sink stages rows beside sqs2pg_message_id and sqs2pg_sent_ms: such names are taken.
  EXPECT_THAT(Error("[[column]]\nname = \"SQS2PG_sent_ms\"\nfrom = \"/c\"\ntype = \"bigint\"\n"),
              HasSubstr("sqs2pg_ are sqs2pg's own"));
}

TEST(MappingTest, ExampleFilesLoad) {
  for (std::string_view name : {"logins", "orders", "sns-fanout"}) {
    auto m = LoadMappingFile(std::string(SQS2PG_SOURCE_DIR) + "/examples/" + std::string(name) + ".toml");
    EXPECT_TRUE(m.ok()) << m.status().message();
  }
  auto missing = LoadMappingFile("/nonexistent/m.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/m.toml"));
}

}  // namespace
}  // namespace sqs2pg::transform::mapping
