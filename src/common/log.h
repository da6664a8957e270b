#pragma once
// Structured logging on top of spdlog. A log site gives a human sentence and, where it has them,
// fields (message_id, queue, table, sqlstate, attempt, delay_ms, ...):
//
//   log::Warn({{"attempt", n}, {"delay_ms", delay.count()}}, "load failed, retrying in {} ms",
//   delay.count());
//
// With --log-format text a line is the sentence only, as before; with json it is one object a line,
// {"ts":"2026-11-27T19:20:01.123Z","level":"warn","msg":"...","attempt":3,"delay_ms":400}, escaped
// for any bytes. Plain spdlog calls come out in the same format, without fields. Fields never hold
// a secret or a plaintext ip/device_id: they obey the same rule as messages.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "common/status.h"

namespace sqs2pg::log {

enum class Format { kText, kJson };

// Makes sqs2pg's logger (stderr) the default one, in `format`, at `level`. Call again to change.
void Setup(Format format, spdlog::level::level_enum level);
Format CurrentFormat();
// The JSON formatter Setup uses, for a logger of one's own (the tests').
std::unique_ptr<spdlog::formatter> MakeJsonFormatter();

struct Field {
  using Value = std::variant<std::string_view, std::int64_t, std::uint64_t, double, bool>;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  template <std::signed_integral T>
  Field(std::string_view k, T v) : key(k), value(static_cast<std::int64_t>(v)) {}
  template <std::unsigned_integral T>
  requires(!std::same_as<T, bool>) Field(std::string_view k, T v)
      : key(k), value(static_cast<std::uint64_t>(v)) {}
  std::string_view key;
  Value value;
};
using Fields = std::initializer_list<Field>;

// The SQLSTATE a Postgres error's message ends with ("... (SQLSTATE 23505)", as the sink writes
// them), or "" if it has none.
std::string_view SqlState(const Status& status);

// Writes one line with its fields (the fields only show in JSON).
void Write(spdlog::level::level_enum level, Fields fields, std::string_view message);

template <typename... Args>
void Log(spdlog::level::level_enum level, Fields fields, fmt::format_string<Args...> format, Args&&... args) {
  if (!spdlog::should_log(level)) return;
  Write(level, fields, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void Debug(Fields fields, fmt::format_string<Args...> format, Args&&... args) {
  Log(spdlog::level::debug, fields, format, std::forward<Args>(args)...);
}
template <typename... Args>
void Info(Fields fields, fmt::format_string<Args...> format, Args&&... args) {
  Log(spdlog::level::info, fields, format, std::forward<Args>(args)...);
}
template <typename... Args>
void Warn(Fields fields, fmt::format_string<Args...> format, Args&&... args) {
  Log(spdlog::level::warn, fields, format, std::forward<Args>(args)...);
}
template <typename... Args>
void Error(Fields fields, fmt::format_string<Args...> format, Args&&... args) {
  Log(spdlog::level::err, fields, format, std::forward<Args>(args)...);
}

}  // namespace sqs2pg::log
