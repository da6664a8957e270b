#pragma once
// What the subcommands share: exit codes, the queue flags, and loading the masking keys.

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "transform/keyring.h"
#include "transform/masker.h"

namespace sqs2pg::sqs {
class SqsClient;
struct ClientConfig;
}  // namespace sqs2pg::sqs

namespace sqs2pg::cli {

// 0 success; 1 the work failed at run time; 2 the command line or configuration is wrong.
enum ExitCode : int { kExitOk = 0, kExitFailure = 1, kExitUsage = 2 };

// Tells the user on stderr: "sqs2pg: <message>", or a JSON log line with --log-format json.
void Complain(std::string_view message);
// Complains of the status and returns the exit code that fits it.
int Fail(const Status& status);

struct QueueOptions {
  std::string queue_url;
  std::string queue_name = "login-queue";
  std::string endpoint_url;
  std::string region;
  std::string ca_file;
  std::string sqs_protocol = "auto";  // json, query or auto
};
void AddQueueOptions(CLI::App& app, QueueOptions& options);

// Endpoint, region and credentials from the flags, the environment and the AWS files.
Result<sqs::ClientConfig> MakeClientConfig(const QueueOptions& options);
// A client for them.
Result<std::unique_ptr<sqs::SqsClient>> MakeSqsClient(const QueueOptions& options);
// --queue-url as given, else the URL of --queue looked up with GetQueueUrl.
Result<std::string> ResolveQueueUrl(sqs::SqsClient& client, const QueueOptions& options);

// --key-file, else SQS2PG_KEY_FILE, else the keyring text in SQS2PG_KEYS. No key: an error
// that says how to make one (there is deliberately no built-in default key).
Result<transform::Keyring> LoadKeyring(const std::string& key_file_flag);
void AddKeyFileOption(CLI::App& app, std::string& key_file);

// --ip-mask and --device-id-mask: the mode each field masks with (empty: the keyring's).
struct MaskModeOptions {
  std::string ip_mask;
  std::string device_id_mask;
};
void AddMaskModeOptions(CLI::App& app, MaskModeOptions& options);
// REQUIRES: the values passed AddMaskModeOptions' checks.
transform::MaskerOptions ToMaskerOptions(const MaskModeOptions& options);
// The keyring from --key-file (see LoadKeyring) and a Masker over it in the chosen modes.
Result<transform::Masker> LoadMasker(const std::string& key_file_flag, const MaskModeOptions& modes);

}  // namespace sqs2pg::cli
