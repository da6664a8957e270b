#pragma once
// Test support, not part of the library: an HTTP server on loopback (cpp-httplib) and fake AWS
// credential endpoints, for the provider tests here and the refresh tests of src/source/sqs/.

#include <httplib.h>

#include <chrono>
#include <ctime>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "aws/provider.h"

namespace sqs2pg::aws::fakes {

using Clock = std::chrono::system_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

inline constexpr char kSecret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

// An HTTP server on 127.0.0.1 with an OS-chosen port; routes are set before it listens.
class Loopback {
 public:
  explicit Loopback(const std::function<void(httplib::Server&)>& routes) {
    routes(server_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(milliseconds(1));
  }
  ~Loopback() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

inline std::string Iso8601(Clock::time_point t) {
  std::time_t secs = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

inline std::string CredentialsJson(const std::string& id, Clock::time_point expiration) {
  return R"({"AccessKeyId":")" + id + R"(","SecretAccessKey":")" + kSecret +
         R"(","Token":"session-token","Expiration":")" + Iso8601(expiration) + R"("})";
}

inline ProviderSettings FastSettings() {
  ProviderSettings s;
  s.region = "us-east-1";
  s.metadata_connect_timeout = milliseconds(500);
  s.metadata_timeout = milliseconds(2000);
  s.sts_timeout = milliseconds(5000);
  s.process_timeout = seconds(10);
  return s;
}

// ---- Container credentials -------------------------------------------------------------------

struct ContainerEndpoint {
  std::mutex mu;
  std::vector<std::string> keys_handed_out;
  int refused = 0;
  seconds lifetime{3600};
  // Told each key handed out and when it expires (a fake SQS that honours the expiry); may be empty.
  std::function<void(const std::string& id, Clock::time_point expiration)> on_issue;
};

inline Loopback FakeContainerEndpoint(ContainerEndpoint& e, const std::string& expected_authorization) {
  return Loopback([&e, expected_authorization](httplib::Server& server) {
    server.Get("/creds", [&e, expected_authorization](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(e.mu);
      if (req.get_header_value("Authorization") != expected_authorization) {
        ++e.refused;
        res.status = 401;
        res.set_content(R"({"code":"Unauthorized"})", "application/json");
        return;
      }
      std::string id = "ASIACONTAINER" + std::to_string(e.keys_handed_out.size() + 1);
      e.keys_handed_out.push_back(id);
      auto expiration = Clock::now() + e.lifetime;
      if (e.on_issue) e.on_issue(id, expiration);
      res.set_content(CredentialsJson(id, expiration), "application/json");
    });
  });
}

}  // namespace sqs2pg::aws::fakes
