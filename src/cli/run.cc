// sqs2pg run: consume the queue into Postgres.

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "pipeline/pipeline.h"
#include "sink/null/null_sink.h"
#include "sink/postgres/postgres_sink.h"
#include "source/sqs/sqs_client.h"
#include "source/sqs/sqs_source.h"
#include "transform/login_transform.h"
#include "transform/masker.h"

namespace sqs2pg::cli {
namespace {

std::atomic<bool> g_stop{false};

void RequestStop(int) { g_stop = true; }

void InstallStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = RequestStop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct RunOptions {
  QueueOptions queue;
  std::string db;
  std::string table = "user_logins";
  std::string key_file;
  bool follow = false;
  bool dry_run = false;
  size_t batch_size = 500;
  int batch_max_wait_ms = 1000;
  int visibility_timeout = -1;  // -1: the queue's own setting
  int wait_seconds = -1;        // -1: 20 when following, 1 when draining
};

transform::ColumnLimits LimitsFor(const sink::TableShape& shape) {
  transform::ColumnLimits limits;
  limits.user_id = shape.user_id_chars;
  limits.device_type = shape.device_type_chars;
  limits.locale = shape.locale_chars;
  limits.app_version = shape.app_version_chars;
  limits.masked_value = std::min(shape.masked_ip_chars, shape.masked_device_id_chars);
  limits.app_version_is_integer = shape.app_version_is_integer;
  return limits;
}

std::string Summary(const pipeline::RunStats& s) {
  return fmt::format(
      "received {}, loaded {}, duplicates skipped {}, rejected {}, deleted {}, {:.2f} s, {:.1f} messages/s",
      s.received, s.loaded, s.duplicates, s.rejected, s.deleted, s.seconds, s.MessagesPerSecond());
}

// A live line on a terminal, redrawn at most four times a second.
pipeline::Pipeline::ProgressFn TerminalProgress() {
  if (!isatty(STDERR_FILENO)) return nullptr;
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  return [last](const pipeline::RunStats& s) {
    auto now = std::chrono::steady_clock::now();
    if (now - *last < std::chrono::milliseconds(250)) return;
    *last = now;
    std::cerr << "\r\033[K" << Summary(s) << std::flush;
  };
}

int Run(const RunOptions& o) {
  auto keyring = LoadKeyring(o.key_file);
  if (!keyring.ok()) return Fail(keyring.status());
  auto masker = transform::Masker::Create(*keyring);
  if (!masker.ok()) return Fail(masker.status());

  auto client = MakeSqsClient(o.queue);
  if (!client.ok()) return Fail(client.status());
  auto queue_url = ResolveQueueUrl(**client, o.queue);
  if (!queue_url.ok()) return Fail(queue_url.status());

  // --dry-run: everything but the database; messages are still received and deleted.
  std::unique_ptr<sink::PostgresSink> postgres;
  sink::NullSink null_sink;
  sink::TableShape shape;
  if (!o.dry_run) {
    auto connected = sink::PostgresSink::Connect({o.db, o.table});
    if (!connected.ok()) return Fail(connected.status());
    postgres = std::move(connected).value();
    auto prepared = postgres->Prepare();
    if (!prepared.ok()) return Fail(prepared.status().Annotate(fmt::format("prepare table {}", o.table)));
    shape = *prepared;
  }
  MessageSink& sink = o.dry_run ? static_cast<MessageSink&>(null_sink) : *postgres;

  sqs::SqsSourceConfig source_config{*queue_url, std::nullopt};
  if (o.visibility_timeout >= 0) source_config.visibility_timeout_seconds = o.visibility_timeout;
  sqs::SqsSource source(**client, source_config);
  transform::LoginTransform transform(*masker, LimitsFor(shape));

  pipeline::PipelineOptions options;
  options.follow = o.follow;
  options.batch_size = o.batch_size;
  options.batch_max_wait = std::chrono::milliseconds(o.batch_max_wait_ms);
  options.poll_wait = std::chrono::seconds(o.wait_seconds >= 0 ? o.wait_seconds : (o.follow ? 20 : 1));
  pipeline::Pipeline pipeline(source, transform, sink, options);

  spdlog::info("consuming {} into {} ({})", *queue_url,
               o.dry_run ? "nothing (dry run: messages are deleted, no row is written)"
                         : fmt::format("table {} on {}", o.table, postgres->ServerName()),
               o.follow ? "following" : "until the queue is empty");
  InstallStopHandlers();
  auto progress = TerminalProgress();
  Status st = pipeline.Run(g_stop, progress);
  if (progress) std::cerr << "\r\033[K";
  std::cout << Summary(pipeline.stats()) << std::endl;
  if (!st.ok()) return Fail(st);
  return kExitOk;
}

}  // namespace

Command AddRunCommand(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd =
      app.add_subcommand("run", "Consume the queue: validate, mask, load into Postgres, then delete");
  AddQueueOptions(*cmd, o->queue);
  cmd->add_option("--db", o->db, "libpq connection string or postgresql:// URI (default: PG* variables)");
  cmd->add_option("--table", o->table, "Target table, optionally SCHEMA.TABLE")->capture_default_str();
  AddKeyFileOption(*cmd, o->key_file);
  cmd->add_flag("--follow", o->follow, "Keep consuming; default is to stop once the queue is empty");
  cmd->add_flag("--dry-run", o->dry_run,
                "Receive, validate, mask and DELETE messages but write nothing (to measure the queue alone)");
  cmd->add_option("--batch-size", o->batch_size, "Messages per load transaction")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--batch-max-wait", o->batch_max_wait_ms, "Load a partial batch after this many ms")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600000));
  cmd->add_option("--visibility-timeout", o->visibility_timeout,
                  "Seconds a received message stays hidden (default: the queue's setting). 0 makes every "
                  "message visible again at once: for tests of redelivery only")
      ->check(CLI::Range(0, 43200));
  cmd->add_option("--wait-seconds", o->wait_seconds,
                  "Long-poll wait when idle (default 20 following, 1 draining)")
      ->check(CLI::Range(0, 20));
  return {cmd, [o]() { return Run(*o); }};
}

}  // namespace sqs2pg::cli
