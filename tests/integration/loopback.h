#pragma once
// An HTTP server on 127.0.0.1 with an OS-chosen port, run by cpp-httplib on its own thread and
// stopped when it goes out of scope (so also when a test fails). Routes are set before it listens.

#include <httplib.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace sqs2pg::integration {

class Loopback {
 public:
  explicit Loopback(const std::function<void(httplib::Server&)>& routes) {
    routes(server_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Loopback() {
    server_.stop();
    thread_.join();
  }
  Loopback(const Loopback&) = delete;
  Loopback& operator=(const Loopback&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace sqs2pg::integration
