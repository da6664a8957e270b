// The HTTP floor: what receive + delete alone costs a C++ client per message, with nothing else
// done (no signing, no JSON parser, no masking, no Postgres). Two ways, one queue each:
//
//   --transport curl     sqs2pg's own MultiTransport (libcurl's multi interface, socket API), the
//                        way `sqs2pg run` sends every ReceiveMessage and DeleteMessageBatch;
//   --transport sockets  plain keep-alive HTTP/1.1 on non-blocking sockets and one poll(2) loop:
//                        what a request costs without libcurl's per-request machinery.
//
// With --scheme https (curl only) the requests go over TLS to --port, verified with --ca-file.
//
// Each of --lanes lanes loops ReceiveMessage (10, WaitTimeSeconds 0) then DeleteMessageBatch of
// what came back, until a receive comes back empty; the run ends when every lane has. It prints
// one line: messages deleted, requests, and user+sys CPU of this process (getrusage), which
// bench/http_floor.sh turns into µs per message. This is a measuring tool for plain http://
// endpoints on loopback (fauxqs), not a client: it signs nothing, follows no redirect, reads only
// Content-Length bodies and stops at the first error.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "aws/multi_transport.h"

namespace {

using sqs2pg::aws::HttpHeader;
using sqs2pg::aws::HttpRequest;
using sqs2pg::aws::HttpResponse;
using sqs2pg::aws::MultiTransport;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "http_floor: %s\n", what.c_str());
  std::exit(1);
}

struct Options {
  std::string transport;
  std::string scheme = "http";
  std::string host;  // 127.0.0.1
  int port = 0;
  std::string ca_file;  // for https
  std::string queue_url;
  int lanes = 8;
  int attributes = 5;  // attribute names a receive asks for: 5 (as sqs2pg) or 2
};

// The same JSON bodies sqs2pg sends (the receive asks for the same attributes); with
// --attributes 2 only SentTimestamp and ApproximateReceiveCount, as sqs2pg asked before FIFO
// support (4974aac), to see what the other three cost the server.
std::string ReceiveBody(const std::string& queue_url, int attributes) {
  std::string names = attributes == 2 ? "[\"SentTimestamp\",\"ApproximateReceiveCount\"]"
                                      : "[\"SentTimestamp\",\"ApproximateReceiveCount\",\"MessageGroupId\","
                                        "\"SequenceNumber\",\"MessageDeduplicationId\"]";
  return "{\"QueueUrl\":\"" + queue_url +
         "\",\"MaxNumberOfMessages\":10,\"WaitTimeSeconds\":0,\"AttributeNames\":" + names +
         ",\"MessageSystemAttributeNames\":" + names + "}";
}

// Receipt handles, by a plain search: fauxqs's are UUIDs, nothing to unescape. Both transports
// use this, so the difference between them is the HTTP alone.
std::vector<std::string> ReceiptHandles(std::string_view body) {
  std::vector<std::string> handles;
  constexpr std::string_view kKey = "\"ReceiptHandle\":\"";
  for (size_t at = body.find(kKey); at != std::string_view::npos; at = body.find(kKey, at)) {
    at += kKey.size();
    size_t end = body.find('"', at);
    if (end == std::string_view::npos) Die("unterminated ReceiptHandle");
    handles.emplace_back(body.substr(at, end - at));
    at = end;
  }
  return handles;
}

std::string DeleteBody(const std::string& queue_url, const std::vector<std::string>& handles) {
  std::string body = "{\"QueueUrl\":\"" + queue_url + "\",\"Entries\":[";
  for (size_t i = 0; i < handles.size(); ++i) {
    if (i > 0) body += ',';
    body += "{\"Id\":\"" + std::to_string(i) + "\",\"ReceiptHandle\":\"" + handles[i] + "\"}";
  }
  return body + "]}";
}

// sqs2pg's headers, with a fixed signature of the real length (fauxqs does not check it).
std::vector<HttpHeader> Headers(const Options& o, std::string_view target) {
  return {{"Host", o.host + ":" + std::to_string(o.port)},
          {"Content-Type", "application/x-amz-json-1.0"},
          {"X-Amz-Target", std::string(target)},
          {"X-Amz-Date", "20261205T000000Z"},
          {"Authorization",
           "AWS4-HMAC-SHA256 Credential=test/20261205/us-east-1/sqs/aws4_request, "
           "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
           "Signature=0000000000000000000000000000000000000000000000000000000000000000"}};
}

// Every request has a deadline, as the sockets loop's poll does: a stuck server ends the run
// with an error instead of hanging it.
constexpr std::chrono::milliseconds kRequestTimeout{30000};

struct Counts {
  long messages = 0;
  long requests = 0;
};

// --- libcurl, through sqs2pg's MultiTransport --------------------------------------------------

void RunCurl(const Options& o, Counts& counts) {
  sqs2pg::aws::TransportOptions options;
  options.ca_file = o.ca_file;
  auto made = MultiTransport::Create(options);
  if (!made.ok()) Die(made.status().message());
  MultiTransport& transport = **made;
  const std::string url = o.scheme + "://" + o.host + ":" + std::to_string(o.port) + "/";
  int lanes_running = o.lanes;
  std::function<void()> receive;
  // A lane: receive, delete what came back, receive again; ends at an empty answer.
  std::function<void(std::vector<std::string>)> remove;
  receive = [&] {
    ++counts.requests;
    transport.Start({url, Headers(o, "AmazonSQS.ReceiveMessage"), ReceiveBody(o.queue_url, o.attributes),
                     kRequestTimeout},
                    [&](sqs2pg::Result<HttpResponse> r) {
                      if (!r.ok() || r->status != 200) Die("ReceiveMessage failed");
                      auto handles = ReceiptHandles(r->body);
                      if (handles.empty()) {
                        --lanes_running;
                        return;
                      }
                      remove(std::move(handles));
                    });
  };
  remove = [&](std::vector<std::string> handles) {
    ++counts.requests;
    long n = static_cast<long>(handles.size());
    transport.Start(
        {url, Headers(o, "AmazonSQS.DeleteMessageBatch"), DeleteBody(o.queue_url, handles), kRequestTimeout},
        [&, n](sqs2pg::Result<HttpResponse> r) {
          if (!r.ok() || r->status != 200) Die("DeleteMessageBatch failed");
          counts.messages += n;
          receive();
        });
  };
  for (int i = 0; i < o.lanes; ++i) receive();
  while (lanes_running > 0) transport.Poll(std::chrono::milliseconds(1000));
}

// --- plain keep-alive sockets -------------------------------------------------------------------

struct Lane {
  int fd = -1;
  bool receiving = true;  // which answer is awaited
  long deleting = 0;      // messages in the delete in flight
  std::string out;        // request bytes not yet sent
  size_t out_at = 0;
  std::string in;  // response bytes so far
  bool done = false;
};

std::string Request(const Options& o, std::string_view target, const std::string& body) {
  std::string r = "POST / HTTP/1.1\r\n";
  for (const HttpHeader& h : Headers(o, target)) r += h.name + ": " + h.value + "\r\n";
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  return r + body;
}

// Sends what it can now; the rest waits for POLLOUT.
void Flush(Lane& lane) {
  while (lane.out_at < lane.out.size()) {
    ssize_t n = send(lane.fd, lane.out.data() + lane.out_at, lane.out.size() - lane.out_at, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) Die(std::string("send: ") + std::strerror(errno));
    lane.out_at += static_cast<size_t>(n);
  }
}

void StartRequest(const Options& o, Lane& lane, std::string_view target, const std::string& body,
                  Counts& counts) {
  ++counts.requests;
  lane.out = Request(o, target, body);
  lane.out_at = 0;
  lane.in.clear();
  Flush(lane);
}

// A whole response in lane.in: its status and body, or false when more bytes are needed.
bool WholeResponse(const Lane& lane, int& status, std::string_view& body) {
  size_t end = lane.in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::string_view head(lane.in.data(), end);
  if (!head.starts_with("HTTP/1.1 ") || head.size() < 12) Die("not an HTTP/1.1 answer");
  status = std::atoi(std::string(head.substr(9, 3)).c_str());
  size_t length = std::string::npos;
  size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string_view::npos) {
    at += 2;
    std::string_view line = head.substr(at, head.find("\r\n", at) - at);
    if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0) {
      length = std::strtoul(std::string(line.substr(15)).c_str(), nullptr, 10);
    }
    if (line.size() > 18 && strncasecmp(line.data(), "transfer-encoding:", 18) == 0) {
      Die("chunked answers are not read by this tool");
    }
  }
  if (length == std::string::npos) Die("answer without Content-Length");
  if (lane.in.size() < end + 4 + length) return false;
  body = std::string_view(lane.in).substr(end + 4, length);
  return true;
}

void OnAnswer(const Options& o, Lane& lane, int status, std::string_view body, Counts& counts) {
  if (status != 200) Die("HTTP " + std::to_string(status));
  if (lane.receiving) {
    auto handles = ReceiptHandles(body);
    if (handles.empty()) {
      lane.done = true;
      return;
    }
    lane.receiving = false;
    lane.deleting = static_cast<long>(handles.size());
    StartRequest(o, lane, "AmazonSQS.DeleteMessageBatch", DeleteBody(o.queue_url, handles), counts);
  } else {
    counts.messages += lane.deleting;
    lane.receiving = true;
    StartRequest(o, lane, "AmazonSQS.ReceiveMessage", ReceiveBody(o.queue_url, o.attributes), counts);
  }
}

void RunSockets(const Options& o, Counts& counts) {
  std::vector<Lane> lanes(static_cast<size_t>(o.lanes));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  if (inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) Die("--host must be an IPv4 address");
  for (Lane& lane : lanes) {
    lane.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lane.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // as curl does
    if (connect(lane.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      Die(std::string("connect: ") + std::strerror(errno));
    }
    fcntl(lane.fd, F_SETFL, fcntl(lane.fd, F_GETFL) | O_NONBLOCK);
    StartRequest(o, lane, "AmazonSQS.ReceiveMessage", ReceiveBody(o.queue_url, o.attributes), counts);
  }
  std::vector<pollfd> fds;
  std::vector<Lane*> polled;
  char buffer[64 * 1024];
  for (;;) {
    fds.clear();
    polled.clear();
    for (Lane& lane : lanes) {
      if (lane.done) continue;
      short events = POLLIN;
      if (lane.out_at < lane.out.size()) events |= POLLOUT;
      fds.push_back({lane.fd, events, 0});
      polled.push_back(&lane);
    }
    if (fds.empty()) break;
    if (poll(fds.data(), fds.size(), 5000) <= 0) Die("no answer in 5 s");
    for (size_t i = 0; i < fds.size(); ++i) {
      Lane& lane = *polled[i];
      if (fds[i].revents & POLLOUT) Flush(lane);
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = recv(lane.fd, buffer, sizeof(buffer), 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (n <= 0) Die("connection closed");
      lane.in.append(buffer, static_cast<size_t>(n));
      int status = 0;
      std::string_view body;
      if (WholeResponse(lane, status, body)) OnAnswer(o, lane, status, body, counts);
    }
  }
  for (Lane& lane : lanes) close(lane.fd);
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--transport") {
      o.transport = value;
    } else if (flag == "--scheme") {
      o.scheme = value;
    } else if (flag == "--ca-file") {
      o.ca_file = value;
    } else if (flag == "--host") {
      o.host = value;
    } else if (flag == "--port") {
      o.port = std::atoi(value.c_str());
    } else if (flag == "--queue-url") {
      o.queue_url = value;
    } else if (flag == "--lanes") {
      o.lanes = std::atoi(value.c_str());
    } else if (flag == "--attributes") {
      o.attributes = std::atoi(value.c_str());
    } else {
      Die("unknown flag " + std::string(flag));
    }
  }
  bool https = o.scheme == "https";
  if ((o.transport != "curl" && o.transport != "sockets") || (o.scheme != "http" && !https) ||
      (https && o.transport != "curl") || o.host.empty() || o.port <= 0 || o.queue_url.empty() ||
      o.lanes < 1) {
    Die("usage: http_floor --transport curl|sockets [--scheme http|https --ca-file PEM] --host 127.0.0.1 "
        "--port PORT --queue-url URL [--lanes 8] [--attributes 5|2] (https: curl only)");
  }
  Counts counts;
  auto start = std::chrono::steady_clock::now();
  double cpu_before = CpuSeconds();
  if (o.transport == "curl") {
    RunCurl(o, counts);
  } else {
    RunSockets(o, counts);
  }
  double cpu = CpuSeconds() - cpu_before;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("transport=%s%s messages=%ld requests=%ld wall_s=%.3f cpu_s=%.3f cpu_us_per_msg=%.2f\n",
              o.transport.c_str(), https ? "-tls" : "", counts.messages, counts.requests, wall, cpu,
              counts.messages > 0 ? cpu * 1e6 / static_cast<double>(counts.messages) : 0.0);
  return 0;
}
