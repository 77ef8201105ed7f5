// EventLoop: the connection handling of HttpServer. One thread runs an epoll loop over a
// listening socket and every accepted connection: it reads a request head (bounded by
// RequestLimits), asks `respond` for the complete response, writes it without blocking and
// closes. Private to observe.
//
// Why not one thread per connection (cpp-httplib 0.11 in Debian bookworm ties a pool thread to
// each connection until it finishes, with only a per-recv timeout and no header-count limit):
// on the node network a handful of clients sending slowly would occupy every thread and stall
// the kubelet's probes. Here a silent or trickling client costs one descriptor and at most
// RequestLimits::MaxHeadBytes() of buffer, and is closed at its deadline.
//
// Ownership: HttpServer owns it and the thread that calls Run(). It owns the listening socket
// given to it and every connection, and closes them all when destroyed.
//
// Thread safety: Run() on one thread; Wake() from any thread; the destructor after Run() has
// returned.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "efadra/core/status.h"
#include "http_request.h"

namespace efadra::observe::http {

struct LoopOptions {
  RequestLimits limits;
  std::chrono::milliseconds request_timeout{5000};
  size_t max_connections = 256;
};

class EventLoop {
 public:
  // A complete HTTP/1.1 response (status line, headers with "Connection: close", body) for a
  // parsed request head. Called on the loop thread, so it must not block; an exception becomes
  // a 500 (and an error log line).
  using Responder = std::function<std::string(const RequestHead&)>;

  // Takes ownership of `listen_fd` (bound, listening, non-blocking). kInternal when epoll or
  // eventfd cannot be created (the fd is closed then too).
  static Result<std::unique_ptr<EventLoop>> Create(int listen_fd, LoopOptions options,
                                                   Responder respond);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Serves until Wake(); then returns with connections still open (the destructor closes them).
  void Run();
  // Makes Run() return promptly; safe from any thread and before Run() starts.
  void Wake();

 private:
  using Clock = std::chrono::steady_clock;

  struct Connection {
    enum class Phase { kReading, kWriting, kLingering };
    uint64_t id = 0;
    int fd = -1;
    Phase phase = Phase::kReading;
    Clock::time_point deadline;
    uint32_t events = 0;       // the epoll interest set registered for fd
    std::string in;            // request bytes received, until the head is complete
    std::string out;           // the response
    size_t sent = 0;           // bytes of `out` written
    bool linger = false;       // unread request bytes may remain: drain before closing
    size_t discarded = 0;      // bytes drained while lingering
  };
  using ConnectionList = std::list<Connection>;
  using ConnectionRef = ConnectionList::iterator;

  EventLoop(int listen_fd, int epoll_fd, int wake_fd, LoopOptions options, Responder respond);

  void AcceptAll(Clock::time_point now);
  void Admit(int fd, Clock::time_point now);
  bool EvictOne();
  void OnEvent(ConnectionRef conn, uint32_t events);
  void OnReadable(ConnectionRef conn);
  std::string Respond(const RequestHead& head);
  void Flush(ConnectionRef conn);
  void Drain(ConnectionRef conn);
  void SetInterest(Connection& conn, uint32_t events);
  void Close(ConnectionRef conn);
  void ExpireDeadlines(Clock::time_point now);
  int NextTimeoutMs(Clock::time_point now) const;
  void PauseListener(Clock::time_point now);

  const int listen_fd_;
  const int epoll_fd_;
  const int wake_fd_;
  const LoopOptions options_;
  const Responder respond_;

  // All state below belongs to the Run() thread.
  bool stopping_ = false;
  uint64_t next_id_;
  // Open connections in accept order, which is also deadline order (every connection gets
  // the same request_timeout), so expiry and eviction look at the front only.
  ConnectionList active_;
  // Connections whose response is written, draining what the client still sends; in the order
  // they started lingering (again deadline order).
  ConnectionList lingering_;
  std::unordered_map<uint64_t, ConnectionRef> by_id_;
  bool listener_paused_ = false;
  Clock::time_point listener_resume_;
};

}  // namespace efadra::observe::http
