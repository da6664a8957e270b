// process_* metrics from /proc/self, named as every Prometheus client library names them, so
// the usual dashboards and alerts (process restarts, memory, fd exhaustion) work unchanged.

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "metrics/sqs2pg_metrics.h"

namespace sqs2pg::metrics {
namespace {

struct DirCloser {
  void operator()(DIR* d) const noexcept { closedir(d); }
};

// The fields of /proc/self/stat after the command name (which may hold spaces and parentheses):
// fields[0] is field 3 of proc(5), "state".
std::vector<std::string> StatFields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  std::vector<std::string> fields;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return fields;
  std::istringstream words(line.substr(close + 1));
  for (std::string w; words >> w;) fields.push_back(w);
  return fields;
}

// proc(5) numbers fields from 1; StatFields starts at 3.
double StatField(const std::vector<std::string>& fields, size_t number) {
  size_t i = number - 3;
  return i < fields.size() ? std::stod(fields[i]) : 0;
}

double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double v = 0;
      in >> v;
      return v;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return 0;
}

double OpenFds() {
  std::unique_ptr<DIR, DirCloser> dir(opendir("/proc/self/fd"));
  if (!dir) return 0;
  double n = 0;
  while (dirent* e = readdir(dir.get())) {
    if (e->d_name[0] != '.') ++n;
  }
  return n - 1;  // the descriptor opendir itself holds
}

}  // namespace

void AddProcessMetrics(Registry& registry) {
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // Fixed for the process's life: computed once.
  const double start = BootTimeSeconds() + StatField(StatFields(), 22) / ticks;
  registry.AddCollector("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                        Type::kCounter, [ticks] {
                          auto f = StatFields();
                          return std::vector<Sample>{{{}, (StatField(f, 14) + StatField(f, 15)) / ticks}};
                        });
  registry.AddCollector("process_resident_memory_bytes", "Resident memory size in bytes.", Type::kGauge,
                        [page] {
                          return std::vector<Sample>{{{}, StatField(StatFields(), 24) * page}};
                        });
  registry.AddCollector("process_virtual_memory_bytes", "Virtual memory size in bytes.", Type::kGauge, [] {
    return std::vector<Sample>{{{}, StatField(StatFields(), 23)}};
  });
  registry.AddCollector("process_open_fds", "Number of open file descriptors.", Type::kGauge, [] {
    return std::vector<Sample>{{{}, OpenFds()}};
  });
  registry.AddCollector("process_max_fds", "Maximum number of open file descriptors.", Type::kGauge, [] {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    return std::vector<Sample>{{{}, static_cast<double>(limit.rlim_cur)}};
  });
  registry.AddCollector("process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.", Type::kGauge, [start] {
                          return std::vector<Sample>{{{}, start}};
                        });
}

}  // namespace sqs2pg::metrics
