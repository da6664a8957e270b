// credential_process: an external command prints the credentials as JSON on stdout, as the AWS
// CLI documents (https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-sourcing-external.html).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "aws/credential_provider.h"

extern char** environ;

namespace sqs2pg::aws {
namespace {

// Credentials are a few KiB at most; a command that prints more is not a credential process.
constexpr size_t kMaxOutput = 64 * 1024;

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd = std::exchange(o.fd, -1);
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
};

struct ProcessOutput {
  int exit_status = -1;  // the exit code, or -1 when killed by a signal
  std::string out, err;
};

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Runs `/bin/sh -c command` with stdin from /dev/null, collecting stdout and stderr until it exits
// or `timeout` passes (then it is killed).
Result<ProcessOutput> RunCommand(const std::string& command, std::chrono::seconds timeout) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return Status::Permanent(Errno("pipe"));
  Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return Status::Permanent(Errno("pipe"));
  Fd err_read(err_pipe[0]), err_write(err_pipe[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_write.fd, 2);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, "/bin/sh", &actions, nullptr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Status::Permanent(std::string("cannot start /bin/sh: ") + std::strerror(rc));
  out_write.reset();
  err_write.reset();

  ProcessOutput output;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  std::array<pollfd, 2> fds = {pollfd{out_read.fd, POLLIN, 0}, pollfd{err_read.fd, POLLIN, 0}};
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int ready = poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        fds[i].fd = -1;  // EOF; the Fd closes it
        continue;
      }
      std::string& into = i == 0 ? output.out : output.err;
      if (into.size() < kMaxOutput) into.append(buffer, static_cast<size_t>(n));
    }
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return Status::Transient("credential_process did not finish within " + std::to_string(timeout.count()) +
                             " s and was killed");
  }
  output.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

std::string FirstLine(std::string_view text) {
  text = text.substr(0, text.find_first_of("\r\n"));
  return std::string(text.substr(0, 300));
}

class ProcessProviderImpl : public CredentialProvider {
 public:
  ProcessProviderImpl(std::string command, std::string name, std::chrono::seconds timeout)
      : command_(std::move(command)), name_(std::move(name)), timeout_(timeout) {}

  Result<std::optional<LoadedCredentials>> Load() override {
    // The command itself is not shown: it may carry an argument that is a secret.
    ASSIGN_OR_RETURN(ProcessOutput run, RunCommand(command_, timeout_));
    if (run.exit_status != 0) {
      std::string message =
          "credential_process exited with " +
          (run.exit_status < 0 ? std::string("a signal") : "status " + std::to_string(run.exit_status));
      if (!run.err.empty()) message += ": " + FirstLine(run.err);
      return Status::InvalidInput(std::move(message));
    }
    simdjson::dom::parser parser;
    simdjson::dom::object object;
    if (parser.parse(run.out.data(), run.out.size()).get(object)) {
      return Status::InvalidInput("credential_process did not print a JSON object on stdout");
    }
    int64_t version = 0;
    if (object["Version"].get(version) || version != 1) {
      return Status::InvalidInput("credential_process output must have \"Version\": 1");
    }
    auto field = [&object](const char* key) {
      std::string_view value;
      return object[key].get(value) ? std::string() : std::string(value);
    };
    LoadedCredentials loaded;
    loaded.credentials = {field("AccessKeyId"), field("SecretAccessKey"), field("SessionToken")};
    if (loaded.credentials.access_key_id.empty() || loaded.credentials.secret_access_key.empty()) {
      return Status::InvalidInput("credential_process output needs AccessKeyId and SecretAccessKey strings");
    }
    if (std::string expiration = field("Expiration"); !expiration.empty()) {
      loaded.expiration = ParseIso8601(expiration);
      if (!loaded.expiration) {
        return Status::InvalidInput("credential_process Expiration '" + FirstLine(expiration) +
                                    "' is not an ISO 8601 time");
      }
    }
    return std::optional<LoadedCredentials>(std::move(loaded));
  }
  std::string Name() const override { return name_; }

 private:
  std::string command_, name_;
  std::chrono::seconds timeout_;
};

}  // namespace

std::unique_ptr<CredentialProvider> ProcessProvider(std::string command, std::string name,
                                                    std::chrono::seconds timeout) {
  return std::make_unique<ProcessProviderImpl>(std::move(command), std::move(name), timeout);
}

}  // namespace sqs2pg::aws
