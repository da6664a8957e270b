// sqs2pg rekey against real Postgres: a table written under an old key and mode is re-masked to the
// active ones while `run --follow` keeps loading, with a SIGKILL mid-way and a rerun.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Column(Db& db, const std::string& sql) {
  std::vector<std::string> out;
  for (const auto& row : db.Rows(sql)) out.push_back(row[0].value_or(""));
  std::sort(out.begin(), out.end());
  return out;
}

std::string Joined(const std::vector<std::string>& values) {
  std::string text;
  for (const std::string& v : values) text += v + "\n";
  return text;
}

// `address_key`: the key that made bare addresses (a row's masked_ip_key_id), when the keyring
// holds several address-valued keys (unmask does not guess).
std::vector<std::string> Unmasked(const std::string& key, const std::vector<std::string>& values,
                                  const std::string& address_key = "") {
  std::string path = TestDir() + "/values.txt";
  { std::ofstream(path) << Joined(values); }
  CommandResult r =
      RunShell(fmt::format("{} unmask --key-file {}{} < {}", SQS2PG_BINARY, key,
                           address_key.empty() ? "" : " --address-key-id " + address_key, path));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> out;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  std::sort(out.begin(), out.end());
  return out;
}

// `run --follow` in the background, stopped by Stop() or, however the test ends (an ASSERT
// returns early), when it goes out of scope: SIGTERM, then SIGKILL if it has not exited in 30 s.
class FollowingConsumer {
 public:
  FollowingConsumer(const std::string& queue, const std::string& table, const std::string& key,
                    const std::string& name)
      : pid_file_(TestDir() + "/" + name + ".pid") {
    started_ = RunShell(fmt::format("( {} run --follow --wait-seconds 1 --queue {} --table {} --key-file {} "
                                    ">{}/{}.out 2>&1 & echo $! > {} )",
                                    SQS2PG_BINARY, queue, table, key, TestDir(), name, pid_file_))
                   .exit_code == 0;
  }
  ~FollowingConsumer() { Stop(); }
  bool started() const { return started_; }
  void Stop() {
    if (!started_) return;
    started_ = false;
    RunShell(fmt::format(
        "pid=$(cat {}); [ -n \"$pid\" ] || exit 0; kill -TERM $pid 2>/dev/null; for i in $(seq 300); do "
        "kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL $pid",
        pid_file_));
  }

 private:
  std::string pid_file_;
  bool started_ = false;
};

TEST(RekeyTest, RemasksOldRowsAndRejectsWhileAConsumerRunsAndSurvivesAKill) {
  std::string key = TestDir() + "/rekey.key";
  std::filesystem::remove(key);
  ASSERT_EQ(RunSqs2pg({"keygen", "--out", key}).exit_code, 0);
  std::string queue = UniqueName("q"), table = UniqueName("t");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  ASSERT_EQ(RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", key}).exit_code, 0);
  Db db;
  const std::string ips_sql = fmt::format("SELECT masked_ip FROM \"{}\"", table);
  const std::string devices_sql = fmt::format("SELECT masked_device_id FROM \"{}\"", table);
  const std::string bodies_sql = fmt::format("SELECT body FROM \"{}_rejects\" WHERE body_encrypted", table);
  const auto ips_before = Unmasked(key, Column(db, ips_sql));
  const auto devices_before = Unmasked(key, Column(db, devices_sql));
  const auto bodies_before = Unmasked(key, Column(db, bodies_sql));
  const std::string old_id = Column(db, devices_sql).at(0).substr(0, 8);

  // Rotate: a new siv key for device_id and bodies, and Crypto-PAn for ip.
  ASSERT_EQ(RunSqs2pg({"keygen", "--rotate", "--out", key}).exit_code, 0);
  ASSERT_EQ(RunSqs2pg({"keygen", "--rotate", "--out", key, "--ip-mask", "cryptopan"}).exit_code, 0);

  // A consumer keeps loading the same messages again (new MessageIds) while rekey runs; rekey is
  // killed mid-way, then run again to the end.
  ASSERT_EQ(RunSqs2pg({"send", "--queue", queue, SampleDataPath()}).exit_code, 0);
  FollowingConsumer consumer(queue, table, key, "follow");
  ASSERT_TRUE(consumer.started());
  // Killed between batches once part of the ip column is done (a pause after each batch makes
  // that moment wide enough to hit).
  const std::string rekey_pid = TestDir() + "/rekey.pid";
  ASSERT_EQ(RunShell(fmt::format(
                         "( SQS2PG_REKEY_BATCH_PAUSE_MS=20 {} rekey --table {} --key-file {} --batch-size 5 "
                         ">{}/rekey.out 2>&1 & echo $! > {} )",
                         SQS2PG_BINARY, table, key, TestDir(), rekey_pid))
                .exit_code,
            0);
  const std::string old_ips_sql =
      fmt::format("SELECT count(*) FROM \"{}\" WHERE masked_ip LIKE '{}.%'", table, old_id);
  long old_ips = 99;
  // Until its first batch commits: a deadline, not a count of polls, since a sanitizer build
  // starts far slower.
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       old_ips == 99 && std::chrono::steady_clock::now() < until;) {
    old_ips = std::stol(db.Scalar(old_ips_sql));
    if (old_ips == 99) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(RunShell(fmt::format("kill -KILL $(cat {})", rekey_pid)).exit_code, 0);
  RunShell("sleep 0.2");
  old_ips = std::stol(db.Scalar(old_ips_sql));
  EXPECT_GT(old_ips, 0) << "rekey finished before the kill";
  EXPECT_LT(old_ips, 99) << "rekey had done nothing before the kill";
  CommandResult rekey = RunSqs2pg({"rekey", "--table", table, "--key-file", key, "--batch-size", "7"});
  EXPECT_EQ(rekey.exit_code, 0) << rekey.err;
  // The rerun carried on where the killed one stopped: it re-masked exactly the ips left.
  EXPECT_THAT(rekey.out, HasSubstr(fmt::format("re-masked {} ips", old_ips)));
  // Let the consumer finish the second copy, then stop it.
  for (int i = 0; i < 100 && db.Count(table) < 198; ++i) RunShell("sleep 0.1");
  consumer.Stop();
  ASSERT_EQ(db.Count(table), 198);
  // The consumer's rows are in the active form already; a last rekey makes sure of the rest.
  CommandResult last = RunSqs2pg({"rekey", "--table", table, "--key-file", key});
  ASSERT_EQ(last.exit_code, 0) << last.err;
  EXPECT_THAT(last.out, HasSubstr("re-masked 0 ips, 0 device_ids, 0 reject bodies"));
  EXPECT_THAT(last.out, Not(HasSubstr("key " + old_id)));  // the old key masks nothing any more

  // Every value is in the active form and unmasks to what it was.
  EXPECT_EQ(db.Scalar(fmt::format("SELECT count(*) FROM \"{}\" WHERE masked_ip !~ '^[0-9.]+$'", table)), "0");
  EXPECT_EQ(
      db.Scalar(fmt::format("SELECT count(*) FROM \"{}\" WHERE masked_device_id LIKE '{}.%'", table, old_id)),
      "0");
  EXPECT_EQ(
      db.Scalar(fmt::format("SELECT count(*) FROM \"{}_rejects\" WHERE body LIKE '{}.%'", table, old_id)),
      "0");
  auto doubled = [](std::vector<std::string> v) {
    std::vector<std::string> twice = v;
    twice.insert(twice.end(), v.begin(), v.end());
    std::sort(twice.begin(), twice.end());
    return twice;
  };
  EXPECT_EQ(Unmasked(key, Column(db, ips_sql)), doubled(ips_before));
  EXPECT_EQ(Unmasked(key, Column(db, devices_sql)), doubled(devices_before));
  EXPECT_EQ(Unmasked(key, Column(db, bodies_sql)), doubled(bodies_before));
}

// A rotation between two prefix-preserving keys of an inet column, on a table split into hash
// partitions (so row ctids repeat across partitions): each row's masked_ip_key_id says which key
// made its bare address. Rows from before that column existed carry no key id: with two address
// keys in the keyring, rekey leaves them until told which key made them.
TEST(RekeyTest, RemasksBetweenTwoPrefixPreservingKeysByTheRowsKeyId) {
  std::string key = TestDir() + "/rekey-pfx.key";
  std::filesystem::remove(key);
  ASSERT_EQ(RunSqs2pg({"keygen", "--out", key, "--ip-mask", "cryptopan"}).exit_code, 0);
  std::string queue = UniqueName("q"), table = UniqueName("t");
  Db db;
  // The user's own table: inet, partitioned by hash, and without masked_ip_key_id (made before it
  // existed); run adds the column, as the table's owner.
  db.Exec(fmt::format(
      "CREATE TABLE \"{0}\" (user_id varchar(128), device_type varchar(32), masked_ip inet, "
      "masked_device_id varchar(256), locale varchar(32), app_version varchar(15), create_date date) "
      "PARTITION BY HASH (user_id);"
      "CREATE TABLE \"{0}_p0\" PARTITION OF \"{0}\" FOR VALUES WITH (MODULUS 2, REMAINDER 0);"
      "CREATE TABLE \"{0}_p1\" PARTITION OF \"{0}\" FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
      table));
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  CommandResult first = RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", key});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string ips_sql = fmt::format("SELECT host(masked_ip) FROM \"{}\"", table);
  const auto ips_before = Unmasked(key, Column(db, ips_sql));
  const std::string old_key = db.Scalar(fmt::format("SELECT min(masked_ip_key_id) FROM \"{}\"", table));
  ASSERT_EQ(old_key.size(), 8u);
  ASSERT_EQ(db.Scalar(fmt::format("SELECT count(DISTINCT masked_ip_key_id) FROM \"{}\"", table)), "1");
  // Both partitions hold rows, so equal ctids name different rows.
  ASSERT_EQ(db.Scalar(fmt::format("SELECT count(*) > 0 FROM \"{}_p0\"", table)), "t");
  ASSERT_EQ(db.Scalar(fmt::format("SELECT count(*) > 0 FROM \"{}_p1\"", table)), "t");
  // Rows written before the column existed.
  db.Exec(fmt::format("UPDATE \"{0}\" SET masked_ip_key_id = NULL WHERE user_id < '8'", table));
  const long unlabelled =
      std::stol(db.Scalar(fmt::format("SELECT count(*) FROM \"{}\" WHERE masked_ip_key_id IS NULL", table)));
  ASSERT_GT(unlabelled, 0);

  // Rotate to a new Crypto-PAn key; a consumer loads a second copy under it while rekey runs.
  ASSERT_EQ(RunSqs2pg({"keygen", "--rotate", "--out", key, "--ip-mask", "cryptopan"}).exit_code, 0);
  ASSERT_EQ(RunSqs2pg({"send", "--queue", queue, SampleDataPath()}).exit_code, 0);
  FollowingConsumer consumer(queue, table, key, "follow-pfx");
  ASSERT_TRUE(consumer.started());
  const long labelled_old = 99 - unlabelled;
  CommandResult rekey = RunSqs2pg({"rekey", "--table", table, "--key-file", key, "--batch-size", "7"});
  ASSERT_EQ(rekey.exit_code, 0) << rekey.err;
  // The rows labelled with the old key are re-masked; the unlabelled ones are left, and counted.
  EXPECT_THAT(rekey.out, HasSubstr(fmt::format("re-masked {} ips", labelled_old)));
  EXPECT_THAT(rekey.out, HasSubstr(fmt::format("addresses with no key id: {}", unlabelled)));
  EXPECT_THAT(rekey.out, HasSubstr("--address-key-id"));
  EXPECT_THAT(rekey.out, Not(HasSubstr(fmt::format("key {} (addresses)", old_key))));

  // Told which key made them, rekey re-masks the rest.
  CommandResult rest = RunSqs2pg({"rekey", "--table", table, "--key-file", key, "--address-key-id", old_key});
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  EXPECT_THAT(rest.out, HasSubstr(fmt::format("re-masked {} ips", unlabelled)));
  EXPECT_THAT(rest.out, Not(HasSubstr("no key id")));
  // A key id that is not an address key of the keyring is refused before anything is touched.
  CommandResult wrong =
      RunSqs2pg({"rekey", "--table", table, "--key-file", key, "--address-key-id", "0badc0de"});
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.err, HasSubstr("not an address-valued ip key"));

  for (int i = 0; i < 100 && db.Count(table) < 198; ++i) RunShell("sleep 0.1");
  consumer.Stop();
  ASSERT_EQ(db.Count(table), 198);
  // Every row is now the new key's, and unmasks (with that key) to what it was.
  const std::string new_key =
      db.Scalar(fmt::format("SELECT string_agg(DISTINCT masked_ip_key_id, ',') FROM \"{}\"", table));
  EXPECT_NE(new_key, old_key);
  EXPECT_EQ(new_key.size(), 8u) << new_key;
  std::vector<std::string> twice = ips_before;
  twice.insert(twice.end(), ips_before.begin(), ips_before.end());
  std::sort(twice.begin(), twice.end());
  EXPECT_EQ(Unmasked(key, Column(db, ips_sql), new_key), twice);
  // The old key unmasks none of them to an original any more: each now decodes to noise.
  std::string path = TestDir() + "/values-pfx.txt";
  { std::ofstream(path) << Joined(Column(db, ips_sql)); }
  CommandResult with_old = RunShell(
      fmt::format("{} unmask --key-file {} --address-key-id {} < {}", SQS2PG_BINARY, key, old_key, path));
  ASSERT_EQ(with_old.exit_code, 0) << with_old.err;
  std::vector<std::string> old_view;
  std::istringstream in(with_old.out);
  for (std::string line; std::getline(in, line);) old_view.push_back(line);
  std::sort(old_view.begin(), old_view.end());
  EXPECT_NE(old_view, twice);

  // siv values are not addresses: after a rotation of ip to siv, rekeying the inet column is
  // refused before any batch, and no row changes.
  ASSERT_EQ(RunSqs2pg({"keygen", "--rotate", "--out", key, "--ip-mask", "siv"}).exit_code, 0);
  CommandResult to_siv = RunSqs2pg({"rekey", "--table", table, "--key-file", key});
  EXPECT_EQ(to_siv.exit_code, 2);
  EXPECT_THAT(to_siv.err, HasSubstr("masked_ip is inet"));
  EXPECT_EQ(db.Scalar(fmt::format("SELECT string_agg(DISTINCT masked_ip_key_id, ',') FROM \"{}\"", table)),
            new_key);
}

// Issue 17 item 12: no guessed keys. A table without masked_ip_key_id holds bare addresses of two
// Crypto-PAn keys (A, then B after a rotation); ip is then rotated to siv. Which key made each
// address is not known, so rekey refuses, names the option, and changes no row (before, it
// decrypted them all with the field line's first key and overwrote A's addresses with wrong ones).
TEST(RekeyTest, WithoutKeyIdsAndTwoAddressKeysRekeyRefusesAndChangesNoRow) {
  std::string key = TestDir() + "/rekey-guess.key";
  std::filesystem::remove(key);
  ASSERT_EQ(RunSqs2pg({"keygen", "--out", key, "--ip-mask", "cryptopan"}).exit_code, 0);
  std::string queue = UniqueName("q"), table = UniqueName("t");
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  ASSERT_EQ(RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", key}).exit_code, 0);
  ASSERT_EQ(RunSqs2pg({"keygen", "--rotate", "--out", key, "--ip-mask", "cryptopan"}).exit_code, 0);
  ASSERT_EQ(RunSqs2pg({"send", "--queue", queue, SampleDataPath()}).exit_code, 0);
  ASSERT_EQ(RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", key}).exit_code, 0);
  Db db;
  ASSERT_EQ(db.Count(table), 198);
  db.Exec(fmt::format("ALTER TABLE \"{}\" DROP COLUMN masked_ip_key_id", table));  // a table from before it
  ASSERT_EQ(RunSqs2pg({"keygen", "--rotate", "--out", key, "--ip-mask", "siv"}).exit_code, 0);
  const std::string snapshot = fmt::format(
      "SELECT md5(string_agg(masked_ip || '|' || masked_device_id, ',' ORDER BY masked_ip, "
      "masked_device_id)) "
      "FROM \"{}\"",
      table);
  const std::string before = db.Scalar(snapshot);
  const std::string bodies =
      fmt::format("SELECT md5(string_agg(body, ',' ORDER BY body)) FROM \"{}_rejects\"", table);
  const std::string bodies_before = db.Scalar(bodies);

  CommandResult rekey = RunSqs2pg({"rekey", "--table", table, "--key-file", key});
  EXPECT_EQ(rekey.exit_code, 2) << rekey.out;
  EXPECT_THAT(rekey.err, HasSubstr("--address-key-id"));
  EXPECT_THAT(rekey.err, HasSubstr("Nothing was changed"));
  EXPECT_EQ(db.Scalar(snapshot), before);
  EXPECT_EQ(db.Scalar(bodies), bodies_before);
  // unmask refuses the same guess for a bare address.
  CommandResult guess = RunSqs2pg(
      {"unmask", "--key-file", key, db.Scalar(fmt::format("SELECT min(masked_ip) FROM \"{}\"", table))});
  EXPECT_NE(guess.exit_code, 0);
  EXPECT_THAT(guess.err, HasSubstr("--address-key-id"));
}

}  // namespace
}  // namespace sqs2pg::integration
