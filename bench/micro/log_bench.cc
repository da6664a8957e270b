// The cost of a log line: what a reject or a retry pays to be logged, in text and in JSON, and
// what a site below the level pays (nothing is formatted). Written to a sink that drops the bytes,
// so the figure is sqs2pg's own formatting and escaping, not the terminal's.

#include <benchmark/benchmark.h>
#include <spdlog/sinks/null_sink.h>

#include <memory>
#include <string>

#include "common/log.h"

namespace sqs2pg {
namespace {

void UseLogger(log::Format format, spdlog::level::level_enum level) {
  auto logger = std::make_shared<spdlog::logger>("bench", std::make_shared<spdlog::sinks::null_sink_st>());
  if (format == log::Format::kJson) {
    logger->set_formatter(log::MakeJsonFormatter());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(level);
  spdlog::set_default_logger(logger);
}

// The line pipeline.cc writes for each rejected message.
void RejectLine(benchmark::State& state, log::Format format, spdlog::level::level_enum level) {
  UseLogger(format, level);
  std::string id = "5f0c2d4e-7b1a-4c3e-9d2f-0123456789ab";
  std::string reason = "field app_version: \"2.x.y\" is not a version number like 2.3.0";
  for (auto _ : state) {
    log::Info({{"message_id", id}, {"event", "reject"}}, "message {} rejected: {}", id, reason);
  }
}

void BM_RejectLineText(benchmark::State& state) {
  RejectLine(state, log::Format::kText, spdlog::level::info);
}
BENCHMARK(BM_RejectLineText);
void BM_RejectLineJson(benchmark::State& state) {
  RejectLine(state, log::Format::kJson, spdlog::level::info);
}
BENCHMARK(BM_RejectLineJson);
// --log-level warn: an info site costs a level check.
void BM_RejectLineBelowLevel(benchmark::State& state) {
  RejectLine(state, log::Format::kJson, spdlog::level::warn);
}
BENCHMARK(BM_RejectLineBelowLevel);

}  // namespace
}  // namespace sqs2pg
