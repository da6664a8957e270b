#include "aws/multi_transport.h"

#include <curl/curl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <vector>

#include "aws/curl_util.h"

namespace sqs2pg::aws {
namespace {

struct CurlMultiCloser {
  void operator()(CURLM* m) const noexcept { curl_multi_cleanup(m); }
};
using CurlMulti = std::unique_ptr<CURLM, CurlMultiCloser>;

struct CurlShareCloser {
  void operator()(CURLSH* s) const noexcept { curl_share_cleanup(s); }
};
using CurlShare = std::unique_ptr<CURLSH, CurlShareCloser>;

// One request in flight, with everything curl points into kept alive beside its handle.
struct Transfer {
  CurlEasy easy;
  char error[CURL_ERROR_SIZE] = {};
  HttpResponse response;
  HttpRequest request;
  CurlSlist headers;
  MultiTransport::Done done;
  bool cancellable = false;
};

constexpr long kMaxIdleConnections = 512;

}  // namespace

// Driven through libcurl's socket API (curl_multi_socket_action), not curl_multi_perform: perform
// runs every transfer in flight and each one polls its own socket with a zero timeout, about three
// poll(2) calls per request (measured: 12,400 for 4,400 requests). Here curl says which sockets to
// watch, one poll(2) covers them all, and curl is told which socket is ready, so it reads and
// writes without asking the kernel again.
struct MultiTransport::Impl {
  TransportOptions options;
  // TLS sessions, shared by every handle: each handle kept its own cache, so each of the ~25
  // connections a run opens made a full handshake; with one cache all but the first resume.
  // Used from the one thread that drives the multi handle, so it needs no lock callbacks.
  // Declared first so it is destroyed last, after every handle that uses it.
  CurlShare share;
  // Declared before the transfers so it is destroyed after them.
  CurlMulti multi;
  // Every URL requests went to, parsed once (a run's requests go to one or two). Before the
  // transfers, which point into them, so it is destroyed after them.
  std::unordered_map<std::string, CurlUrl> urls;
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> active;
  // Finished handles, reset and reused: a new handle per request would cost a setup each time
  // (connections are kept by the multi handle either way).
  std::vector<std::unique_ptr<Transfer>> idle;
  // The sockets curl wants watched, and for what (CURL_POLL_IN, _OUT or _INOUT).
  std::unordered_map<curl_socket_t, int> sockets;
  // When curl wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT); nullopt: no timer.
  std::optional<std::chrono::steady_clock::time_point> timer_at;
  // Wakeup() from another thread makes it readable, ending a wait in Poll().
  int wake_fd = -1;
  std::vector<pollfd> fds;  // reused by every Poll()

  ~Impl() {
    for (auto& [easy, transfer] : active) curl_multi_remove_handle(multi.get(), easy);
    if (wake_fd >= 0) close(wake_fd);
  }

  static int OnSocket(CURL*, curl_socket_t s, int what, void* user, void*) {
    auto* impl = static_cast<Impl*>(user);
    if (what == CURL_POLL_REMOVE) {
      impl->sockets.erase(s);
    } else {
      impl->sockets[s] = what;
    }
    return 0;
  }

  static int OnTimer(CURLM*, long timeout_ms, void* user) {
    auto* impl = static_cast<Impl*>(user);
    if (timeout_ms < 0) {
      impl->timer_at.reset();
    } else {
      impl->timer_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    }
    return 0;
  }

  // Lets curl act on its timers (new transfers start this way) when they are due.
  void RunDueTimer() {
    if (!timer_at || *timer_at > std::chrono::steady_clock::now()) return;
    timer_at.reset();
    int running = 0;
    curl_multi_socket_action(multi.get(), CURL_SOCKET_TIMEOUT, 0, &running);
  }

  // Waits up to max_wait (less when a curl timer is due sooner) for a socket, or a Wakeup(), and
  // hands every ready socket to curl.
  void WaitAndAct(std::chrono::milliseconds max_wait) {
    auto wait = max_wait;
    if (timer_at) {
      auto until_timer =
          std::chrono::ceil<std::chrono::milliseconds>(*timer_at - std::chrono::steady_clock::now());
      wait = std::clamp(until_timer, std::chrono::milliseconds(0), max_wait);
    }
    fds.clear();
    fds.push_back({wake_fd, POLLIN, 0});
    for (const auto& [s, what] : sockets) {
      short events = 0;
      if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= POLLIN;
      if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= POLLOUT;
      fds.push_back({s, events, 0});
    }
    int n = poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
    if (n > 0) {
      if (fds[0].revents != 0) {
        std::uint64_t count;
        (void)!read(wake_fd, &count, sizeof(count));
      }
      int running = 0;
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        int mask = 0;
        if (fds[i].revents & (POLLIN | POLLHUP)) mask |= CURL_CSELECT_IN;
        if (fds[i].revents & POLLOUT) mask |= CURL_CSELECT_OUT;
        if (fds[i].revents & (POLLERR | POLLNVAL)) mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(multi.get(), fds[i].fd, mask, &running);
      }
    }
    RunDueTimer();
  }
};

MultiTransport::MultiTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MultiTransport::~MultiTransport() = default;

Result<std::unique_ptr<MultiTransport>> MultiTransport::Create(const TransportOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  // NewPostHandle runs curl_global_init; make one handle first so the multi comes after it.
  HttpResponse scratch;
  char error[CURL_ERROR_SIZE];
  ASSIGN_OR_RETURN(CurlEasy probe, NewPostHandle(options, error, &scratch));
  impl->share.reset(curl_share_init());
  if (!impl->share ||
      curl_share_setopt(impl->share.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
    return Status::Permanent("curl_share_init failed");
  }
  impl->multi.reset(curl_multi_init());
  if (!impl->multi) return Status::Permanent("curl_multi_init failed");
  impl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->wake_fd < 0) return Status::Permanent(std::string("eventfd: ") + std::strerror(errno));
  // By default the connection cache shrinks with the number of handles in the multi, and each
  // finished transfer leaves it: keep-alive connections were closed and opened again (measured:
  // 619 connects for 4,300 requests). Keep enough for every receiver and delete in flight.
  curl_multi_setopt(impl->multi.get(), CURLMOPT_MAXCONNECTS, kMaxIdleConnections);
  curl_multi_setopt(impl->multi.get(), CURLMOPT_SOCKETFUNCTION, &Impl::OnSocket);
  curl_multi_setopt(impl->multi.get(), CURLMOPT_SOCKETDATA, impl.get());
  curl_multi_setopt(impl->multi.get(), CURLMOPT_TIMERFUNCTION, &Impl::OnTimer);
  curl_multi_setopt(impl->multi.get(), CURLMOPT_TIMERDATA, impl.get());
  return std::unique_ptr<MultiTransport>(new MultiTransport(std::move(impl)));
}

void MultiTransport::Start(HttpRequest request, Done done, bool cancellable) {
  std::unique_ptr<Transfer> t;
  if (!impl_->idle.empty()) {
    t = std::move(impl_->idle.back());
    impl_->idle.pop_back();
  } else {
    t = std::make_unique<Transfer>();
    auto easy = NewPostHandle(impl_->options, t->error, &t->response);
    if (!easy.ok()) {
      done(easy.status());
      return;
    }
    t->easy = std::move(easy).value();
    curl_easy_setopt(t->easy.get(), CURLOPT_SHARE, impl_->share.get());
  }
  auto url = impl_->urls.find(request.url);
  if (url == impl_->urls.end()) {
    auto parsed = ParseCurlUrl(request.url);
    if (!parsed.ok()) {
      impl_->idle.push_back(std::move(t));
      done(parsed.status());
      return;
    }
    url = impl_->urls.emplace(request.url, std::move(parsed).value()).first;
  }
  t->request = std::move(request);
  t->response = HttpResponse();
  t->error[0] = '\0';
  t->done = std::move(done);
  t->cancellable = cancellable;
  t->headers = SetRequest(t->easy.get(), t->request, url->second.get());
  CURL* easy = t->easy.get();
  // Adding a handle sets curl's timer to now: the next Poll() starts the transfer.
  if (CURLMcode rc = curl_multi_add_handle(impl_->multi.get(), easy); rc != CURLM_OK) {
    t->done(Status::Permanent(std::string("curl_multi_add_handle: ") + curl_multi_strerror(rc)));
    return;
  }
  impl_->active.emplace(easy, std::move(t));
}

void MultiTransport::Poll(std::chrono::milliseconds max_wait) {
  CURLM* multi = impl_->multi.get();
  CURLMsg* msg = nullptr;
  int queued = 0;
  std::vector<std::unique_ptr<Transfer>> finished;
  auto collect = [&] {
    while ((msg = curl_multi_info_read(multi, &queued)) != nullptr) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      CURLcode rc = msg->data.result;
      curl_multi_remove_handle(multi, easy);
      auto it = impl_->active.find(easy);
      if (it == impl_->active.end()) continue;
      std::unique_ptr<Transfer> t = std::move(it->second);
      impl_->active.erase(it);
      t->response.status = 0;
      Result<HttpResponse> result = FinishResponse(easy, rc, t->error, t->response);
      curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, nullptr);
      Done done = std::move(t->done);
      finished.push_back(std::move(t));
      done(std::move(result));  // may Start() new requests
    }
  };
  // Requests started since the last turn go out first; wait only when nothing finished yet.
  impl_->RunDueTimer();
  collect();
  if (finished.empty()) {
    impl_->WaitAndAct(max_wait);
    collect();
  }
  for (auto& t : finished) impl_->idle.push_back(std::move(t));
}

void MultiTransport::CancelCancellable() {
  std::vector<std::unique_ptr<Transfer>> cancelled;
  for (auto it = impl_->active.begin(); it != impl_->active.end();) {
    if (!it->second->cancellable) {
      ++it;
      continue;
    }
    curl_multi_remove_handle(impl_->multi.get(), it->first);
    cancelled.push_back(std::move(it->second));
    it = impl_->active.erase(it);
  }
  // Callbacks last: they may start new requests, which changes `active`.
  for (auto& t : cancelled) {
    curl_easy_setopt(t->easy.get(), CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(t->easy.get(), CURLOPT_POSTFIELDS, nullptr);
    Done done = std::move(t->done);
    impl_->idle.push_back(std::move(t));
    done(Status::Transient("cancelled"));
  }
}

void MultiTransport::Wakeup() {
  std::uint64_t one = 1;
  (void)!write(impl_->wake_fd, &one, sizeof(one));
}

size_t MultiTransport::in_flight() const { return impl_->active.size(); }

}  // namespace sqs2pg::aws
