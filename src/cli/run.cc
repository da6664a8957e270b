// sqs2pg run: consume the queue into Postgres.

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <csignal>
#include <iostream>
#include <random>
#include <thread>

#include "common/retry.h"

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "pipeline/pipeline.h"
#include "sink/null/null_sink.h"
#include "sink/postgres/dry_run_sink.h"
#include "sink/postgres/postgres_sink.h"
#include "source/dry_run/dry_run_source.h"
#include "source/sqs/async_sqs_source.h"
#include "source/sqs/sqs_client.h"
#include "transform/login_transform.h"
#include "transform/masker.h"

namespace sqs2pg::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};

// The first SIGTERM/SIGINT asks for a bounded shutdown; a second one ends the process at once.
// Only async-signal-safe calls here.
void RequestStop(int signo) {
  if (g_signals.fetch_add(1) > 0) {
    constexpr char kMessage[] =
        "sqs2pg: second signal, exiting now; messages not committed are left to SQS\n";
    ssize_t ignored = write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    (void)ignored;
    _exit(128 + signo);
  }
  g_stop = true;
}

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
  std::string partition_by;  // "", "day" or "month": how a table sqs2pg creates is partitioned
  std::string key_file;
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
  size_t batch_bytes = size_t{16} << 20;
  size_t max_in_flight_bytes = size_t{256} << 20;
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

// How long the ledger keeps a day of message ids: as long as the queue keeps a message
// (MessageRetentionPeriod), plus the margin. Unknown: SQS's maximum, 14 days, never too short.
sink::LedgerRetention LedgerRetentionOf(sqs::SqsClient& client, const std::string& queue_url) {
  sink::LedgerRetention retention;
  auto attributes = client.GetQueueAttributes(queue_url, {"MessageRetentionPeriod"});
  std::int64_t seconds = -1;
  if (attributes.ok()) {
    if (auto it = attributes->find("MessageRetentionPeriod"); it != attributes->end()) {
      auto [end, error] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), seconds);
      if (error != std::errc() || end != it->second.data() + it->second.size()) seconds = -1;
    }
  }
  if (seconds > 0 && seconds <= 14 * 86'400) {
    retention.retention = std::chrono::seconds(seconds);
  } else {
    spdlog::warn("the queue's MessageRetentionPeriod is not known ({}); the ledger keeps 14 days",
                 attributes.ok() ? "not in its attributes" : attributes.status().message());
  }
  return retention;
}

// The visibility timeout receives get: the flag's, else the queue's own. The heartbeat needs it.
Result<int> VisibilityTimeout(sqs::SqsClient& client, const std::string& queue_url, int flag) {
  if (flag >= 0) return flag;
  ASSIGN_OR_RETURN(auto attributes, client.GetQueueAttributes(queue_url, {"VisibilityTimeout"}));
  auto it = attributes.find("VisibilityTimeout");
  if (it == attributes.end()) return 30;  // SQS's documented default
  // From the server: a value that is not a number is an error, never an exception.
  int seconds = -1;
  const std::string& text = it->second;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (error != std::errc() || end != text.data() + text.size() || seconds < 0 || seconds > 43200) {
    return Status::Permanent(
        "queue attribute VisibilityTimeout is not a number of seconds from 0 to 43200; pass "
        "--visibility-timeout");
  }
  return seconds;
}

// Connects and prepares one loader's connection. Postgres being down at start is ridden out like
// an outage mid-run: retried for the db retry timeout (for ever when following), until a stop.
Result<std::unique_ptr<sink::PostgresSink>> ConnectSink(const RunOptions& o,
                                                        const sink::PostgresSinkConfig& config,
                                                        std::optional<sink::TableShape>& shape) {
  FailureStreak failures;
  std::mt19937_64 rng{std::random_device{}()};
  RetryPolicy backoff{0, std::chrono::milliseconds(200), std::chrono::milliseconds(5000)};
  while (true) {
    Status st;
    auto connected = sink::PostgresSink::Connect(config);
    if (connected.ok()) {
      auto prepared = (*connected)->Prepare();
      if (prepared.ok()) {
        shape = *prepared;
        return std::move(connected).value();
      }
      st = prepared.status().Annotate(fmt::format("prepare table {}", o.table));
    } else {
      st = connected.status();
    }
    auto now = std::chrono::steady_clock::now();
    failures.Fail(now);
    if (!st.IsTransient() || g_stop ||
        (!o.follow && failures.Exhausted(now, std::chrono::seconds(o.db_retry_timeout))))
      return st;
    auto delay = BackoffDelay(backoff, failures.failures, rng);
    spdlog::warn("Postgres is not ready ({} tries), retrying in {} ms: {}", failures.failures, delay.count(),
                 st.message());
    for (auto until = now + delay; std::chrono::steady_clock::now() < until && !g_stop;)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string Summary(const pipeline::RunStats& s) {
  std::string line = fmt::format(
      "received {}, loaded {}, duplicates skipped {}, rejected {}, deleted {}, {:.2f} s, {:.1f} messages/s",
      s.received, s.loaded, s.duplicates, s.rejected, s.deleted, s.seconds, s.MessagesPerSecond());
  // Not committed: SQS delivers them again after their visibility timeout.
  if (s.left_for_redelivery > 0)
    line += fmt::format(", {} not committed (left in SQS for redelivery)", s.left_for_redelivery);
  // Committed but not deleted: SQS delivers them again and the ledger skips them.
  if (s.delete_failures > 0)
    line += fmt::format(", {} not deleted (will be skipped when redelivered)", s.delete_failures);
  return line;
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

// What a dry run found, on stdout: what a real run would have done, and that nothing changed.
void PrintDryRunReport(const pipeline::RunStats& s, const sink::DryRunSink& sink,
                       const Result<size_t>& released) {
  std::string ledger = sink.ledger_error().empty() ? "duplicates per the ledger"
                                                   : "duplicates not checked: " + sink.ledger_error();
  std::cout << fmt::format(
                   "dry run: received {}; a real run would load {}, reject {}, skip {} as duplicates ({}); "
                   "nothing was written or deleted, {} messages made visible again, {:.2f} s",
                   s.received, s.loaded, s.rejected, s.duplicates, ledger, released.ok() ? *released : 0,
                   s.seconds)
            << "\n";
  for (const auto& [reason, count] : sink.RejectsByReason()) {
    std::cout << fmt::format("  {:>8}  rejected: {}", count, reason) << "\n";
  }
  std::cout << std::flush;
}

int Run(const RunOptions& o) {
  if (o.dry_run && o.discard_messages) {
    return Fail(Status::InvalidInput("--dry-run and --discard-messages exclude each other"));
  }
  if (o.dry_run && o.follow) {
    // A dry run keeps every message it read hidden until it ends, so it must end.
    return Fail(Status::InvalidInput("--dry-run drains the queue once; it cannot --follow"));
  }
  auto keyring = LoadKeyring(o.key_file);
  if (!keyring.ok()) return Fail(keyring.status());
  auto masker = transform::Masker::Create(*keyring);
  if (!masker.ok()) return Fail(masker.status());

  // Before anything can block (a database that is down at start), so a stop is always heard.
  InstallStopHandlers();
  auto client_config = MakeClientConfig(o.queue);
  if (!client_config.ok()) return Fail(client_config.status());
  auto client = sqs::SqsClient::Create(*client_config);
  if (!client.ok()) return Fail(client.status());
  auto queue_url = ResolveQueueUrl(**client, o.queue);
  if (!queue_url.ok()) return Fail(queue_url.status());
  auto visibility = VisibilityTimeout(**client, *queue_url, o.visibility_timeout);
  if (!visibility.ok()) return Fail(visibility.status());

  std::vector<std::unique_ptr<MessageSink>> sinks;
  sink::DryRunSink* dry_sink = nullptr;
  std::optional<sink::TableShape> shape;  // the live table's, when there is one to read
  std::string server;
  if (o.discard_messages) {
    // The benchmark's ceiling: receive and delete, write nothing. Loses every message it reads.
    sinks.push_back(std::make_unique<sink::NullSink>());
    server = "nothing (--discard-messages: messages are deleted, no row is written)";
  } else if (o.dry_run) {
    // Read-only: the live column sizes and the ledger, if the database answers; no DDL, no write.
    std::unique_ptr<sink::PostgresSink> ledger;
    auto connected = sink::PostgresSink::Connect({o.db, o.table});
    if (connected.ok()) {
      auto inspected = (*connected)->Inspect();
      if (inspected.ok()) {
        shape = *inspected;
      } else {
        spdlog::warn("dry run: {}; checking against the sizes of the table sqs2pg would create",
                     inspected.status().message());
      }
      ledger = std::move(connected).value();
    } else {
      spdlog::warn("dry run: {}; checking against default column sizes, duplicates not checked",
                   connected.status().message());
    }
    auto dry = std::make_unique<sink::DryRunSink>(std::move(ledger));
    dry_sink = dry.get();
    sinks.push_back(std::move(dry));
    server = "nothing (dry run: no row is written and no message deleted)";
  } else {
    sink::LedgerRetention ledger_retention;
    for (int i = 0; i < o.db_connections; ++i) {
      // Each sink loads on a thread of its own, and a Masker is not thread-safe: one each, for the
      // bodies of rows the database refuses.
      auto sink_masker = transform::Masker::Create(*keyring);
      if (!sink_masker.ok()) return Fail(sink_masker.status());
      auto sealer = std::make_shared<transform::Masker>(std::move(sink_masker).value());
      sink::PostgresSinkConfig config{o.db, o.table};
      config.max_receives = o.max_receives;
      config.partition_by = o.partition_by;
      if (i == 0) ledger_retention = LedgerRetentionOf(**client, *queue_url);
      config.ledger_retention = ledger_retention;
      config.seal_body = [sealer](std::string_view plain) { return sealer->Mask(plain); };
      auto connected = ConnectSink(o, config, shape);
      if (!connected.ok() && g_stop) {
        // Asked to stop while waiting for the database: nothing was received, so nothing is lost.
        spdlog::info("stopped before Postgres was reachable: {}", connected.status().message());
        return kExitOk;
      }
      if (!connected.ok()) return Fail(connected.status());
      if (i == 0 && shape->rejects_lack_shape_columns) {
        spdlog::warn(
            "table {}_rejects has no body_bytes/body_shape columns and this role may not add them: each "
            "reject's size and shape go into its reason; `sqs2pg schema --table {}` shows the migration",
            o.table, o.table);
      }
      server = fmt::format("table {} on {}", o.table, (*connected)->ServerName());
      sinks.push_back(std::move(connected).value());
    }
  }

  std::optional<int> receive_visibility;
  if (o.visibility_timeout >= 0) receive_visibility = o.visibility_timeout;
  auto sqs_source = sqs::AsyncSqsSource::Create(*client_config, *queue_url, receive_visibility);
  if (!sqs_source.ok()) return Fail(sqs_source.status());
  // A dry run reads through DryRunSource, which deletes nothing and releases all at the end.
  std::optional<source::DryRunSource> dry_source;
  AsyncMessageSource* messages = sqs_source->get();
  if (o.dry_run) messages = &dry_source.emplace(**sqs_source, std::chrono::seconds(*visibility));
  // Without a table to read, checks use the sizes of the table sqs2pg would create.
  transform::LoginTransform transform(*masker, shape ? LimitsFor(*shape) : transform::ColumnLimits{});

  pipeline::PipelineOptions options;
  options.follow = o.follow;
  options.receivers = o.receivers;
  options.batch_size = o.batch_size;
  options.max_in_flight = o.max_in_flight;
  options.batch_max_wait = std::chrono::milliseconds(o.batch_max_wait_ms);
  options.poll_wait = std::chrono::seconds(o.wait_seconds >= 0 ? o.wait_seconds : (o.follow ? 20 : 1));
  options.visibility_timeout = std::chrono::seconds(*visibility);
  options.batch_bytes = o.batch_bytes;
  options.max_in_flight_bytes = o.max_in_flight_bytes;
  options.sqs_retry_timeout = std::chrono::seconds(o.sqs_retry_timeout);
  options.db_retry_timeout = std::chrono::seconds(o.db_retry_timeout);
  options.shutdown_timeout = std::chrono::seconds(o.shutdown_timeout);
  options.max_receives = o.max_receives;
  // SQS requires FIFO queue names to end in ".fifo".
  options.fifo = queue_url->size() > 5 && queue_url->ends_with(".fifo");
  if (o.visibility_timeout < 0 && *visibility > 0 &&
      std::chrono::seconds(*visibility) < options.shutdown_timeout) {
    spdlog::warn("the queue's visibility timeout ({} s) is shorter than the shutdown timeout ({} s)",
                 *visibility, o.shutdown_timeout);
  }
  if (g_stop) return kExitOk;  // stopped while waiting for Postgres: nothing was received
  auto pipeline_holder =
      std::make_unique<pipeline::Pipeline>(*messages, transform, std::move(sinks), options);
  pipeline::Pipeline& pipeline = *pipeline_holder;

  spdlog::info("consuming {} into {} ({}; {} receivers, {} connections, visibility {} s)", *queue_url, server,
               o.follow ? "following" : "until the queue is empty", o.receivers,
               (o.dry_run || o.discard_messages) ? 0 : o.db_connections, *visibility);
  auto progress = TerminalProgress();
  Status st = pipeline.Run(g_stop, progress);
  if (progress) std::cerr << "\r\033[K";
  if (o.dry_run) {
    auto released = dry_source->Release();
    PrintDryRunReport(pipeline.stats(), *dry_sink, released);
    if (!st.ok()) return Fail(st);
    if (!released.ok()) return Fail(released.status());
    return kExitOk;
  }
  std::cout << Summary(pipeline.stats()) << std::endl;
  const auto& stats = pipeline.stats();
  if (stats.shutdown_timed_out) {
    std::cerr << fmt::format(
        "sqs2pg: stopped after the shutdown timeout ({} s): {} messages were not committed and are left in "
        "SQS, which delivers them again after their visibility timeout\n",
        o.shutdown_timeout, stats.left_for_redelivery);
  }
  int code = st.ok() ? kExitOk : Fail(st);
  if (pipeline.loaders_busy()) {
    // A loader is still inside libpq (a connection attempt to a host that does not answer).
    // Nothing it holds was deleted, so ending the process here loses nothing.
    std::cout.flush();
    std::cerr.flush();
    _exit(code);
  }
  return code;
}

}  // namespace

Command AddRunCommand(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd =
      app.add_subcommand("run", "Consume the queue: validate, mask, load into Postgres, then delete");
  AddQueueOptions(*cmd, o->queue);
  cmd->add_option("--db", o->db, "libpq connection string or postgresql:// URI (default: PG* variables)");
  cmd->add_option("--table", o->table, "Target table, optionally SCHEMA.TABLE")->capture_default_str();
  cmd->add_option(
         "--partition-by", o->partition_by,
         "When sqs2pg creates the target table: partition it by range on create_date, one partition a "
         "day or a month (pg_partman manages them where the extension is installed; else sqs2pg "
         "creates them ahead)")
      ->check(CLI::IsMember({"day", "month"}));
  AddKeyFileOption(*cmd, o->key_file);
  cmd->add_flag("--follow", o->follow, "Keep consuming; default is to stop once the queue is empty");
  cmd->add_flag("--dry-run", o->dry_run,
                "Receive, validate and mask, report what a real run would do, then make the messages visible "
                "again: deletes nothing, writes nothing");
  // For the benchmark's queue-only ceiling; hidden from --help (group "") because it loses data.
  cmd->add_flag("--discard-messages", o->discard_messages,
                "Receive, validate, mask and DELETE every message, writing nothing")
      ->group("");
  cmd->add_option("--batch-size", o->batch_size, "Messages per load transaction")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--receivers", o->receivers, "ReceiveMessage calls in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--db-connections", o->db_connections, "Postgres connections loading batches in parallel")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option(
      "--max-in-flight", o->max_in_flight,
      "Most messages received but not yet deleted (default: receivers*10 + 2 batches per connection)");
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
  cmd->add_option("--batch-bytes", o->batch_bytes,
                  "Also load a batch once its message bodies total this many bytes")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30));
  cmd->add_option("--max-in-flight-bytes", o->max_in_flight_bytes,
                  "Most bytes of message bodies received but not yet deleted: the memory bound")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1} << 20, size_t{1} << 40));
  cmd->add_option(
         "--sqs-retry-timeout", o->sqs_retry_timeout,
         "Seconds a drain keeps retrying a failing SQS call before it gives up (following: for ever)")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400));
  cmd->add_option(
         "--db-retry-timeout", o->db_retry_timeout,
         "Seconds a drain keeps retrying Postgres (down, restarting, failing over) before it gives up "
         "(following: for ever)")
      ->capture_default_str()
      ->check(CLI::Range(0, 86400));
  cmd->add_option("--shutdown-timeout", o->shutdown_timeout,
                  "Seconds to commit what is in hand after SIGTERM/SIGINT; the rest is left to SQS. A second "
                  "signal exits at once")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  cmd->add_option(
         "--max-receives", o->max_receives,
         "Deliveries after which a message the database keeps refusing becomes a reject (0: leave it "
         "to the queue's redrive policy)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  return {cmd, [o]() { return Run(*o); }};
}

}  // namespace sqs2pg::cli
