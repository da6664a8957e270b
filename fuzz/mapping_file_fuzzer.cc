// Fuzz target: mapping files. Input: the TOML text of a mapping. Loading never crashes; an error
// names the origin and a line; a mapping that loads compiles against the test keyring (or names a
// missing key) and transforms a fixed body without crashing.

#include "fuzz/fuzz_target.h"
#include "fuzz/test_keyring.h"
#include "transform/mapping/mapped_transform.h"

namespace sqs2pg::fuzz {

void FuzzMappingFile(std::string_view data) {
  auto mapping = transform::mapping::ParseMapping(data, "fuzz.toml");
  if (!mapping.ok()) {
    FUZZ_CHECK(mapping.status().message().starts_with("fuzz.toml:"));
    return;
  }
  FUZZ_CHECK(!mapping->columns.empty());
  auto t = transform::mapping::MappedTransform::Create(*mapping, TestMasker());
  if (!t.ok()) {
    FUZZ_CHECK(t.status().message().starts_with("fuzz.toml:"));
    return;
  }
  transform::mapping::MessageMetadata md;
  md.sent_timestamp_ms = 1'700'000'000'123;
  auto out = (*t)->Apply(
      R"({"id":"5f0c2f9e-8a8e-4d7b-9c1a-3e2d1c0b9a87","a":{"b":[1,"x",null]},"ip":"1.2.3.4"})", md);
  if (const auto* row = std::get_if<transform::mapping::MappedRow>(&out)) {
    FUZZ_CHECK(row->values.size() == (*t)->columns().size());
  }
}

}  // namespace sqs2pg::fuzz

SQS2PG_FUZZ_ENTRY(sqs2pg::fuzz::FuzzMappingFile)
