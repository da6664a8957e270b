// Fuzz target: mapped transforms. Input: 8 bytes of SentTimestamp (little endian), 1 byte choosing
// the mapping (the built-in login mapping, examples' orders shape with envelope auto, or the SNS
// fan-out shape), then the body. Checks: never a crash; a row has one value per column, each valid
// UTF-8 without U+0000; a reject's reason is clean text and its body unmasks to the original.

#include <simdjson.h>

#include <cstring>

#include "fuzz/fuzz_target.h"
#include "fuzz/test_keyring.h"
#include "transform/mapping/builtin_login.h"
#include "transform/mapping/mapped_transform.h"

namespace sqs2pg::fuzz {
namespace {

constexpr char kOrders[] = R"toml(envelope = "auto"
unknown_fields = "keep"
extra_column = "extra"
[[column]]
name = "order_id"
from = "/id"
type = "uuid"
[[column]]
name = "email"
from = "/customer/email"
type = "varchar(80)"
mask = "siv"
key_id_column = true
[[column]]
name = "total"
from = "/total_cents"
type = "bigint"
from_string = true
[[column]]
name = "price"
from = "/price"
type = "numeric"
[[column]]
name = "items"
from = "/items"
type = "jsonb"
[[column]]
name = "first_sku"
from = "/items/0/sku"
type = "text"
max_length = 8
[[column]]
name = "at"
from = "/at"
type = "timestamptz"
[[column]]
name = "day"
from = "/day"
type = "date"
format = "epoch_s"
[[column]]
name = "ip"
from = "/ip"
type = "inet"
[[column]]
name = "gift"
from = "/gift"
type = "boolean"
default = false
[[column]]
name = "tenant"
from = "$attribute.tenant"
type = "text"
)toml";

transform::mapping::MappedTransform& TransformFor(unsigned which) {
  static transform::mapping::MappedTransform* transforms[2] = {};
  if (transforms[which] == nullptr) {
    auto mapping = which == 0 ? transform::mapping::LoginMapping()
                              : transform::mapping::ParseMapping(kOrders, "orders").value();
    transforms[which] = transform::mapping::MappedTransform::Create(mapping, TestMasker()).value().release();
  }
  return *transforms[which];
}

bool Clean(std::string_view s) {
  return simdjson::validate_utf8(s.data(), s.size()) && s.find('\0') == std::string_view::npos;
}

}  // namespace

void FuzzMappedTransform(std::string_view data) {
  if (data.size() < 9) return;
  transform::mapping::MessageMetadata md;
  std::memcpy(&md.sent_timestamp_ms, data.data(), sizeof md.sent_timestamp_ms);
  unsigned which = static_cast<unsigned char>(data[8]) & 1;
  std::string_view body = data.substr(9);
  transform::mapping::MessageAttribute attributes[] = {{"tenant", "acme"}};
  md.attributes = attributes;
  auto& t = TransformFor(which);
  auto out = t.Apply(body, md);
  if (const auto* row = std::get_if<transform::mapping::MappedRow>(&out)) {
    FUZZ_CHECK(row->values.size() == t.columns().size());
    for (const auto& v : row->values) FUZZ_CHECK(!v || Clean(*v));
  } else {
    const auto& r = std::get<Rejection>(out);
    FUZZ_CHECK(!r.reason.empty() && Clean(r.reason) && Clean(r.body_shape));
    if (r.body_encrypted) {
      auto original = TestMasker().Unmask(r.safe_body);
      FUZZ_CHECK(original.ok() && *original == body);
    }
  }
}

}  // namespace sqs2pg::fuzz

SQS2PG_FUZZ_ENTRY(sqs2pg::fuzz::FuzzMappedTransform)
