// EventLoop: the broker's one poll. One thread waits on an epoll set (the IPC socketpair, the
// signalfd, libcurl's sockets) with a timeout taken from the earliest timer, runs the callbacks
// of whatever is ready, then the timers that are due, then the work deferred by those
// callbacks, and waits again. Everything bound to a loop (dispatch, Vault transfers, token and
// key schedules) runs on that thread only and needs no lock.
//
// Callers: broker/main.cc runs one on the main thread for the whole serving life. Tests and
// `vault-kms-broker check` use a LoopThread, and reach the loop from their own threads only
// through Post/Call/Await (the one place where a thread hands work to another; never on the
// serving path). Everything else is loop-thread only.
#pragma once

#include <stdint.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace vkms::broker {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // "" when the loop could be created (epoll_create1); otherwise why not.
  const std::string& error() const { return error_; }

  // --- loop thread only (or before the loop first runs) ---------------------------------

  // Calls `on_ready` with the epoll event mask whenever `fd` is ready (level-triggered). The
  // returned handle stays valid until RemoveFd; the fd stays the caller's to close.
  struct FdWatch;
  FdWatch* AddFd(int fd, uint32_t events, std::function<void(uint32_t)> on_ready);
  bool ModifyFd(FdWatch* watch, uint32_t events);
  // Safe from inside any callback, the watch's own included.
  void RemoveFd(FdWatch* watch);

  // One-shot timers. A Timer is a plain value: cancelling one that has fired or been
  // cancelled does nothing.
  struct Timer {
    Clock::time_point when{};
    uint64_t seq = 0;  // 0: none
    bool active() const { return seq != 0; }
  };
  Timer AddTimer(Clock::time_point when, std::function<void()> fn);
  void CancelTimer(Timer* timer);

  // Runs `fn` on this thread after the current callback returns, before the loop waits
  // again: for callers that must not be re-entered from inside the call that triggers them.
  void Defer(std::function<void()> fn);

  // Runs until Quit(). Returns false if epoll_wait failed.
  bool Run();
  // One round: waits at most `max_wait_ms` (-1: until something happens).
  bool RunOnce(int max_wait_ms);
  void Quit() { quit_ = true; }
  bool quitting() const { return quit_; }

  // --- any thread -------------------------------------------------------------------------

  // Makes Post() usable (an eventfd in the poll). LoopThread does it; the broker's serving
  // loop never needs it.
  bool EnableWakeup();
  // Runs `fn` on the loop thread (the loop must have EnableWakeup()).
  void Post(std::function<void()> fn);
  bool InLoopThread() const { return running_.load() && std::this_thread::get_id() == thread_; }
  bool running() const { return running_.load(); }

  // Runs `fn` on the loop thread and returns its result: at once when called on the loop
  // thread or when no thread runs the loop, otherwise posted and waited for.
  template <typename F>
  auto Call(F&& fn) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    if (!running_.load() || InLoopThread()) return fn();
    auto w = std::make_shared<Waiter<std::conditional_t<std::is_void_v<R>, bool, R>>>();
    Post([w, &fn] {
      if constexpr (std::is_void_v<R>) {
        fn();
        w->Set(true);
      } else {
        w->Set(fn());
      }
    });
    if constexpr (std::is_void_v<R>) {
      w->Get();
    } else {
      return w->Get();
    }
  }

  // Starts an asynchronous operation on the loop thread and waits for its completion:
  // `start(done)` must arrange for done(result) to be called once, on the loop thread. The
  // blocking face of the asynchronous API, for tests and `check`; never on the loop thread
  // (it would wait for itself).
  template <typename T>
  T Await(const std::function<void(std::function<void(T)>)>& start) {
    if (InLoopThread()) {
      std::fprintf(stderr, "vault-kms-broker: blocking call on the event loop thread\n");
      std::abort();
    }
    auto w = std::make_shared<Waiter<T>>();
    auto begin = [w, &start] { start([w](T v) { w->Set(std::move(v)); }); };
    if (running_.load()) {
      Post(begin);
      return w->Get();
    }
    // Nobody runs the loop (a component being used before or after its thread): run it here.
    begin();
    while (!w->done()) RunOnce(-1);
    return w->Get();
  }

 private:
  template <typename T>
  class Waiter {
   public:
    void Set(T v) {
      std::lock_guard<std::mutex> lock(mu_);
      value_ = std::move(v);
      cv_.notify_all();
    }
    T Get() {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return value_.has_value(); });
      return std::move(*value_);
    }
    bool done() {
      std::lock_guard<std::mutex> lock(mu_);
      return value_.has_value();
    }

   private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::optional<T> value_;
  };

  void RunTimers();
  void RunDeferred();
  void RunPosted();
  int WaitMs(int max_wait_ms) const;

  std::string error_;
  int epfd_ = -1;
  int wakeup_fd_ = -1;
  FdWatch* wakeup_watch_ = nullptr;
  bool quit_ = false;
  std::atomic<bool> running_{false};
  std::thread::id thread_;
  std::vector<FdWatch*> removed_;  // freed after the round that removed them
  uint64_t next_seq_ = 0;
  std::map<std::pair<Clock::time_point, uint64_t>, std::function<void()>> timers_;
  std::vector<std::function<void()>> deferred_;
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
};

// An EventLoop running on a thread of its own, for code that is not the broker's serving
// loop: tests, and the one-off `check`. The destructor stops and joins the thread.
class LoopThread {
 public:
  LoopThread();
  ~LoopThread();
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  EventLoop* loop() { return &loop_; }
  // Stops and joins the thread; the loop object stays (components may tidy up through it).
  void Join();

 private:
  EventLoop loop_;
  std::thread thread_;
};

}  // namespace vkms::broker
