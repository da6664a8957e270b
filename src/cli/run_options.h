#pragma once
// The options of `run`, which `check` shares so that it checks exactly what `run` would use.

#include <CLI/CLI.hpp>

#include <cstddef>
#include <string>

#include "cli/cli_common.h"

namespace sqs2pg::cli {

struct RunOptions {
  QueueOptions queue;
  std::string db;
  std::string table = "user_logins";
  bool table_given = false;  // --table (or its variable or file key) was set: it beats the mapping's
  std::string mapping;       // a mapping file; empty: the built-in login shape
  std::string partition_by;  // "", "day" or "month": how a table sqs2pg creates is partitioned
  std::string key_file;
  MaskModeOptions modes;
  bool follow = false;
  bool dry_run = false;
  bool discard_messages = false;
  size_t batch_size = 500;
  int receivers = 8;
  int db_connections = 2;
  size_t max_in_flight = 0;
  int batch_max_wait_ms = 1000;
  int visibility_timeout = -1;  // -1: the queue's own setting
  int wait_seconds = -1;        // -1: 20 when following, 1 when draining
  int sqs_retry_timeout = 300;  // seconds
  int db_retry_timeout = 300;   // seconds
  int shutdown_timeout = 20;    // seconds
  int max_receives = 10;
  std::string metrics_addr;  // empty: no metrics, no HTTP endpoint
  size_t batch_bytes = size_t{16} << 20;
  size_t max_in_flight_bytes = size_t{256} << 20;
};

// Binds every option of `run` (the [run] table) to `options`.
void AddRunOptions(CLI::App& cmd, RunOptions& options);

}  // namespace sqs2pg::cli
