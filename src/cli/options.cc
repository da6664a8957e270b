#include "cli/options.h"

#include <cstdio>
#include <cstdlib>

namespace sqs2pg::cli {
namespace {

using enum Kind;
using enum Unit;

// Environment variables are SQS2PG_ and the flag in upper case with _ for -, except where the AWS
// SDKs already name one (they are read in the SDKs' order). The file key is the flag's name.
constexpr OptionSpec kOptions[] = {
    // Global: before or after the subcommand; top-level keys in the file.
    {"config", "PATH", kString, kNone, "", "SQS2PG_CONFIG", "", "none",
     "TOML file of options: the global ones as top-level keys, each subcommand's in a table named after it "
     "([run], which check reads too, [send], [keygen], [mask], [unmask], [schema], [rekey], [maintain]). "
     "Flags win over "
     "environment variables, which win over the file. Not a key in the file itself"},
    {"log-level", "LEVEL", kString, kNone, "", "SQS2PG_LOG_LEVEL", "info", "",
     "trace, debug, info, warn, error or off; logs go to stderr"},
    {"log-format", "FORMAT", kString, kNone, "", "SQS2PG_LOG_FORMAT", "text", "",
     "text (for people) or json (one object a line with ts, level, msg and fields such as message_id, "
     "queue, table, sqlstate, attempt, delay_ms: for a log shipper)"},

    // The queue: run, check and send.
    {"queue-url", "URL", kString, kNone, "run send", "SQS2PG_QUEUE_URL", "", "none",
     "Queue URL to use; wins over --queue"},
    {"queue", "NAME", kString, kNone, "run send", "SQS2PG_QUEUE", "login-queue", "",
     "Queue name, resolved with GetQueueUrl"},
    {"endpoint-url", "URL", kString, kNone, "run send", "AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL", "",
     "AWS for the region",
     "SQS endpoint every request goes to, whatever host the queue URL names, e.g. http://127.0.0.1:4566"},
    {"region", "REGION", kString, kNone, "run send", "AWS_REGION AWS_DEFAULT_REGION", "", "the profile's",
     "AWS region requests are signed for"},
    {"ca-file", "PATH", kString, kNone, "run send", "AWS_CA_BUNDLE", "",
     "the profile's ca_bundle, else the system's",
     "PEM file of the CAs trusted for an https SQS endpoint, instead of the system's (a private CA, a TLS "
     "proxy). Certificates and host names are always verified: no switch turns that off"},

    // Loading: run and check.
    {"sqs-protocol", "PROTOCOL", kString, kNone, "run send", "SQS2PG_SQS_PROTOCOL", "auto", "",
     "SQS protocol: json, query (LocalStack 0.14 and other older emulators), or auto: json, falling back to "
     "query when the endpoint does not understand json"},
    {"db", "CONNINFO", kString, kNone, "run rekey maintain", "SQS2PG_DB", "", "libpq's PG* variables",
     "libpq key=value string or postgresql:// URI. Several hosts with target_session_attrs=read-write follow "
     "a failover. TLS: sslmode=verify-full sslrootcert=/path/ca.pem (libpq's default, prefer, does not check "
     "the server). Unless it says otherwise: connect_timeout=10, TCP keepalives (10 s idle, 5 s interval, 3 "
     "probes), tcp_user_timeout=30000 and a 60 s statement_timeout for sqs2pg's own statements. Its password "
     "is never shown",
     Secret::kConninfoPassword},
    {"table", "NAME", kString, kNone, "run schema rekey maintain", "SQS2PG_TABLE", "user_logins", "",
     "Target table, optionally SCHEMA.TABLE; TABLE_ledger and TABLE_rejects are created beside it"},
    {"mapping", "PATH", kString, kNone, "run schema mask rekey", "SQS2PG_MAPPING", "",
     "the built-in login mapping",
     "Mapping file (TOML, docs/mapping.md): which JSON field or SQS attribute fills each column of the "
     "table, "
     "its type, rules and mask. Its `table` is the default for --table. Without it: the login table"},
    {"partition-by", "PERIOD", kString, kNone, "run maintain", "SQS2PG_PARTITION_BY", "", "not partitioned",
     "When sqs2pg creates the target table: partition it by range on create_date, one partition a day or a "
     "month (pg_partman manages them where the extension is installed; else sqs2pg creates them ahead)"},
    {"key-file", "PATH", kString, kNone, "run mask unmask rekey", "SQS2PG_KEY_FILE", "",
     "the keyring text in SQS2PG_KEYS",
     "Keyring file (mode 0600). Without it and SQS2PG_KEYS there is no key, and the command fails with exit "
     "2: there is no built-in key"},
    {"follow", "", kBool, kNone, "run", "SQS2PG_FOLLOW", "false", "",
     "Keep consuming; by default run exits 0 once a long poll returns nothing and all work is committed"},
    {"dry-run", "", kBool, kNone, "run", "SQS2PG_DRY_RUN", "false", "",
     "Receive, validate and mask, report what a real run would do, then make the messages visible again: "
     "deletes nothing, writes nothing"},
    {"discard-messages", "", kBool, kNone, "run", "SQS2PG_DISCARD_MESSAGES", "false", "",
     "Receive, validate, mask and DELETE every message, writing nothing (the benchmark's queue-only ceiling)",
     Secret::kNo, false, true},
    {"receivers", "N", kInteger, kCount, "run", "SQS2PG_RECEIVERS", "8", "",
     "ReceiveMessage calls in flight at once (on one event loop); against AWS, throughput is about receivers "
     "x 10 / round trip"},
    {"db-connections", "N", kInteger, kCount, "run", "SQS2PG_DB_CONNECTIONS", "2", "",
     "Postgres connections loading batches in parallel, each batch one transaction"},
    {"max-in-flight", "N", kInteger, kMessages, "run", "SQS2PG_MAX_IN_FLIGHT", "",
     "receivers x 10 + 2 batches per connection",
     "Most messages received but not yet deleted: the memory bound"},
    {"batch-size", "N", kInteger, kMessages, "run rekey", "SQS2PG_BATCH_SIZE", "500", "",
     "Messages per load transaction (rekey: rows per transaction)"},
    {"batch-max-wait", "MS", kInteger, kMilliseconds, "run", "SQS2PG_BATCH_MAX_WAIT", "1000", "",
     "Load a partial batch after this long, so a trickle of messages is loaded promptly"},
    {"visibility-timeout", "S", kInteger, kSeconds, "run", "SQS2PG_VISIBILITY_TIMEOUT", "", "the queue's",
     "How long received messages stay hidden; a message still in hand after half of it is extended (the "
     "heartbeat). 0 makes every message visible again at once: for tests of redelivery only"},
    {"wait-seconds", "S", kInteger, kSeconds, "run", "SQS2PG_WAIT_SECONDS", "", "20 following, 1 draining",
     "Long-poll wait when idle"},
    {"batch-bytes", "BYTES", kInteger, kBytes, "run", "SQS2PG_BATCH_BYTES", "16777216", "",
     "Also load a batch once its message bodies total this many bytes (default 16 MiB)"},
    {"max-in-flight-bytes", "BYTES", kInteger, kBytes, "run", "SQS2PG_MAX_IN_FLIGHT_BYTES", "268435456", "",
     "Most bytes of message bodies received but not yet deleted; receiving pauses at the bound (default 256 "
     "MiB)"},
    {"sqs-retry-timeout", "S", kInteger, kSeconds, "run", "SQS2PG_SQS_RETRY_TIMEOUT", "300", "",
     "How long a drain keeps retrying a failing SQS call (jittered backoff, at most 5 s apart) before it "
     "exits 1; with --follow it retries for as long as it runs"},
    {"db-retry-timeout", "S", kInteger, kSeconds, "run", "SQS2PG_DB_RETRY_TIMEOUT", "300", "",
     "The same for Postgres: a drain rides out a restart or failover this long, including at start"},
    {"shutdown-timeout", "S", kInteger, kSeconds, "run", "SQS2PG_SHUTDOWN_TIMEOUT", "20", "",
     "After SIGTERM/SIGINT, how long to commit and delete what is in hand; the rest is left to SQS. A second "
     "signal exits at once"},
    {"max-receives", "N", kInteger, kCount, "run", "SQS2PG_MAX_RECEIVES", "10", "",
     "A message the database refuses for a reason other than its data (a trigger's error) is left for "
     "redelivery, and becomes a reject at its Nth delivery; 0 leaves it to the queue's redrive policy"},

    {"metrics-addr", "HOST:PORT", kString, kNone, "run", "SQS2PG_METRICS_ADDR", "", "off",
     "Serve Prometheus metrics (/metrics) and probes (/healthz, /readyz) on HOST:PORT, e.g. 127.0.0.1:9800 "
     "or "
     ":9800 (port 0: any free port, logged)"},

    // send
    {"create-queue", "", kBool, kNone, "send", "SQS2PG_CREATE_QUEUE", "false", "",
     "Create the queue first (nothing happens if it exists); a name ending in .fifo makes a FIFO queue, with "
     "content-based deduplication unless --dedup-id-field is given"},
    {"attribute", "NAME=VALUE,...", kString, kNone, "send", "SQS2PG_ATTRIBUTE", "", "none",
     "String message attributes sent with every message, e.g. tenant=acme,source=import (a mapping reads "
     "them as $attribute.NAME)"},
    {"group-id", "VALUE", kString, kNone, "send", "SQS2PG_GROUP_ID", "",
     "none: a FIFO queue needs this or --group-id-field",
     "FIFO queues: the MessageGroupId of every message (one group: one strict order); with --group-id-field, "
     "the group of the messages that lack that field"},
    {"group-id-field", "FIELD", kString, kNone, "send", "SQS2PG_GROUP_ID_FIELD", "", "none",
     "FIFO queues: take each message's MessageGroupId from this top-level field, e.g. user_id"},
    {"dedup-id-field", "FIELD", kString, kNone, "send", "SQS2PG_DEDUP_ID_FIELD", "",
     "the queue's content-based deduplication",
     "FIFO queues: take each message's MessageDeduplicationId from this top-level field"},

    // keygen
    {"ip-mask", "MODE", kString, kNone, "run mask unmask keygen rekey", "SQS2PG_IP_MASK", "",
     "the keyring's key for ip",
     "How ip is masked: siv (reversible, the default), ipcrypt-deterministic (an address), ipcrypt-pfx or "
     "cryptopan (prefix-preserving addresses), hmac (one-way)"},
    {"device-id-mask", "MODE", kString, kNone, "run mask unmask keygen rekey", "SQS2PG_DEVICE_ID_MASK", "",
     "the keyring's key for device_id",
     "How device_id is masked: siv (reversible, the default) or hmac (one-way)"},
    {"import-hex", "HEX", kString, kNone, "keygen", "SQS2PG_IMPORT_HEX", "", "a random key",
     "Use this key (hex) instead of a random one, for the mode --ip-mask or --device-id-mask names (siv if "
     "neither): e.g. a published test key. Prefer SQS2PG_IMPORT_HEX: a command line is visible to other "
     "users",
     Secret::kWhole},
    {"out", "PATH", kString, kNone, "keygen", "SQS2PG_OUT", "", "required",
     "Key file to create (never overwritten), or with --rotate the one to add a key to", Secret::kNo, true},
    {"rotate", "", kBool, kNone, "keygen", "SQS2PG_ROTATE", "false", "",
     "Add a new key to an existing key file: it masks from now on, the old keys still unmask"},

    // mask
    {"field", "FIELD", kString, kNone, "mask", "SQS2PG_FIELD", "", "--column instead",
     "Which login field the values are: ip or device_id"},
    {"column", "NAME", kString, kNone, "mask unmask keygen", "SQS2PG_COLUMN", "", "the login fields",
     "A masked column of a mapping (docs/mapping.md): keygen gives it a key of its own (with --mode; the "
     "keyring records it in an sqs2pg-column line); mask takes its mode and key from --mapping as run does; "
     "unmask needs it for the column's siv values (the column name is bound into them)"},
    {"mode", "MODE", kString, kNone, "keygen", "SQS2PG_MODE", "", "none",
     "keygen --column: the new key's mode (siv, hmac, ipcrypt-deterministic, ipcrypt-pfx or cryptopan)"},
    {"address-key-id", "ID", kString, kNone, "unmask rekey", "SQS2PG_ADDRESS_KEY_ID", "",
     "the keyring's only address-valued key; with several, none is guessed",
     "The key that made bare masked addresses whose key is not known otherwise: unmask's address values "
     "(take the row's masked_ip_key_id, or <column>_key_id), and rekey's rows whose key id is empty "
     "(written before the column existed). With several address-valued keys in the keyring, unmask "
     "refuses such a value and rekey leaves such rows, and counts them (or, on a table without the key id "
     "column, refuses to start), until this names one: a wrong key gives a plausible wrong address"},
    {"prefix", "BITS", kInteger, kBits, "mask", "SQS2PG_PREFIX", "", "none: whole addresses",
     "With a prefix-preserving ip mode: print the masked network of ADDRESS/BITS instead (e.g. 24 for IPv4, "
     "64 "
     "for IPv6), to look up a subnet with <<"},

    // schema
    {"message-retention", "S", kInteger, kSeconds, "maintain", "SQS2PG_MESSAGE_RETENTION", "1209600", "",
     "The queue's MessageRetentionPeriod: ledger days older than this plus a day are dropped (run reads it "
     "from the queue). The default, 14 days, is the most SQS allows, so never too short"},
    {"role", "ROLE", kString, kNone, "schema", "SQS2PG_ROLE", "", "none",
     "Role sqs2pg runs as: also print the GRANTs it needs (SELECT, INSERT, TEMPORARY)"},
};

// The space-separated words of a spec's field.
std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  while (!text.empty()) {
    size_t space = text.find(' ');
    words.push_back(text.substr(0, space));
    if (space == std::string_view::npos) break;
    text.remove_prefix(space + 1);
  }
  return words;
}

}  // namespace

std::span<const OptionSpec> AllOptions() { return kOptions; }

const OptionSpec& Spec(std::string_view name) {
  for (const OptionSpec& spec : kOptions) {
    if (spec.name == name) return spec;
  }
  std::fprintf(stderr, "sqs2pg: internal error: option %.*s is not in the registry\n",
               static_cast<int>(name.size()), name.data());
  std::abort();
}

std::string_view FileSection(std::string_view subcommand) {
  return subcommand == "check" ? std::string_view("run") : subcommand;
}

bool InSection(const OptionSpec& spec, std::string_view section) {
  if (section.empty()) return spec.sections.empty();
  for (std::string_view word : Words(spec.sections)) {
    if (word == section) return true;
  }
  return false;
}

std::vector<std::string> EnvNames(const OptionSpec& spec) {
  std::vector<std::string> names;
  for (std::string_view word : Words(spec.env)) names.emplace_back(word);
  return names;
}

std::string_view UnitName(Unit unit) {
  switch (unit) {
    case Unit::kSeconds:
      return "seconds";
    case Unit::kMilliseconds:
      return "milliseconds";
    case Unit::kBytes:
      return "bytes";
    case Unit::kMessages:
      return "messages";
    case Unit::kCount:
      return "count";
    case Unit::kBits:
      return "bits";
    case Unit::kNone:
      break;
  }
  return "";
}

}  // namespace sqs2pg::cli
