#include "transform/keyring.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/encoding.h"
#include "transform/test_keys.h"

namespace sqs2pg::transform {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

using testing::Material;

std::string Line(const Key& key) {
  return std::string(Keyring::kLineTag) + " " + key.id + " " + HexEncode(key.material) + "\n";
}

Key MustKey(std::string_view material) { return *Keyring::KeyFromMaterial(material); }

// A private directory per test, removed afterwards.
class KeyringFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "keyring_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string WriteFile(const std::string& name, const std::string& text, mode_t mode) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }

  std::filesystem::path dir_;
};

// Stored values carry the id, so its derivation must never change.
TEST(KeyringTest, KeyIdIsPinned) {
  EXPECT_EQ(Keyring::KeyIdFor(Material(0)), "60f7f036");  // bytes 00 01 .. 3f
  EXPECT_EQ(MustKey(Material(0xa0)).id, "8f7b26e3");      // bytes a0 a1 .. df
}

TEST(KeyringTest, GenerateMakesOneFreshKey) {
  Result<Keyring> a = Keyring::Generate();
  Result<Keyring> b = Keyring::Generate();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->keys().size(), 1u);
  EXPECT_EQ(a->active().material.size(), Keyring::kKeyBytes);
  EXPECT_EQ(a->active().id, Keyring::KeyIdFor(a->active().material));
  EXPECT_NE(a->active().material, b->active().material);
}

TEST(KeyringTest, SerializeThenParseKeepsKeysAndOrder) {
  Keyring ring = *Keyring::Generate();
  ASSERT_TRUE(ring.Prepend(Keyring::Generate()->active()).ok());
  std::string text = ring.Serialize();
  EXPECT_THAT(text, StartsWith("#"));
  EXPECT_THAT(text, HasSubstr("HMAC-SHA256(key, \"sqs2pg key id v1\")"));
  EXPECT_THAT(text, HasSubstr("The first key masks new values; every key can unmask"));

  Result<Keyring> parsed = Keyring::Parse(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  ASSERT_EQ(parsed->keys().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(parsed->keys()[i].id, ring.keys()[i].id);
    EXPECT_EQ(parsed->keys()[i].material, ring.keys()[i].material);
  }
}

TEST(KeyringTest, ParseSkipsCommentsBlankLinesAndCarriageReturns) {
  Key key = MustKey(Material(0));
  std::string line = Line(key);
  line.insert(line.size() - 1, "\r");
  Result<Keyring> ring = Keyring::Parse("# comment\n\n   \n  # indented comment\n\t" + line);
  ASSERT_TRUE(ring.ok()) << ring.status().message();
  EXPECT_EQ(ring->active().id, key.id);
}

TEST(KeyringTest, ParseNamesTheLineOfADamagedKey) {
  std::string good = Line(MustKey(Material(0)));
  Key damaged = MustKey(Material(0xa0));
  std::string key_hex = HexEncode(damaged.material);
  damaged.material[5] ^= 1;
  std::string bad_hex = HexEncode(damaged.material);
  std::string text =
      good + "# next\n" + std::string(Keyring::kLineTag) + " " + damaged.id + " " + bad_hex + "\n";

  Result<Keyring> ring = Keyring::Parse(text);
  ASSERT_FALSE(ring.ok());
  EXPECT_EQ(ring.status().message(), "keyring line 3: key id does not match the key (file damaged?)");
  EXPECT_THAT(ring.status().message(), Not(HasSubstr(bad_hex.substr(0, 16))));
}

TEST(KeyringTest, ParseRejectsMalformedLinesWithoutEchoingThem) {
  Key key = MustKey(Material(0));
  std::string hex = HexEncode(key.material);
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string tag(Keyring::kLineTag);
  const std::pair<std::string, std::string> cases[] = {
      {hex, "expected 'sqs2pg-key-v1 <key-id> <key>'"},
      {"sqs2pg-key-v2 " + key.id + " " + hex, "expected"},
      {tag + " " + key.id + " " + hex + " extra", "expected"},
      {tag + " " + key.id, "expected"},
      {tag + " " + key.id + " " + upper, "128 lowercase hex"},
      {tag + " " + key.id + " " + hex.substr(2), "128 lowercase hex"},
      {tag + " " + key.id + " " + hex + "00", "128 lowercase hex"},
      {tag + " 60F7F036 " + hex, "8 lowercase hex"},
      {tag + " 60f7f03 " + hex, "8 lowercase hex"},
      {Line(key) + Line(key), "line 2: key id 60f7f036 appears twice"},
  };
  for (const auto& [text, expected] : cases) {
    Result<Keyring> ring = Keyring::Parse(text);
    ASSERT_FALSE(ring.ok()) << text;
    EXPECT_EQ(ring.status().code(), Status::Code::kInvalidInput);
    EXPECT_THAT(ring.status().message(), HasSubstr(expected));
    EXPECT_THAT(ring.status().message(), Not(HasSubstr(hex.substr(10, 20))));
  }
}

TEST(KeyringTest, RefusesAnEmptyKeyring) {
  for (std::string_view text : {"", "\n\n", "# only a comment\n"}) {
    Result<Keyring> ring = Keyring::Parse(text);
    ASSERT_FALSE(ring.ok());
    EXPECT_EQ(ring.status().message(), "keyring holds no key");
  }
}

TEST(KeyringTest, FromEnvironmentValueAcceptsOneLineAndNamesTheVariable) {
  Key key = MustKey(Material(0));
  std::string line = Line(key);
  line.pop_back();  // an env var value usually has no trailing newline
  Result<Keyring> ring = Keyring::FromEnvironmentValue(line);
  ASSERT_TRUE(ring.ok()) << ring.status().message();
  EXPECT_EQ(ring->active().id, key.id);

  Result<Keyring> empty = Keyring::FromEnvironmentValue("", "MY_KEYS");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(), "key variable MY_KEYS holds no key");
}

// Issue 18: a mapped column's own keys (keygen --column), newest first, kept across a round trip;
// appended keys never become the active siv key.
TEST(KeyringTest, AColumnLineNamesAColumnsKeysAndSurvivesARoundTrip) {
  Keyring ring = *Keyring::Parse(Line(MustKey(Material(0))));
  const std::string active = ring.active().id;
  Key first = MustKey(Material(0x10)), second = MustKey(Material(0x20));
  ASSERT_TRUE(ring.Append(first).ok());
  ASSERT_TRUE(ring.AssignColumn("customer_email", first.id).ok());
  ASSERT_TRUE(ring.Append(second).ok());
  ASSERT_TRUE(ring.AssignColumn("customer_email", second.id).ok());
  EXPECT_EQ(ring.active().id, active);  // a column's siv key does not seal reject bodies
  ASSERT_EQ(ring.ColumnKeys("customer_email").size(), 2u);
  EXPECT_EQ(ring.ColumnKeys("customer_email")[0]->id, second.id);
  EXPECT_TRUE(ring.ColumnKeys("other").empty());

  std::string text = ring.Serialize();
  EXPECT_THAT(text, HasSubstr("sqs2pg-column customer_email " + second.id + " " + first.id + "\n"));
  auto back = Keyring::Parse(text);
  ASSERT_TRUE(back.ok()) << back.status().message();
  ASSERT_EQ(back->ColumnKeys("customer_email").size(), 2u);
  EXPECT_EQ(back->ColumnKeys("customer_email")[0]->id, second.id);
  EXPECT_EQ(back->ColumnKeys("customer_email")[1]->id, first.id);
  EXPECT_EQ(back->active().id, active);

  EXPECT_THAT(ring.AssignColumn("ip", first.id).message(), HasSubstr("login fields"));
  EXPECT_THAT(ring.AssignColumn("bad name", first.id).message(), HasSubstr("1 to 63"));
  EXPECT_THAT(ring.AssignColumn("c", "00000000").message(), HasSubstr("no key with id"));
  EXPECT_THAT(Keyring::Parse(text + "sqs2pg-column customer_email " + first.id + "\n").status().message(),
              HasSubstr("a second line for column customer_email"));
  EXPECT_THAT(Keyring::Parse(Line(MustKey(Material(0))) + "sqs2pg-column c 0123abcd\n").status().message(),
              HasSubstr("no key with id 0123abcd"));
}

TEST(KeyringTest, PrependMakesTheNewKeyActiveAndKeepsTheOld) {
  Key old_key = MustKey(Material(0));
  Key new_key = MustKey(Material(0xa0));
  Keyring ring = *Keyring::Parse(Line(old_key));
  ASSERT_TRUE(ring.Prepend(new_key).ok());
  EXPECT_EQ(ring.active().id, new_key.id);
  ASSERT_NE(ring.Find(old_key.id), nullptr);
  EXPECT_EQ(ring.Find(old_key.id)->material, old_key.material);
  EXPECT_EQ(ring.Find("00000000"), nullptr);

  Status again = ring.Prepend(old_key);
  EXPECT_THAT(again.message(), HasSubstr("already in the keyring"));
  Key forged = new_key;
  forged.id = "00000000";
  EXPECT_THAT(ring.Prepend(forged).message(), HasSubstr("does not match"));
  EXPECT_EQ(ring.keys().size(), 2u);
}

TEST_F(KeyringFileTest, WriteNewFileCreatesAPrivateFileThatLoads) {
  Keyring ring = *Keyring::Generate();
  std::string path = (dir_ / "keys").string();
  Status written = ring.WriteNewFile(path);
  ASSERT_TRUE(written.ok()) << written.message();

  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  Result<Keyring> loaded = Keyring::LoadFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->active().material, ring.active().material);
}

TEST_F(KeyringFileTest, WriteNewFileRefusesToOverwrite) {
  std::string path = WriteFile("keys", "precious\n", 0600);
  Status written = Keyring::Generate()->WriteNewFile(path);
  ASSERT_FALSE(written.ok());
  EXPECT_THAT(written.message(), HasSubstr("key file " + path + " already exists; refusing to overwrite it"));
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "precious\n");
}

TEST_F(KeyringFileTest, LoadFileRefusesGroupOrWorldAccess) {
  Key key = MustKey(Material(0));
  std::string hex = HexEncode(key.material);
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602, 0620}) {
    std::string path = WriteFile("keys" + std::to_string(mode), Line(key), mode);
    Result<Keyring> ring = Keyring::LoadFile(path);
    ASSERT_FALSE(ring.ok()) << std::oct << mode;
    EXPECT_THAT(ring.status().message(), HasSubstr("chmod 600 " + path));
    EXPECT_THAT(ring.status().message(), Not(HasSubstr(hex.substr(0, 16))));
  }
  EXPECT_TRUE(Keyring::LoadFile(WriteFile("readonly", Line(key), 0400)).ok());
}

TEST_F(KeyringFileTest, LoadFileNamesFileAndLine) {
  Key key = MustKey(Material(0));
  std::string bad = Line(key);
  bad[std::string(Keyring::kLineTag).size() + 1] = '7';  // id 60f7f036 -> 70f7f036
  std::string path = WriteFile("keys", "# header\n" + bad, 0600);
  Result<Keyring> ring = Keyring::LoadFile(path);
  ASSERT_FALSE(ring.ok());
  EXPECT_EQ(ring.status().message(),
            "key file " + path + " line 2: key id does not match the key (file damaged?)");
}

TEST_F(KeyringFileTest, LoadFileRefusesEmptyAndMissingFiles) {
  std::string path = WriteFile("empty", "# nothing yet\n", 0600);
  Result<Keyring> empty = Keyring::LoadFile(path);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(), "key file " + path + " holds no key");

  Result<Keyring> missing = Keyring::LoadFile((dir_ / "absent").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);

  Result<Keyring> directory = Keyring::LoadFile(dir_.string());
  ASSERT_FALSE(directory.ok());
}

}  // namespace
}  // namespace sqs2pg::transform
