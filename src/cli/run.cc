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

#include "common/log.h"
#include "common/retry.h"

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/mapping_table.h"
#include "cli/options.h"
#include "cli/run_options.h"
#include "metrics/http_server.h"
#include "metrics/sqs2pg_metrics.h"
#include "pipeline/pipeline.h"
#include "sink/null/null_sink.h"
#include "sink/postgres/dry_run_sink.h"
#include "sink/postgres/postgres_sink.h"
#include "source/dry_run/dry_run_source.h"
#include "source/sqs/async_sqs_source.h"
#include "source/sqs/sqs_client.h"
#include "transform/login_transform.h"
#include "transform/mapping/mapped_transform.h"
#include "transform/mapping/mapping.h"
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
// quiet: the retries are logged at debug level. The connections are made at once, and while the
// database is down each would say so: the first one speaks for all of them.
Result<std::unique_ptr<sink::PostgresSink>> ConnectSink(const RunOptions& o,
                                                        const sink::PostgresSinkConfig& config,
                                                        std::optional<sink::TableShape>& shape, bool quiet) {
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
    log::Log(quiet ? spdlog::level::debug : spdlog::level::warn,
             {{"table", o.table},
              {"attempt", failures.failures},
              {"delay_ms", delay.count()},
              {"sqlstate", log::SqlState(st)}},
             "Postgres is not ready ({} tries), retrying in {} ms: {}", failures.failures, delay.count(),
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
  // Only for a person watching: never into a log file or a JSON stream.
  if (!isatty(STDERR_FILENO) || log::CurrentFormat() == log::Format::kJson) return nullptr;
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

int Run(RunOptions o) {
  // A mapping says what each message becomes (docs/mapping.md); without one, the login table.
  std::optional<transform::mapping::Mapping> mapping;
  if (!o.mapping.empty()) {
    auto loaded = transform::mapping::LoadMappingFile(o.mapping);
    if (!loaded.ok()) return Fail(loaded.status());
    mapping = std::move(loaded).value();
    if (!o.table_given && !mapping->table.empty()) o.table = mapping->table;
    if (!o.partition_by.empty()) {
      return Fail(Status::InvalidInput(
          "--partition-by partitions the login table by create_date; with --mapping, create the table "
          "partitioned as you need it (sqs2pg schema --mapping prints its DDL) and sqs2pg loads into it"));
    }
  }
  if (o.dry_run && o.discard_messages) {
    return Fail(Status::InvalidInput("--dry-run and --discard-messages exclude each other"));
  }
  if (o.dry_run && o.follow) {
    // A dry run keeps every message it read hidden until it ends, so it must end.
    return Fail(Status::InvalidInput("--dry-run drains the queue once; it cannot --follow"));
  }
  auto keyring = LoadKeyring(o.key_file);
  if (!keyring.ok()) return Fail(keyring.status());
  auto masker = transform::Masker::Create(*keyring, ToMaskerOptions(o.modes));
  if (!masker.ok()) return Fail(masker.status());

  // Before anything can block (a database that is down at start), so a stop is always heard.
  InstallStopHandlers();
  // Metrics and probes are served from the start: /healthz answers while Postgres is awaited.
  // Declared before everything that updates them, so they outlive it.
  metrics::Registry registry;
  std::unique_ptr<metrics::Metrics> metrics;
  std::unique_ptr<metrics::HttpServer> http;
  if (!o.metrics_addr.empty()) {
    metrics = std::make_unique<metrics::Metrics>(registry);
    metrics::AddProcessMetrics(registry);
    metrics->health.needs_postgres = !(o.dry_run || o.discard_messages);
    auto server = metrics::HttpServer::Start(o.metrics_addr, *metrics);
    if (!server.ok()) return Fail(server.status());
    http = std::move(server).value();
    spdlog::info("metrics: serving http://{}/metrics, /healthz and /readyz", http->address());
  }
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
    sink::PostgresSinkConfig inspect_config{o.db, o.table};
    if (mapping) inspect_config.columns = TableColumnsOf(*mapping);
    auto connected = sink::PostgresSink::Connect(inspect_config);
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
    std::vector<sink::PostgresSinkConfig> configs;
    for (int i = 0; i < o.db_connections; ++i) {
      // Each sink loads on a thread of its own, and a Masker is not thread-safe: one each, for the
      // bodies of rows the database refuses.
      auto sink_masker = transform::Masker::Create(*keyring, ToMaskerOptions(o.modes));
      if (!sink_masker.ok()) return Fail(sink_masker.status());
      auto sealer = std::make_shared<transform::Masker>(std::move(sink_masker).value());
      sink::PostgresSinkConfig config{o.db, o.table};
      config.max_receives = o.max_receives;
      config.metrics = metrics.get();
      config.partition_by = o.partition_by;
      if (i == 0) config.ledger_retention = LedgerRetentionOf(**client, *queue_url);
      if (i > 0) config.ledger_retention = configs.front().ledger_retention;
      config.seal_body = [sealer](std::string_view plain) { return sealer->Mask(plain); };
      config.masked_ip_key_id = masker->key_id(transform::MaskField::kIp);
      if (mapping) config.columns = TableColumnsOf(*mapping);
      configs.push_back(std::move(config));
    }
    // All connections set up at once: each is a dozen round trips, and one after the other they
    // delayed a drain's first receive by as many again. Creating the tables is safe from several
    // sessions (and processes) at once: each creation runs under an advisory lock, IF NOT EXISTS.
    std::vector<std::optional<Result<std::unique_ptr<sink::PostgresSink>>>> connected(configs.size());
    std::vector<std::optional<sink::TableShape>> shapes(configs.size());
    {
      std::vector<std::thread> others;
      for (size_t i = 1; i < configs.size(); ++i) {
        others.emplace_back([&, i] { connected[i] = ConnectSink(o, configs[i], shapes[i], /*quiet=*/true); });
      }
      connected[0] = ConnectSink(o, configs[0], shapes[0], /*quiet=*/false);
      for (std::thread& t : others) t.join();
    }
    shape = shapes[0];
    for (auto& attempt : connected) {
      auto& one = *attempt;  // every thread has been joined: each has its answer
      if (!one.ok() && g_stop) {
        // Asked to stop while waiting for the database: nothing was received, so nothing is lost.
        spdlog::info("stopped before Postgres was reachable: {}", one.status().message());
        return kExitOk;
      }
      if (!one.ok()) return Fail(one.status());
    }
    if (shape->rejects_lack_shape_columns) {
      spdlog::warn(
          "table {}_rejects has no body_bytes/body_shape columns and this role may not add them: each "
          "reject's size and shape go into its reason; `sqs2pg schema --table {}` shows the migration",
          o.table, o.table);
    }
    if (!mapping && shape->lacks_masked_ip_key_id &&
        transform::AddressValued(masker->mode(transform::MaskField::kIp))) {
      spdlog::warn(
          "table {} has no masked_ip_key_id column and this role may not add it: its masked ips are bare "
          "addresses with no record of their key, so `sqs2pg rekey` cannot re-mask them after a rotation "
          "to another address-valued key; `sqs2pg schema --table {}` shows the migration",
          o.table, o.table);
    }
    server = fmt::format("table {} on {}", o.table, (**connected[0])->ServerName());
    for (auto& one : connected) sinks.push_back(std::move(*one).value());
  }

  std::optional<int> receive_visibility;
  if (o.visibility_timeout >= 0) receive_visibility = o.visibility_timeout;
  auto sqs_source = sqs::AsyncSqsSource::Create(*client_config, *queue_url, receive_visibility);
  if (!sqs_source.ok()) return Fail(sqs_source.status());
  (*sqs_source)->SetMetrics(metrics.get());
  // SQS sends the sender's message attributes only when asked: ask when a column reads one.
  if (mapping && std::any_of(mapping->columns.begin(), mapping->columns.end(), [](const auto& c) {
        return c.from.kind == transform::mapping::SourceKind::kAttribute;
      })) {
    (*sqs_source)->RequestMessageAttributes();
  }
  // A dry run reads through DryRunSource, which deletes nothing and releases all at the end.
  std::optional<source::DryRunSource> dry_source;
  AsyncMessageSource* messages = sqs_source->get();
  if (o.dry_run) messages = &dry_source.emplace(**sqs_source, std::chrono::seconds(*visibility));
  if (!mapping && shape && shape->masked_ip_is_inet &&
      !transform::AddressValued(masker->mode(transform::MaskField::kIp))) {
    return Fail(Status::InvalidInput(fmt::format(
        "table {}: column masked_ip is inet, which holds only address-valued masks; the ip key is {}: pass "
        "--ip-mask ipcrypt-deterministic, ipcrypt-pfx or cryptopan (sqs2pg keygen --rotate --ip-mask MODE "
        "adds "
        "a key)",
        o.table, transform::ModeName(masker->mode(transform::MaskField::kIp)))));
  }
  // Without a table to read, checks use the sizes of the table sqs2pg would create.
  std::unique_ptr<MessageTransform> transform;
  if (mapping) {
    transform::mapping::CompileOptions compile;
    if (shape && !shape->live_columns.empty()) {
      auto fits = CheckLiveTable(*mapping, *shape, o.table);
      if (!fits.ok()) return Fail(fits.status());
      compile = std::move(fits).value();
    }
    auto mapped = transform::mapping::MappedTransform::Create(*mapping, *masker, compile);
    if (!mapped.ok()) return Fail(mapped.status());
    transform = std::move(mapped).value();
  } else {
    transform = std::make_unique<transform::LoginTransform>(
        *masker, shape ? LimitsFor(*shape) : transform::ColumnLimits{});
  }

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
  options.metrics = metrics.get();
  if (o.visibility_timeout < 0 && *visibility > 0 &&
      std::chrono::seconds(*visibility) < options.shutdown_timeout) {
    spdlog::warn("the queue's visibility timeout ({} s) is shorter than the shutdown timeout ({} s)",
                 *visibility, o.shutdown_timeout);
  }
  if (g_stop) return kExitOk;  // stopped while waiting for Postgres: nothing was received
  auto pipeline_holder =
      std::make_unique<pipeline::Pipeline>(*messages, *transform, std::move(sinks), options);
  pipeline::Pipeline& pipeline = *pipeline_holder;

  int connections = (o.dry_run || o.discard_messages) ? 0 : o.db_connections;
  log::Info({{"event", "start"},
             {"queue", *queue_url},
             {"table", o.table},
             {"follow", o.follow},
             {"dry_run", o.dry_run},
             {"receivers", o.receivers},
             {"db_connections", connections},
             {"visibility_timeout_s", *visibility}},
            "consuming {} into {} ({}; {} receivers, {} connections, visibility {} s)", *queue_url, server,
            o.follow ? "following" : "until the queue is empty", o.receivers, connections, *visibility);
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
  log::Info({{"event", "stop"},
             {"queue", *queue_url},
             {"table", o.table},
             {"received", stats.received},
             {"loaded", stats.loaded},
             {"rejected", stats.rejected},
             {"duplicates", stats.duplicates},
             {"deleted", stats.deleted},
             {"seconds", stats.seconds}},
            "stopped: {}", Summary(stats));
  if (stats.shutdown_timed_out) {
    Complain(
        fmt::format("stopped after the shutdown timeout ({} s): {} messages were not committed and are left "
                    "in SQS, which "
                    "delivers them again after their visibility timeout",
                    o.shutdown_timeout, stats.left_for_redelivery));
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

void AddRunOptions(CLI::App& cmd, RunOptions& options) {
  RunOptions* o = &options;
  AddQueueOptions(cmd, o->queue);
  AddOption(cmd, "db", o->db);
  AddOption(cmd, "table", o->table);
  AddOption(cmd, "mapping", o->mapping);
  AddOption(cmd, "partition-by", o->partition_by)->check(CLI::IsMember({"day", "month"}));
  AddKeyFileOption(cmd, o->key_file);
  AddMaskModeOptions(cmd, o->modes);
  AddOption(cmd, "follow", o->follow);
  AddOption(cmd, "dry-run", o->dry_run);
  AddOption(cmd, "discard-messages", o->discard_messages);
  AddOption(cmd, "batch-size", o->batch_size)->check(CLI::Range(1, 100000));
  AddOption(cmd, "receivers", o->receivers)->check(CLI::Range(1, 256));
  AddOption(cmd, "db-connections", o->db_connections)->check(CLI::Range(1, 64));
  AddOption(cmd, "max-in-flight", o->max_in_flight);
  AddOption(cmd, "batch-max-wait", o->batch_max_wait_ms)->check(CLI::Range(0, 3600000));
  AddOption(cmd, "visibility-timeout", o->visibility_timeout)->check(CLI::Range(0, 43200));
  AddOption(cmd, "wait-seconds", o->wait_seconds)->check(CLI::Range(0, 20));
  AddOption(cmd, "batch-bytes", o->batch_bytes)->check(CLI::Range(size_t{1024}, size_t{1} << 30));
  AddOption(cmd, "max-in-flight-bytes", o->max_in_flight_bytes)
      ->check(CLI::Range(size_t{1} << 20, size_t{1} << 40));
  AddOption(cmd, "sqs-retry-timeout", o->sqs_retry_timeout)->check(CLI::Range(0, 86400));
  AddOption(cmd, "db-retry-timeout", o->db_retry_timeout)->check(CLI::Range(0, 86400));
  AddOption(cmd, "shutdown-timeout", o->shutdown_timeout)->check(CLI::Range(0, 3600));
  AddOption(cmd, "max-receives", o->max_receives)->check(CLI::Range(0, 1000));
  AddOption(cmd, "metrics-addr", o->metrics_addr);
}

Command AddRunCommand(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd =
      app.add_subcommand("run", "Consume the queue: validate, mask, load into Postgres, then delete");
  AddRunOptions(*cmd, *o);
  return {cmd, [o, cmd]() {
            o->table_given = cmd->get_option("--table")->count() > 0;
            return Run(*o);
          }};
}

}  // namespace sqs2pg::cli
