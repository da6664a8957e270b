// `run --metrics-addr` against the real stack: the scrape passes promtool's lint, the dashboard
// and the alert rules query only metrics sqs2pg exports, and a real Prometheus server scrapes the
// loaded count and answers it through its HTTP API.

#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "harness.h"

extern char** environ;

namespace sqs2pg::integration {
namespace {

using ::testing::HasSubstr;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A child process with its output in a file; SIGTERM (then SIGKILL) and reaped when destroyed,
// whatever the test did.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::string& log) : log_(log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    if (posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Child() { Stop(); }
  // SIGTERM, up to 10 s to exit, then SIGKILL. Returns the exit status (-1 if killed).
  int Stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return exit_code_;
  }
  bool started() const { return pid_ > 0; }
  std::string Log() const { return RunShell("cat '" + log_ + "'").out; }

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string log_;
};

template <typename F>
bool WaitFor(F done, std::chrono::seconds limit = std::chrono::seconds(20)) {
  for (auto until = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < until;) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    queue_ = UniqueName("q");
    table_ = UniqueName("t");
    key_ = MakeKeyFile();
    dir_ = TestDir();
    CommandResult sent = RunSqs2pg({"send", "--create-queue", "--queue", queue_, SampleDataPath()});
    ASSERT_EQ(sent.exit_code, 0) << sent.err;
    port_ = FreePort();
  }

  // `run --follow` with metrics on port_, until the fixture ends.
  std::unique_ptr<Child> StartSqs2pg() {
    auto child = std::make_unique<Child>(
        std::vector<std::string>{SQS2PG_BINARY, "run", "--follow", "--wait-seconds", "1", "--queue", queue_,
                                 "--table", table_, "--key-file", key_, "--metrics-addr",
                                 fmt::format("127.0.0.1:{}", port_)},
        dir_ + "/sqs2pg.log");
    EXPECT_TRUE(child->started());
    return child;
  }

  long Rows() {
    if (db_.Scalar(fmt::format("SELECT to_regclass('\"{}\"') IS NOT NULL", table_)) != "t") return 0;
    return db_.Count(table_);
  }

  // The /metrics answer once the sample is loaded (99 rows, 1 reject) and deleted.
  std::string ScrapeAfterLoad(Child& sqs2pg) {
    EXPECT_TRUE(WaitFor([&] { return Rows() == 99; })) << sqs2pg.Log();
    httplib::Client client("127.0.0.1", port_);
    std::string body;
    EXPECT_TRUE(WaitFor([&] {
      auto res = client.Get("/metrics");
      if (res && res->status == 200) body = res->body;
      return body.find("sqs2pg_messages_deleted_total 100\n") != std::string::npos;
    })) << body;
    return body;
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string queue_, table_, key_, dir_;
  int port_ = 0;
  Db db_;
};

TEST_F(MetricsTest, PromtoolLintsTheScrapeOfARunningSqs2pg) {
  auto sqs2pg = StartSqs2pg();
  std::string scrape = ScrapeAfterLoad(*sqs2pg);
  EXPECT_THAT(scrape, HasSubstr("sqs2pg_messages_loaded_total 99\n"));
  EXPECT_THAT(scrape, HasSubstr("sqs2pg_messages_rejected_total{reason=\"missing_field\"} 1\n"));
  EXPECT_THAT(scrape, HasSubstr("sqs2pg_postgres_connections_up 2\n"));
  std::string path = WriteFile("scrape.txt", scrape);
  CommandResult lint = RunShell("promtool check metrics < '" + path + "'");
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
  EXPECT_EQ(lint.out + lint.err, "") << "promtool has remarks";
  // The probes: the loop turns, SQS and Postgres answer.
  httplib::Client client("127.0.0.1", port_);
  auto healthz = client.Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);
  auto readyz = client.Get("/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 200) << readyz->body;
  EXPECT_EQ(sqs2pg->Stop(), 0) << sqs2pg->Log();
  EXPECT_THAT(sqs2pg->Log(), HasSubstr(fmt::format("metrics: serving http://127.0.0.1:{}/metrics", port_)));
}

TEST_F(MetricsTest, DashboardAndAlertsQueryOnlyExportedMetrics) {
  auto sqs2pg = StartSqs2pg();
  std::string path = WriteFile("scrape.txt", ScrapeAfterLoad(*sqs2pg));
  std::string src = SQS2PG_SOURCE_DIR;
  CommandResult check =
      RunShell(fmt::format("python3 '{}/tests/metrics/check_metric_names.py' '{}' "
                           "'{}/deploy/grafana/sqs2pg.json' '{}/deploy/prometheus/alerts.yml'",
                           src, path, src, src));
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out, HasSubstr("metric names"));
}

TEST_F(MetricsTest, PrometheusScrapesTheLoadedCount) {
  int prometheus_port = FreePort();
  std::string config = WriteFile("prometheus.yml", fmt::format(R"(global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sqs2pg
    static_configs:
      - targets: ["127.0.0.1:{}"]
)",
                                                               port_));
  RunShell("rm -rf '" + dir_ + "/tsdb'");
  Child prometheus({"prometheus", "--config.file=" + config, "--storage.tsdb.path=" + dir_ + "/tsdb",
                    fmt::format("--web.listen-address=127.0.0.1:{}", prometheus_port)},
                   dir_ + "/prometheus.log");
  ASSERT_TRUE(prometheus.started());
  auto sqs2pg = StartSqs2pg();
  ASSERT_TRUE(WaitFor([&] { return Rows() == 99; })) << sqs2pg->Log();
  // Prometheus's own view, through its HTTP API, once a scrape after the load has been stored.
  httplib::Client api("127.0.0.1", prometheus_port);
  std::string answer;
  bool seen = WaitFor(
      [&] {
        auto res = api.Get("/api/v1/query?query=sqs2pg_messages_loaded_total");
        if (!res || res->status != 200) return false;
        answer = res->body;
        return answer.find(R"("job":"sqs2pg")") != std::string::npos &&
               answer.find(R"(,"99"])") != std::string::npos;
      },
      std::chrono::seconds(25));
  EXPECT_TRUE(seen) << "Prometheus answered: " << answer << "\nits log:\n" << prometheus.Log();
  auto up = api.Get("/api/v1/query?query=up");
  ASSERT_TRUE(up);
  EXPECT_THAT(up->body, HasSubstr(R"(,"1"])"));
}

}  // namespace
}  // namespace sqs2pg::integration
