// sqs2pg: moves user-login events from an SQS queue into PostgreSQL, masking ip and device_id.

#include "cli/app.h"

int main(int argc, char** argv) {
  sqs2pg::cli::App app;
  return sqs2pg::cli::Main(app, argc, argv);
}
