#include "http_event_loop.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <exception>
#include <system_error>
#include <utility>

namespace efadra::observe::http {
namespace {

// epoll user data: the two fixed descriptors, then connection ids.
constexpr uint64_t kWakeId = 0;
constexpr uint64_t kListenId = 1;
constexpr uint64_t kFirstConnectionId = 16;

// Accepts per wake-up, so a connection flood cannot keep the loop from reading the requests
// of connections it already holds (a probe among them).
constexpr int kAcceptBatch = 64;

// After the response, a client may still be sending (a body we never read, an oversized head,
// a flood). Closing with unread input makes the kernel send a reset, which can destroy the
// response before the client reads it, so the write side is shut first and input drained for
// a short while (the "lingering close" of RFC 9112 §9.6), bounded in time and bytes.
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr size_t kLingerMaxBytes = 256 * 1024;

// How long accepting pauses when the process is out of file descriptors and no connection of
// ours can be given up: a listener that stays readable would otherwise spin the loop.
constexpr std::chrono::milliseconds kAcceptPause{100};

// A short text/plain answer of the server itself (not of a handler).
std::string PlainResponse(int status, std::string_view reason, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
         "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + std::string(body);
}

std::string RejectionResponse(int status) {
  switch (status) {
    case 431:
      return PlainResponse(431, "Request Header Fields Too Large",
                           "431 request header fields too large\n");
    case 505:
      return PlainResponse(505, "HTTP Version Not Supported", "505 http version not supported\n");
    default:
      return PlainResponse(400, "Bad Request", "400 bad request\n");
  }
}

// One non-blocking send of a fixed answer; whatever does not fit is dropped with the
// connection, which is closed right after.
void SendBestEffort(int fd, std::string_view response) {
  [[maybe_unused]] ssize_t n =
      ::send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::Create(int listen_fd, LoopOptions options,
                                                     Responder respond) {
  auto fail = [&](int fd_to_close) -> Result<std::unique_ptr<EventLoop>> {
    const int saved = errno;
    ::close(listen_fd);
    if (fd_to_close >= 0) ::close(fd_to_close);
    return InternalError("http server: event loop: " + std::system_category().message(saved));
  };
  const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return fail(-1);
  const int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) return fail(epoll_fd);
  epoll_event wake{};
  wake.events = EPOLLIN;
  wake.data.u64 = kWakeId;
  epoll_event listen{};
  listen.events = EPOLLIN;
  listen.data.u64 = kListenId;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &wake) != 0 ||
      ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &listen) != 0) {
    ::close(wake_fd);
    return fail(epoll_fd);
  }
  return std::unique_ptr<EventLoop>(
      new EventLoop(listen_fd, epoll_fd, wake_fd, std::move(options), std::move(respond)));
}

EventLoop::EventLoop(int listen_fd, int epoll_fd, int wake_fd, LoopOptions options,
                     Responder respond)
    : listen_fd_(listen_fd),
      epoll_fd_(epoll_fd),
      wake_fd_(wake_fd),
      options_(std::move(options)),
      respond_(std::move(respond)),
      next_id_(kFirstConnectionId) {}

EventLoop::~EventLoop() {
  for (Connection& conn : active_) ::close(conn.fd);
  for (Connection& conn : lingering_) ::close(conn.fd);
  ::close(listen_fd_);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void EventLoop::Wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

void EventLoop::Run() {
  std::array<epoll_event, 64> events{};
  while (!stopping_) {
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                               NextTimeoutMs(Clock::now()));
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("http server: epoll_wait: {}", std::system_category().message(errno));
      return;
    }
    const Clock::time_point now = Clock::now();
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[static_cast<size_t>(i)].data.u64;
      if (id == kWakeId) {
        stopping_ = true;
      } else if (id == kListenId) {
        AcceptAll(now);
      } else if (auto it = by_id_.find(id); it != by_id_.end()) {
        // Looked up by id, not by pointer: an earlier event of this batch may have closed it.
        OnEvent(it->second, events[static_cast<size_t>(i)].events);
      }
    }
    ExpireDeadlines(Clock::now());
    if (listener_paused_ && Clock::now() >= listener_resume_) {
      epoll_event listen{};
      listen.events = EPOLLIN;
      listen.data.u64 = kListenId;
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &listen) == 0) {
        listener_paused_ = false;
      }
    }
  }
}

int EventLoop::NextTimeoutMs(Clock::time_point now) const {
  Clock::time_point next = Clock::time_point::max();
  if (!active_.empty()) next = std::min(next, active_.front().deadline);
  if (!lingering_.empty()) next = std::min(next, lingering_.front().deadline);
  if (listener_paused_) next = std::min(next, listener_resume_);
  if (next == Clock::time_point::max()) return -1;
  if (next <= now) return 0;
  // Rounded up, so the loop never wakes a moment before the deadline and spins.
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - now);
  return static_cast<int>(std::min<int64_t>(wait.count(), 60'000));
}

void EventLoop::AcceptAll(Clock::time_point now) {
  for (int i = 0; i < kAcceptBatch; ++i) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
          continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          // Out of descriptors: give up the oldest unanswered connection so the next accept
          // can succeed; with none to give up, pause instead of spinning.
          if (!EvictOne()) PauseListener(now);
          return;
        case EAGAIN:
          return;  // the backlog is empty
        default:
          // Unexpected, and the listener would stay readable: pause rather than spin.
          spdlog::debug("http server: accept: {}", std::system_category().message(errno));
          PauseListener(now);
          return;
      }
    }
    if (active_.size() + lingering_.size() >= options_.max_connections && !EvictOne()) {
      // Every connection is being answered: refuse this one rather than wait.
      SendBestEffort(fd, PlainResponse(503, "Service Unavailable", "503 too many connections\n"));
      ::close(fd);
      continue;
    }
    Admit(fd, now);
  }
}

void EventLoop::Admit(int fd, Clock::time_point now) {
  Connection conn;
  conn.id = next_id_++;
  conn.fd = fd;
  conn.deadline = now + options_.request_timeout;
  conn.events = EPOLLIN;
  epoll_event event{};
  event.events = conn.events;
  event.data.u64 = conn.id;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    ::close(fd);
    return;
  }
  const uint64_t id = conn.id;
  active_.push_back(std::move(conn));
  by_id_.emplace(id, std::prev(active_.end()));
}

bool EventLoop::EvictOne() {
  // A lingering connection has its answer already; after it, the oldest one still sending its
  // request (a legitimate probe sends at once, so the oldest is the slowest).
  if (!lingering_.empty()) {
    Close(lingering_.begin());
    return true;
  }
  auto it = std::find_if(active_.begin(), active_.end(), [](const Connection& conn) {
    return conn.phase == Connection::Phase::kReading;
  });
  if (it == active_.end()) return false;
  Close(it);
  return true;
}

void EventLoop::OnEvent(ConnectionRef conn, uint32_t events) {
  switch (conn->phase) {
    case Connection::Phase::kReading:
      OnReadable(conn);
      break;
    case Connection::Phase::kWriting:
      if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) Flush(conn);
      break;
    case Connection::Phase::kLingering:
      Drain(conn);
      break;
  }
}

void EventLoop::OnReadable(ConnectionRef conn) {
  // Never hold more than a head can be: past that the parser has already decided.
  const size_t cap = options_.limits.MaxHeadBytes();
  char buffer[4096];
  bool eof = false;
  while (conn->in.size() < cap) {
    const size_t want = std::min(sizeof(buffer), cap - conn->in.size());
    const ssize_t n = ::recv(conn->fd, buffer, want, 0);
    if (n > 0) {
      conn->in.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) {
      Close(conn);  // reset by the client
      return;
    }
    eof = true;  // the client shut its side; what it sent may still be a whole request
    break;
  }
  ParseResult parsed = ParseRequestHead(conn->in, options_.limits);
  if (parsed.state == ParseState::kIncomplete) {
    if (eof) Close(conn);  // it went away before its request was complete
    return;
  }
  if (parsed.state == ParseState::kRejected) {
    // Debug only: whoever floods the port must not also flood the log.
    spdlog::debug("http server: rejected a request ({}): {}", parsed.status, parsed.reason);
    conn->out = RejectionResponse(parsed.status);
    conn->linger = !eof;
  } else {
    conn->out = Respond(parsed.head);
    conn->linger = !eof && (parsed.head.has_body || conn->in.size() > parsed.head.head_bytes);
  }
  std::string().swap(conn->in);
  conn->phase = Connection::Phase::kWriting;
  Flush(conn);
}

std::string EventLoop::Respond(const RequestHead& head) {
  // A throwing check or an allocation failure must not end the thread that serves every
  // probe (std::terminate): it becomes a 500 for this request.
  try {
    return respond_(head);
  } catch (const std::exception& e) {
    spdlog::error("http server: {} {}: {}", head.method, head.path, e.what());
  } catch (...) {
    spdlog::error("http server: {} {}: unknown exception", head.method, head.path);
  }
  return PlainResponse(500, "Internal Server Error", "500 internal server error\n");
}

void EventLoop::Flush(ConnectionRef conn) {
  while (conn->sent < conn->out.size()) {
    const ssize_t n = ::send(conn->fd, conn->out.data() + conn->sent,
                             conn->out.size() - conn->sent, MSG_NOSIGNAL);
    if (n > 0) {
      conn->sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      SetInterest(*conn, EPOLLOUT);
      return;
    }
    Close(conn);
    return;
  }
  if (!conn->linger) {
    Close(conn);
    return;
  }
  ::shutdown(conn->fd, SHUT_WR);
  std::string().swap(conn->out);
  conn->phase = Connection::Phase::kLingering;
  conn->deadline = Clock::now() + kLingerTime;
  lingering_.splice(lingering_.end(), active_, conn);
  SetInterest(*conn, EPOLLIN);
  Drain(conn);
}

void EventLoop::Drain(ConnectionRef conn) {
  char buffer[4096];
  while (true) {
    const ssize_t n = ::recv(conn->fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      conn->discarded += static_cast<size_t>(n);
      if (conn->discarded > kLingerMaxBytes) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    break;  // EOF: the client has read the answer and closed
  }
  Close(conn);
}

void EventLoop::SetInterest(Connection& conn, uint32_t events) {
  if (conn.events == events) return;
  epoll_event event{};
  event.events = events;
  event.data.u64 = conn.id;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &event) == 0) conn.events = events;
}

void EventLoop::Close(ConnectionRef conn) {
  // close() also drops the descriptor from the epoll set (it is never duplicated).
  ::close(conn->fd);
  by_id_.erase(conn->id);
  if (conn->phase == Connection::Phase::kLingering) {
    lingering_.erase(conn);
  } else {
    active_.erase(conn);
  }
}

void EventLoop::ExpireDeadlines(Clock::time_point now) {
  while (!active_.empty() && active_.front().deadline <= now) {
    Connection& conn = active_.front();
    if (conn.phase == Connection::Phase::kReading) {
      SendBestEffort(conn.fd, PlainResponse(408, "Request Timeout", "408 request timeout\n"));
    }
    Close(active_.begin());
  }
  while (!lingering_.empty() && lingering_.front().deadline <= now) Close(lingering_.begin());
}

void EventLoop::PauseListener(Clock::time_point now) {
  epoll_event listen{};
  listen.events = 0;
  listen.data.u64 = kListenId;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &listen) == 0) {
    listener_paused_ = true;
    listener_resume_ = now + kAcceptPause;
  }
}

}  // namespace efadra::observe::http
