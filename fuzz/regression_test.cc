// Replays every fuzz input kept in the repository through the same entry points libFuzzer drives:
// the seed corpora (fuzz/corpus/<target>/) and every input that once crashed a target or broke one
// of its invariants (fuzz/regressions/<target>/). Built with the normal compiler and run by ctest,
// so a fixed bug stays fixed without clang or libFuzzer.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"

namespace sqs2pg::fuzz {
namespace {

namespace fs = std::filesystem;

struct Case {
  const char* name;
  Target target;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

const Case kTargets[] = {{"transform", FuzzTransform},
                         {"sqs_response", FuzzSqsResponse},
                         {"copy_format", FuzzCopyFormat},
                         {"keyring", FuzzKeyring},
                         {"unmask", FuzzUnmask},
                         {"mapping_file", FuzzMappingFile},
                         {"mapped_transform", FuzzMappedTransform}};

size_t ReplayDir(const fs::path& dir, Target target) {
  if (!fs::is_directory(dir)) return 0;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    // A broken invariant aborts the test binary: say first which file it was.
    std::cout << "replay " << file.string() << std::endl;
    std::ifstream in(file, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    target(data);  // a broken invariant aborts, naming it
  }
  return files.size();
}

class FuzzReplay : public ::testing::TestWithParam<Case> {};

TEST_P(FuzzReplay, SeedCorpusRunsClean) {
  size_t n = ReplayDir(fs::path(SQS2PG_FUZZ_DIR) / "corpus" / GetParam().name, GetParam().target);
  EXPECT_GT(n, 0u) << "no seed corpus for " << GetParam().name;
}

TEST_P(FuzzReplay, FoundCrashesStayFixed) {
  ReplayDir(fs::path(SQS2PG_FUZZ_DIR) / "regressions" / GetParam().name, GetParam().target);
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay, ::testing::ValuesIn(kTargets),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sqs2pg::fuzz
