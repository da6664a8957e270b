// Each masking mode end to end (keygen, send, run into real Postgres, unmask), and an inet
// masked_ip column answering subnet queries through a GiST index.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "harness.h"

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The ips of the sample file, in order, with a tiny scan (the values are simple).
std::vector<std::string> SampleIps() {
  gzFile f = gzopen(SampleDataPath().c_str(), "rb");
  std::string text;
  char buf[4096];
  for (int n; (n = gzread(f, buf, sizeof buf)) > 0;) text.append(buf, n);
  gzclose(f);
  std::vector<std::string> ips;
  const std::string key = "\"ip\": \"";
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    size_t start = at + key.size();
    ips.push_back(text.substr(start, text.find('"', start) - start));
  }
  return ips;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Runs a command with `input` on stdin (written to a file first: RunSqs2pg has no stdin).
CommandResult WithStdin(const std::vector<std::string>& args, const std::string& input) {
  std::string path = TestDir() + "/stdin.txt";
  { std::ofstream(path) << input; }
  std::string line = SQS2PG_BINARY;
  for (const std::string& a : args) line += " '" + a + "'";
  return RunShell(line + " < " + path);
}

struct ModeCase {
  std::string ip_mask;
  std::string device_id_mask;
};

// Names the case in ctest's listing instead of dumping its bytes.
void PrintTo(const ModeCase& c, std::ostream* os) { *os << c.ip_mask << "/" << c.device_id_mask; }

class MaskingModesTest : public ::testing::TestWithParam<ModeCase> {};

TEST_P(MaskingModesTest, EndToEnd) {
  const ModeCase& c = GetParam();
  std::string key = TestDir() + "/modes.key";
  std::filesystem::remove(key);
  CommandResult made =
      RunSqs2pg({"keygen", "--out", key, "--ip-mask", c.ip_mask, "--device-id-mask", c.device_id_mask});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  // Parameterised test names hold a '/', which queue names may not.
  std::string queue = UniqueName("q"), table = UniqueName("t");
  std::replace(queue.begin(), queue.end(), '/', '_');
  std::replace(table.begin(), table.end(), '/', '_');
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath()}).exit_code, 0);
  CommandResult r = RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", key});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("loaded 99, duplicates skipped 0, rejected 1"));

  Db db;
  auto rows =
      db.Rows(fmt::format("SELECT masked_ip, masked_device_id FROM \"{}\" ORDER BY masked_ip", table));
  ASSERT_EQ(rows.size(), 99u);
  std::string ips, devices;
  for (const auto& row : rows) {
    ips += *row[0] + "\n";
    devices += *row[1] + "\n";
  }
  // What `mask` prints for the sample's ips is what `run` stored.
  const std::vector<std::string> stored_lines = Lines(ips);
  std::set<std::string> stored(stored_lines.begin(), stored_lines.end());
  std::string sample;
  for (const std::string& ip : SampleIps()) sample += ip + "\n";
  CommandResult masked = WithStdin({"mask", "--key-file", key, "--field", "ip"}, sample);
  ASSERT_EQ(masked.exit_code, 0) << masked.err;
  size_t found = 0;
  for (const std::string& m : Lines(masked.out)) found += stored.count(m);
  EXPECT_GE(found, 99u);  // the reject has an ip too

  if (c.ip_mask == "hmac") {
    EXPECT_TRUE(std::regex_match(*rows[0][0], std::regex("[0-9a-f]{8}\\.hmac\\.[A-Za-z0-9_-]{43}")));
    CommandResult undone = WithStdin({"unmask", "--key-file", key}, ips);
    EXPECT_EQ(undone.exit_code, 1);
    EXPECT_THAT(undone.err, HasSubstr("one-way"));
  } else {
    // Every stored value unmasks to one of the sample's ips.
    CommandResult plain = WithStdin({"unmask", "--key-file", key}, ips);
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    auto sample_ips = SampleIps();
    std::set<std::string> originals(sample_ips.begin(), sample_ips.end());
    for (const std::string& ip : Lines(plain.out)) EXPECT_EQ(originals.count(ip), 1u) << "not a sample ip";
    if (c.ip_mask != "siv") {
      // Address-valued: Postgres reads every stored value as an inet.
      EXPECT_EQ(db.Scalar(fmt::format("SELECT count(masked_ip::inet) FROM \"{}\"", table)), "99");
    }
  }
  if (c.device_id_mask == "siv") {
    CommandResult plain = WithStdin({"unmask", "--key-file", key}, devices);
    EXPECT_EQ(plain.exit_code, 0) << plain.err;
  }

  // Issue 17 item 9: a reject's sealed body, opened with the key, holds a field masked one-way
  // only in its hmac form (the row's), never in plaintext. (The sample's reject has no ip.)
  const std::string reject = R"({"ip": "203.0.113.77", "device_id": "SECRET-DEV-1", "locale": "FR"})";
  std::string file = TestDir() + "/one-way-reject.ndjson";
  std::ofstream(file) << reject << "\n";
  std::string second_queue = queue + "_2";
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", second_queue, file}).exit_code, 0);
  r = RunSqs2pg({"run", "--queue", second_queue, "--table", table, "--key-file", key});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  CommandResult opened =
      RunSqs2pg({"unmask", "--key-file", key,
                 db.Scalar(fmt::format("SELECT body FROM \"{}_rejects\" WHERE body_bytes = {}", table,
                                       reject.size()))});
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  EXPECT_EQ(c.ip_mask == "hmac", opened.out.find("203.0.113.77") == std::string::npos) << opened.out;
  EXPECT_EQ(c.device_id_mask == "hmac", opened.out.find("SECRET-DEV-1") == std::string::npos) << opened.out;
  if (c.ip_mask == "hmac") {
    EXPECT_TRUE(std::regex_search(opened.out, std::regex(R"("ip":"[0-9a-f]{8}\.hmac\.)"))) << opened.out;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, MaskingModesTest,
                         ::testing::Values(ModeCase{"siv", "siv"}, ModeCase{"ipcrypt-deterministic", "siv"},
                                           ModeCase{"ipcrypt-pfx", "siv"}, ModeCase{"cryptopan", "hmac"},
                                           ModeCase{"hmac", "hmac"}),
                         [](const auto& info) {
                           std::string name = info.param.ip_mask + "_" + info.param.device_id_mask;
                           for (char& ch : name) ch = ch == '-' ? '_' : ch;
                           return name;
                         });

TEST(MaskingInetTest, InetColumnAnswersSubnetQueriesThroughAGistIndex) {
  std::string key = TestDir() + "/cryptopan.key";
  std::filesystem::remove(key);
  // The Crypto-PAn reference key: the sample's first ip masks the same as with any Crypto-PAn tool.
  CommandResult made = RunSqs2pg({"keygen", "--out", key, "--ip-mask", "cryptopan", "--import-hex",
                                  "1522178d33a4cf80130a5b1649907d10d8988f837979652762574c2d2a842202"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string queue = UniqueName("q");
  std::string table = UniqueName("t");
  Db db;
  db.Exec(fmt::format(
      "CREATE TABLE \"{0}\" (user_id varchar(128), device_type varchar(32), masked_ip inet, "
      "masked_device_id varchar(256), locale varchar(32), app_version varchar(15), create_date date);"
      "CREATE INDEX ON \"{0}\" USING gist (masked_ip inet_ops)",
      table));
  // Extra logins from one /24 the sample does not use, so the subnet holds several rows.
  std::string file = TestDir() + "/subnet.ndjson";
  {
    std::ofstream out(file);
    for (int host : {7, 99, 200}) {
      out << fmt::format(R"({{"user_id":"u{}","ip":"203.0.113.{}","device_id":"d{}"}})", host, host, host)
          << "\n";
    }
    out << R"({"user_id":"other","ip":"203.0.114.7","device_id":"d"})"
        << "\n";
  }
  ASSERT_EQ(RunSqs2pg({"send", "--create-queue", "--queue", queue, SampleDataPath(), file}).exit_code, 0);

  // siv values are not addresses: a run in siv mode refuses the inet column before reading anything.
  std::string siv_key = MakeKeyFile();
  CommandResult refused = RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", siv_key});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("masked_ip is inet"));

  CommandResult r = RunSqs2pg({"run", "--queue", queue, "--table", table, "--key-file", key});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("loaded 103"));

  CommandResult net =
      RunSqs2pg({"mask", "--key-file", key, "--field", "ip", "--prefix", "24", "203.0.113.1"});
  ASSERT_EQ(net.exit_code, 0) << net.err;
  std::string network = Lines(net.out).at(0);
  EXPECT_THAT(network, ::testing::EndsWith(".0/24"));
  EXPECT_EQ(db.Scalar(fmt::format("SELECT count(*) FROM \"{}\" WHERE masked_ip << '{}'", table, network)),
            "3");
  // The neighbouring /24 shares 22 leading bits, and so do the masked networks: exactly.
  CommandResult wider =
      RunSqs2pg({"mask", "--key-file", key, "--field", "ip", "--prefix", "22", "203.0.113.1"});
  ASSERT_EQ(wider.exit_code, 0);
  EXPECT_EQ(db.Scalar(fmt::format("SELECT count(*) FROM \"{}\" WHERE masked_ip << '{}'", table,
                                  Lines(wider.out).at(0))),
            "4");
  // With sequential scans off, the planner answers << from the GiST index.
  auto plan = db.Rows(fmt::format(
      "SET enable_seqscan = off; EXPLAIN SELECT * FROM \"{}\" WHERE masked_ip << '{}'", table, network));
  std::string text;
  for (const auto& row : plan) text += *row[0] + "\n";
  EXPECT_THAT(text, HasSubstr("Index"));
  // The published vector, through the whole pipeline: 24.5.0.80 is not in the sample, but a masked
  // value unmasks to the sample's address.
  auto first = db.Rows(fmt::format("SELECT host(masked_ip) FROM \"{}\" WHERE user_id = 'u7'", table));
  ASSERT_EQ(first.size(), 1u);
  CommandResult back = RunSqs2pg({"unmask", "--key-file", key, *first[0][0]});
  EXPECT_EQ(Lines(back.out).at(0), "203.0.113.7");
}

}  // namespace
}  // namespace sqs2pg::integration
