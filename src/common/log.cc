#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>

#include "common/json_writer.h"

namespace sqs2pg::log {
namespace {

// The fields of the line being written on this thread. spdlog's default logger is synchronous, so
// the formatter runs on the thread that logs, inside Write().
thread_local const Fields* t_fields = nullptr;
std::atomic<Format> g_format{Format::kText};

std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

void AppendValue(std::string& out, const Field::Value& value) {
  std::visit(
      [&out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          AppendJsonStringLossy(out, v);
        } else if constexpr (std::is_same_v<T, bool>) {
          out += v ? "true" : "false";
        } else {
          fmt::format_to(std::back_inserter(out), "{}", v);
        }
      },
      value);
}

// {"ts":"...Z","level":"...","msg":"...", then the fields}: one object a line.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    auto ms = duration_cast<milliseconds>(msg.time.time_since_epoch()).count();
    std::time_t seconds = static_cast<std::time_t>(ms / 1000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    std::string line;
    line.reserve(128 + msg.payload.size());
    fmt::format_to(std::back_inserter(line),
                   "{{\"ts\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"msg\":",
                   utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                   ms % 1000, LevelName(msg.level));
    AppendJsonStringLossy(line, std::string_view(msg.payload.data(), msg.payload.size()));
    for (const Field& field : t_fields ? *t_fields : Fields{}) {
      if (field.key == "ts" || field.key == "level" || field.key == "msg") continue;  // the stable keys win
      line += ',';
      AppendJsonStringLossy(line, field.key);
      line += ':';
      AppendValue(line, field.value);
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

std::unique_ptr<spdlog::formatter> MakeJsonFormatter() { return std::make_unique<JsonFormatter>(); }

void Setup(Format format, spdlog::level::level_enum level) {
  std::shared_ptr<spdlog::logger> logger;
  if (format == Format::kJson) {
    logger = std::make_shared<spdlog::logger>("sqs2pg", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger =
        std::make_shared<spdlog::logger>("sqs2pg", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(level);
  spdlog::set_default_logger(std::move(logger));
  g_format = format;
}

Format CurrentFormat() { return g_format; }

std::string_view SqlState(const Status& status) {
  constexpr std::string_view kMark = "(SQLSTATE ";
  std::string_view message = status.message();
  size_t at = message.rfind(kMark);
  if (at == std::string_view::npos || message.size() < at + kMark.size() + 5) return "";
  return message.substr(at + kMark.size(), 5);
}

void Write(spdlog::level::level_enum level, Fields fields, std::string_view message) {
  t_fields = &fields;
  spdlog::default_logger_raw()->log(level, "{}", message);
  t_fields = nullptr;
}

}  // namespace sqs2pg::log
