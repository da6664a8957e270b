// sqs2pg send: put messages on the queue with SendMessageBatch.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

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
};

// Sends one batch; returns how many entries SQS refused (each is logged).
Result<size_t> SendBatch(sqs::SqsClient& client, const std::string& queue_url,
                         std::vector<sqs::SendEntry>& batch) {
  ASSIGN_OR_RETURN(std::vector<sqs::BatchEntryFailure> failures, client.SendMessageBatch(queue_url, batch));
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
    queue_url = (*client)->CreateQueue(o.queue.queue_name, {});
  } else {
    queue_url = ResolveQueueUrl(**client, o.queue);
  }
  if (!queue_url.ok()) return Fail(queue_url.status());

  size_t sent = 0, failed = 0;
  for (const std::string& path : o.files) {
    auto bodies = ReadMessageBodies(path);
    if (!bodies.ok()) return Fail(bodies.status());
    std::vector<sqs::SendEntry> batch;
    size_t batch_bytes = 0;
    for (size_t i = 0; i < bodies->size(); ++i) {
      std::string& body = (*bodies)[i];
      if (body.size() > kMaxPayloadBytes) {
        return Fail(Status::InvalidInput(fmt::format("{}: message {} is {} bytes, over SQS's limit of {}",
                                                     path, i + 1, body.size(), kMaxPayloadBytes)));
      }
      if (batch.size() == kMaxBatchEntries || batch_bytes + body.size() > kMaxPayloadBytes) {
        auto refused = SendBatch(**client, *queue_url, batch);
        if (!refused.ok()) return Fail(refused.status().Annotate(fmt::format("send messages from {}", path)));
        failed += *refused;
        batch_bytes = 0;
      }
      batch.push_back({fmt::format("m{}", i), std::move(body)});
      batch_bytes += batch.back().body.size();
      ++sent;
    }
    if (!batch.empty()) {
      auto refused = SendBatch(**client, *queue_url, batch);
      if (!refused.ok()) return Fail(refused.status().Annotate(fmt::format("send messages from {}", path)));
      failed += *refused;
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
  return {cmd, [o]() { return Send(*o); }};
}

}  // namespace sqs2pg::cli
