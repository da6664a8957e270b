#pragma once
// What every fuzz target shares. A target is a plain function of the input bytes, so the same code
// runs under libFuzzer (clang, -fsanitize=fuzzer: SQS2PG_FUZZ_MAIN defines LLVMFuzzerTestOneInput)
// and in the GoogleTest that replays the corpora and every crash ever found (any compiler).
// A target aborts, through FUZZ_CHECK, when an invariant of the code under test does not hold,
// so the fuzzer reports logic errors as well as memory errors.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace sqs2pg::fuzz {

using Target = void (*)(std::string_view data);

// Entry points, one per fuzz/<name>_fuzzer.cc.
void FuzzTransform(std::string_view data);
void FuzzSqsResponse(std::string_view data);
void FuzzCopyFormat(std::string_view data);
void FuzzKeyring(std::string_view data);
void FuzzUnmask(std::string_view data);
void FuzzMappingFile(std::string_view data);
void FuzzMappedTransform(std::string_view data);

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* what) {
  // The invariant only: never the input, which may hold plaintext ip or device_id (libFuzzer keeps
  // the crashing input in a file of its own).
  std::fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", file, line, what);
  std::abort();
}

}  // namespace sqs2pg::fuzz

#define FUZZ_CHECK(cond)                                                 \
  do {                                                                   \
    if (!(cond)) ::sqs2pg::fuzz::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (0)

#ifdef SQS2PG_FUZZ_MAIN
#define SQS2PG_FUZZ_ENTRY(fn)                                                         \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
    fn(std::string_view(reinterpret_cast<const char*>(data), size));                  \
    return 0;                                                                         \
  }
#else
#define SQS2PG_FUZZ_ENTRY(fn)
#endif
