// sqs2pg send: put messages on the queue with SendMessageBatch.

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/message_file.h"
#include "cli/options.h"
#include "common/log.h"
#include "source/sqs/sqs_client.h"

namespace sqs2pg::cli {
namespace {

// SQS limits a message, and a whole batch, to 256 KiB; a batch to ten entries.
constexpr size_t kMaxPayloadBytes = 256 * 1024;
constexpr size_t kMaxBatchEntries = 10;

struct SendOptions {
  QueueOptions queue;
  std::vector<std::string> files;
  bool create_queue = false;
  // FIFO queues: where each message's MessageGroupId and MessageDeduplicationId come from.
  std::string group_id;
  std::string group_id_field;
  std::string dedup_id_field;
  std::string attributes;  // "NAME=VALUE[,NAME=VALUE...]": String message attributes of every message
};

// --attribute's list, checked against SQS's rules for names (1-256 of A-Z a-z 0-9 _ - ., not
// starting with AWS. or Amazon.).
Result<std::vector<std::pair<std::string, std::string>>> ParseAttributes(std::string_view list) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!list.empty()) {
    std::string_view item = list.substr(0, list.find(','));
    list.remove_prefix(std::min(list.size(), item.size() + 1));
    size_t eq = item.find('=');
    std::string_view name = item.substr(0, eq);
    bool valid =
        eq != std::string_view::npos && !name.empty() && name.size() <= 256 &&
        std::all_of(name.begin(), name.end(),
                    [](char c) {
                      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
                    }) &&
        !name.starts_with("AWS.") && !name.starts_with("Amazon.");
    if (!valid)
      return Status::InvalidInput(
          "--attribute takes NAME=VALUE[,NAME=VALUE...], a NAME of 1-256 of A-Z a-z 0-9 _ - .");
    if (eq + 1 == item.size())
      return Status::InvalidInput("--attribute " + std::string(name) + ": SQS refuses an empty value");
    out.emplace_back(name, item.substr(eq + 1));
  }
  return out;
}

// How messages are sent to this queue.
struct QueueKind {
  bool fifo = false;
  bool content_based_dedup = false;
};

// FIFO queue names end in ".fifo"; SQS enforces it, so the URL alone tells.
bool IsFifoUrl(std::string_view queue_url) {
  return queue_url.size() > 5 && queue_url.substr(queue_url.size() - 5) == ".fifo";
}

// SQS's rule for MessageGroupId and MessageDeduplicationId: 1-128 characters, letters, digits
// and punctuation (printable ASCII without space).
bool IsValidFifoId(std::string_view id) {
  return !id.empty() && id.size() <= 128 &&
         std::all_of(id.begin(), id.end(), [](char c) { return c >= '!' && c <= '~'; });
}

// The text of a top-level string or number member of a JSON object body. Errors name the field,
// never the value (it can be PII).
Result<std::string> FieldText(simdjson::dom::parser& parser, const std::string& body,
                              const std::string& field) {
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc)) return Status::InvalidInput("the message is not valid JSON");
  simdjson::dom::object object;
  if (doc.get(object)) return Status::InvalidInput("the message is not a JSON object");
  simdjson::dom::element value;
  if (object.at_key(field).get(value)) return Status::InvalidInput(fmt::format("it has no field {}", field));
  if (value.is_string()) return std::string(value.get_string().value_unsafe());
  if (value.is_number()) return simdjson::minify(value);
  return Status::InvalidInput(fmt::format("its field {} is neither a string nor a number", field));
}

// Fills in the FIFO ids of one entry, or says which message of which file cannot have them.
Status SetFifoIds(const SendOptions& o, simdjson::dom::parser& parser, const std::string& path, size_t index,
                  sqs::SendEntry& entry) {
  auto fail = [&](std::string_view what) {
    return Status::InvalidInput(fmt::format("{}: message {}: {}", path, index + 1, what));
  };
  if (o.group_id_field.empty()) {
    entry.message_group_id = o.group_id;
  } else {
    Result<std::string> group = FieldText(parser, entry.body, o.group_id_field);
    // With both options, --group-id is the group of a message that lacks the field (README's own
    // sample data has one with no user_id), so one odd message does not stop the whole send.
    if (!group.ok() && !o.group_id.empty() && group.status().message().starts_with("it has no field")) {
      group = o.group_id;
    }
    if (!group.ok()) return fail(group.status().message() + ", which --group-id-field names");
    if (!IsValidFifoId(*group)) {
      return fail(fmt::format("field {} is not a valid MessageGroupId (1-128 letters, digits or punctuation)",
                              o.group_id_field));
    }
    entry.message_group_id = std::move(*group);
  }
  if (!o.dedup_id_field.empty()) {
    Result<std::string> dedup = FieldText(parser, entry.body, o.dedup_id_field);
    if (!dedup.ok()) return fail(dedup.status().message() + ", which --dedup-id-field names");
    if (!IsValidFifoId(*dedup)) {
      return fail(
          fmt::format("field {} is not a valid MessageDeduplicationId (1-128 letters, digits or punctuation)",
                      o.dedup_id_field));
    }
    entry.deduplication_id = std::move(*dedup);
  }
  return Status::Ok();
}

// Checks the group options against the queue, once, before anything is sent: a FIFO queue
// without a group would otherwise refuse every message, one error each.
Status CheckFifoOptions(const SendOptions& o, const std::string& queue_url, const QueueKind& kind) {
  bool grouped = !o.group_id.empty() || !o.group_id_field.empty();
  if (!kind.fifo) {
    if (grouped || !o.dedup_id_field.empty()) {
      return Status::InvalidInput(
          fmt::format("--group-id, --group-id-field and --dedup-id-field are for FIFO queues (names ending "
                      "in .fifo); {} is "
                      "a standard queue",
                      queue_url));
    }
    return Status::Ok();
  }
  if (!grouped) {
    return Status::InvalidInput(fmt::format(
        "{} is a FIFO queue: every message needs a MessageGroupId. Pass --group-id VALUE (one group: "
        "one strict order) or --group-id-field FIELD (e.g. --group-id-field user_id: an order per user)",
        queue_url));
  }
  if (!o.group_id.empty() && !IsValidFifoId(o.group_id)) {
    return Status::InvalidInput("--group-id must be 1-128 letters, digits or punctuation");
  }
  if (o.dedup_id_field.empty() && !kind.content_based_dedup) {
    return Status::InvalidInput(fmt::format(
        "FIFO queue {} has no ContentBasedDeduplication, so every message needs a MessageDeduplicationId: "
        "pass --dedup-id-field FIELD, or turn on ContentBasedDeduplication for the queue",
        queue_url));
  }
  return Status::Ok();
}

Result<QueueKind> ReadQueueKind(sqs::SqsClient& client, const std::string& queue_url) {
  QueueKind kind;
  kind.fifo = IsFifoUrl(queue_url);
  if (!kind.fifo) return kind;
  ASSIGN_OR_RETURN(auto attributes,
                   client.GetQueueAttributes(queue_url, {"FifoQueue", "ContentBasedDeduplication"}));
  kind.content_based_dedup = attributes["ContentBasedDeduplication"] == "true";
  return kind;
}

// Sends one batch; returns how many entries SQS refused (each is logged).
Result<size_t> SendBatch(sqs::SqsClient& client, const std::string& queue_url, const QueueKind& kind,
                         std::vector<sqs::SendEntry>& batch) {
  // On a FIFO queue every entry carries a deduplication id (given or content-based), so a batch
  // whose answer was lost can be sent again without duplicates.
  ASSIGN_OR_RETURN(std::vector<sqs::BatchEntryFailure> failures,
                   client.SendMessageBatch(queue_url, batch, /*deduplicated=*/kind.fifo));
  for (const auto& f : failures) {
    log::Error({{"queue", queue_url}, {"code", f.code}}, "message {} was not sent: {}: {}", f.id, f.code,
               f.message);
  }
  batch.clear();
  return failures.size();
}

int Send(const SendOptions& o) {
  auto client = MakeSqsClient(o.queue);
  if (!client.ok()) return Fail(client.status());
  Result<std::string> queue_url = std::string();
  if (o.create_queue) {
    if (!o.queue.queue_url.empty())
      return Fail(Status::InvalidInput("--create-queue needs --queue NAME, not --queue-url"));
    std::map<std::string, std::string> attributes;
    if (IsFifoUrl(o.queue.queue_name)) {
      attributes["FifoQueue"] = "true";
      // Without a field to take deduplication ids from, the body is the id (SHA-256 of it).
      if (o.dedup_id_field.empty()) attributes["ContentBasedDeduplication"] = "true";
    }
    queue_url = (*client)->CreateQueue(o.queue.queue_name, attributes);
  } else {
    queue_url = ResolveQueueUrl(**client, o.queue);
  }
  if (!queue_url.ok()) return Fail(queue_url.status());
  auto kind = ReadQueueKind(**client, *queue_url);
  if (!kind.ok()) return Fail(kind.status());
  if (Status st = CheckFifoOptions(o, *queue_url, *kind); !st.ok()) return Fail(st);
  auto attributes = ParseAttributes(o.attributes);
  if (!attributes.ok()) return Fail(attributes.status());
  simdjson::dom::parser parser;

  size_t sent = 0, failed = 0;
  for (const std::string& path : o.files) {
    auto bodies = ReadMessageBodies(path);
    if (!bodies.ok()) return Fail(bodies.status());
    // Every message of the file is checked before the first is sent, so a bad one does not stop
    // the file half sent.
    std::vector<sqs::SendEntry> entries;
    entries.reserve(bodies->size());
    for (size_t i = 0; i < bodies->size(); ++i) {
      std::string& body = (*bodies)[i];
      if (body.size() > kMaxPayloadBytes) {
        return Fail(Status::InvalidInput(fmt::format("{}: message {} is {} bytes, over SQS's limit of {}",
                                                     path, i + 1, body.size(), kMaxPayloadBytes)));
      }
      entries.push_back({fmt::format("m{}", i), std::move(body)});
      entries.back().attributes = *attributes;
      if (kind->fifo) {
        if (Status st = SetFifoIds(o, parser, path, i, entries.back()); !st.ok()) return Fail(st);
      }
    }
    std::vector<sqs::SendEntry> batch;
    size_t batch_bytes = 0;
    auto send_batch = [&]() -> Status {
      auto refused = SendBatch(**client, *queue_url, *kind, batch);
      if (!refused.ok()) return refused.status().Annotate(fmt::format("send messages from {}", path));
      failed += *refused;
      batch_bytes = 0;
      return Status::Ok();
    };
    for (sqs::SendEntry& entry : entries) {
      if (batch.size() == kMaxBatchEntries || batch_bytes + entry.body.size() > kMaxPayloadBytes) {
        if (Status st = send_batch(); !st.ok()) return Fail(st);
      }
      batch_bytes += entry.body.size();
      batch.push_back(std::move(entry));
      ++sent;
    }
    if (!batch.empty()) {
      if (Status st = send_batch(); !st.ok()) return Fail(st);
    }
  }
  std::cout << fmt::format("sent {} messages to {}", sent - failed, *queue_url);
  if (failed > 0) std::cout << fmt::format(" ({} refused)", failed);
  std::cout << std::endl;
  return failed == 0 ? kExitOk : kExitFailure;
}

}  // namespace

Command AddSendCommand(CLI::App& app) {
  auto o = std::make_shared<SendOptions>();
  CLI::App* cmd =
      app.add_subcommand("send", "Send messages from files (JSON array or NDJSON, optionally gzipped)");
  AddQueueOptions(*cmd, o->queue);
  cmd->add_option("files", o->files, "Files to send")->required()->check(CLI::ExistingFile);
  AddOption(*cmd, "create-queue", o->create_queue);
  AddOption(*cmd, "group-id", o->group_id);
  AddOption(*cmd, "group-id-field", o->group_id_field);
  AddOption(*cmd, "attribute", o->attributes);
  AddOption(*cmd, "dedup-id-field", o->dedup_id_field);
  return {cmd, [o]() { return Send(*o); }};
}

}  // namespace sqs2pg::cli
