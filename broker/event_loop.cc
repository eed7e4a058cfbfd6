#include "broker/event_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <future>

namespace vkms::broker {

struct EventLoop::FdWatch {
  int fd = -1;
  bool removed = false;
  std::function<void(uint32_t)> on_ready;
};

EventLoop::EventLoop() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) error_ = std::string("epoll_create1: ") + strerror(errno);
}

EventLoop::~EventLoop() {
  if (wakeup_watch_ != nullptr) RemoveFd(wakeup_watch_);
  for (FdWatch* w : removed_) delete w;
  if (wakeup_fd_ >= 0) close(wakeup_fd_);
  if (epfd_ >= 0) close(epfd_);
}

EventLoop::FdWatch* EventLoop::AddFd(int fd, uint32_t events,
                                     std::function<void(uint32_t)> on_ready) {
  auto* w = new FdWatch;
  w->fd = fd;
  w->on_ready = std::move(on_ready);
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.ptr = w;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    delete w;
    return nullptr;
  }
  return w;
}

bool EventLoop::ModifyFd(FdWatch* w, uint32_t events) {
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.ptr = w;
  return epoll_ctl(epfd_, EPOLL_CTL_MOD, w->fd, &ev) == 0;
}

void EventLoop::RemoveFd(FdWatch* w) {
  if (w == nullptr || w->removed) return;
  // The fd may already be closed (the kernel then dropped it from the set): nothing to undo.
  epoll_ctl(epfd_, EPOLL_CTL_DEL, w->fd, nullptr);
  w->removed = true;
  // Freed after the round, callback included: a later event of the same epoll_wait may still
  // point at it, and the callback may be the one running now (a watch removing itself).
  removed_.push_back(w);
}

EventLoop::Timer EventLoop::AddTimer(Clock::time_point when, std::function<void()> fn) {
  Timer t{when, ++next_seq_};
  timers_.emplace(std::make_pair(when, t.seq), std::move(fn));
  return t;
}

void EventLoop::CancelTimer(Timer* t) {
  if (!t->active()) return;
  timers_.erase(std::make_pair(t->when, t->seq));
  *t = Timer();
}

void EventLoop::Defer(std::function<void()> fn) {
  deferred_.push_back(std::move(fn));
}

int EventLoop::WaitMs(int max_wait_ms) const {
  if (!deferred_.empty() || quit_) return 0;
  if (timers_.empty()) return max_wait_ms;
  auto left = timers_.begin()->first.first - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  // Rounded up: waking before the timer is due would only spin.
  long long ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  if (max_wait_ms >= 0 && ms > max_wait_ms) return max_wait_ms;
  return static_cast<int>(std::min<long long>(ms, 1 << 30));
}

void EventLoop::RunTimers() {
  const Clock::time_point now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto it = timers_.begin();
    std::function<void()> fn = std::move(it->second);
    timers_.erase(it);
    fn();
  }
}

void EventLoop::RunDeferred() {
  while (!deferred_.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(deferred_);
    for (auto& fn : batch) fn();
  }
}

void EventLoop::RunPosted() {
  uint64_t n;
  while (read(wakeup_fd_, &n, sizeof n) > 0) {
  }
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

bool EventLoop::RunOnce(int max_wait_ms) {
  constexpr int kMaxEvents = 32;
  struct epoll_event events[kMaxEvents];
  int n = epoll_wait(epfd_, events, kMaxEvents, WaitMs(max_wait_ms));
  if (n < 0 && errno != EINTR) return false;
  for (int i = 0; i < n; ++i) {
    auto* w = static_cast<FdWatch*>(events[i].data.ptr);
    if (!w->removed) w->on_ready(events[i].events);
  }
  RunTimers();
  RunDeferred();
  for (FdWatch* w : removed_) delete w;
  removed_.clear();
  return true;
}

bool EventLoop::Run() {
  thread_ = std::this_thread::get_id();
  running_.store(true);
  bool ok = true;
  while (!quit_ && ok) ok = RunOnce(-1);
  running_.store(false);
  quit_ = false;
  return ok;
}

bool EventLoop::EnableWakeup() {
  if (wakeup_fd_ >= 0) return true;
  wakeup_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeup_fd_ < 0) return false;
  wakeup_watch_ = AddFd(wakeup_fd_, EPOLLIN, [this](uint32_t) { RunPosted(); });
  return wakeup_watch_ != nullptr;
}

void EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t ignored = write(wakeup_fd_, &one, sizeof one);
  (void)ignored;  // a full counter still wakes the loop
}

LoopThread::LoopThread() {
  loop_.EnableWakeup();
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = std::thread([this, &started] {
    // Posted first so that it runs once Run() is in charge: Call/Await from the constructing
    // thread then always go through the loop, never race with it.
    loop_.Post([&started] { started.set_value(); });
    loop_.Run();
  });
  ready.wait();
}

LoopThread::~LoopThread() {
  Join();
}

void LoopThread::Join() {
  if (!thread_.joinable()) return;
  loop_.Post([this] { loop_.Quit(); });
  thread_.join();
}

}  // namespace vkms::broker
