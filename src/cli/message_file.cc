#include "cli/message_file.h"

#include <fmt/format.h>
#include <simdjson.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace sqs2pg::cli {
namespace {

struct GzCloser {
  void operator()(gzFile f) const noexcept { gzclose(f); }
};

// gzread passes uncompressed files through unchanged, so one reader serves both.
Result<std::string> ReadMaybeGzipped(const std::string& path) {
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  if (!file) return Status::InvalidInput(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::string data;
  char buf[1 << 16];
  int n;
  while ((n = gzread(file.get(), buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
  if (n < 0) {
    int err = 0;
    return Status::InvalidInput(fmt::format("cannot read {}: {}", path, gzerror(file.get(), &err)));
  }
  return data;
}

Result<std::vector<std::string>> FromJsonArray(const std::string& path, const std::string& text) {
  simdjson::dom::parser parser;
  simdjson::dom::array array;
  if (auto error = parser.parse(text).get_array().get(array)) {
    return Status::InvalidInput(
        fmt::format("{} starts with '[' but is not a JSON array: {}", path, simdjson::error_message(error)));
  }
  std::vector<std::string> bodies;
  for (simdjson::dom::element item : array) bodies.push_back(simdjson::to_string(item));
  return bodies;
}

std::vector<std::string> FromLines(const std::string& text) {
  std::vector<std::string> bodies;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) bodies.push_back(std::move(line));
    start = end + 1;
  }
  return bodies;
}

}  // namespace

Result<std::vector<std::string>> ReadMessageBodies(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadMaybeGzipped(path));
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);  // a UTF-8 byte order mark
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return std::vector<std::string>{};
  if (text[first] == '[') return FromJsonArray(path, text);
  return FromLines(text);
}

}  // namespace sqs2pg::cli
