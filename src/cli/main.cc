// sqs2pg: moves user-login events from an SQS queue into PostgreSQL, masking ip and device_id.

#include "cli/app.h"

namespace {

int RunApp(int argc, const char* const* argv) {
  sqs2pg::cli::App app;
  return sqs2pg::cli::Main(app, argc, argv);
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything is read: the keyring and every message's plaintext live in this memory.
  sqs2pg::cli::HardenProcess();
  return sqs2pg::cli::GuardedMain(RunApp, argc, argv);
}
