// broker/event_loop: timers, deferred work, fd watches removed mid-round, and the hand-over
// from other threads (Post/Call/Await) that only tests and `check` use.
#include "broker/event_loop.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace vkms::broker {
namespace {

using std::chrono::milliseconds;
using Clock = EventLoop::Clock;

TEST(EventLoop, TimersRunInTimeOrderAndCancelledOnesNever) {
  EventLoop loop;
  ASSERT_EQ(loop.error(), "");
  std::vector<int> order;
  const Clock::time_point now = Clock::now();
  loop.AddTimer(now + milliseconds(30), [&] { order.push_back(3); });
  loop.AddTimer(now + milliseconds(10), [&] { order.push_back(1); });
  EventLoop::Timer cancelled = loop.AddTimer(now + milliseconds(20), [&] { order.push_back(9); });
  loop.AddTimer(now + milliseconds(20), [&] {
    order.push_back(2);
    // A timer added by a timer for "now" runs in the next round, before later ones.
    loop.AddTimer(Clock::now(), [&] { order.push_back(4); });
  });
  loop.CancelTimer(&cancelled);
  EXPECT_FALSE(cancelled.active());
  loop.CancelTimer(&cancelled);  // twice: nothing
  loop.AddTimer(now + milliseconds(50), [&] { loop.Quit(); });
  ASSERT_TRUE(loop.Run());
  EXPECT_EQ(order, (std::vector<int>{1, 2, 4, 3}));
  EXPECT_GE(Clock::now() - now, milliseconds(50)) << "a timer fired early";
}

TEST(EventLoop, DeferredWorkRunsBeforeTheLoopWaitsAgain) {
  EventLoop loop;
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  std::vector<std::string> steps;
  EventLoop::FdWatch* w = loop.AddFd(fds[0], EPOLLIN, [&](uint32_t) {
    char b;
    ASSERT_EQ(read(fds[0], &b, 1), 1);
    steps.push_back("ready");
    loop.Defer([&] {
      steps.push_back("deferred");
      loop.Defer([&] { steps.push_back("deferred by deferred"); });
    });
    steps.push_back("callback returns");
  });
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  // Without the deferral rule the round would end with the fd's callback and the loop would
  // wait 10 s for the next event.
  Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(loop.RunOnce(10000));
  EXPECT_LT(Clock::now() - t0, milliseconds(1000));
  EXPECT_EQ(steps, (std::vector<std::string>{"ready", "callback returns", "deferred",
                                             "deferred by deferred"}));
  loop.RemoveFd(w);
  close(fds[0]);
  close(fds[1]);
}

TEST(EventLoop, AWatchRemovedInTheSameRoundIsNotCalled) {
  EventLoop loop;
  int a[2], b[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, a), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, b), 0);
  int calls_a = 0, calls_b = 0;
  EventLoop::FdWatch* wa = nullptr;
  EventLoop::FdWatch* wb = nullptr;
  // Whichever runs first removes itself and then the other: the other, though ready in the
  // same epoll_wait, must not be called through a freed watch, and the callback running when
  // its own watch goes must still be whole (ASan: its captures stay readable to the end).
  std::string trail;
  wa = loop.AddFd(a[0], EPOLLIN, [&, tag = std::string("a")](uint32_t) {
    ++calls_a;
    loop.RemoveFd(wa);
    loop.RemoveFd(wb);
    trail += tag;
  });
  wb = loop.AddFd(b[0], EPOLLIN, [&, tag = std::string("b")](uint32_t) {
    ++calls_b;
    loop.RemoveFd(wb);
    loop.RemoveFd(wa);
    trail += tag;
  });
  ASSERT_EQ(write(a[1], "x", 1), 1);
  ASSERT_EQ(write(b[1], "x", 1), 1);
  ASSERT_TRUE(loop.RunOnce(1000));
  EXPECT_EQ(calls_a + calls_b, 1);
  EXPECT_TRUE(trail == "a" || trail == "b") << trail;
  ASSERT_TRUE(loop.RunOnce(50));  // nothing is watched any more
  EXPECT_EQ(calls_a + calls_b, 1);
  for (int fd : {a[0], a[1], b[0], b[1]}) close(fd);
}

TEST(EventLoop, OtherThreadsReachALoopThreadThroughCallAndAwait) {
  LoopThread t;
  EventLoop* loop = t.loop();
  const std::thread::id loop_id = loop->Call([] { return std::this_thread::get_id(); });
  EXPECT_NE(loop_id, std::this_thread::get_id());
  EXPECT_TRUE(loop->Call([&] { return loop->InLoopThread(); }));
  EXPECT_FALSE(loop->InLoopThread());
  // An asynchronous operation finishing on a loop timer, waited for from here.
  Clock::time_point t0 = Clock::now();
  int v = loop->Await<int>([&](std::function<void(int)> done) {
    loop->AddTimer(Clock::now() + milliseconds(30), [done] { done(42); });
  });
  EXPECT_EQ(v, 42);
  EXPECT_GE(Clock::now() - t0, milliseconds(30));
  t.Join();
  // Nobody runs the loop any more: Call runs here, Await drives the loop here.
  EXPECT_FALSE(loop->running());
  EXPECT_EQ(loop->Call([] { return 7; }), 7);
  EXPECT_EQ(
      loop->Await<int>([&](std::function<void(int)> done) { loop->Defer([done] { done(8); }); }),
      8);
}

TEST(EventLoopDeathTest, WaitingOnTheLoopThreadForItselfAborts) {
  EXPECT_DEATH(
      {
        LoopThread t;
        t.loop()->Call(
            [&] { t.loop()->Await<int>([](std::function<void(int)> done) { done(1); }); });
      },
      "blocking call on the event loop thread");
}

}  // namespace
}  // namespace vkms::broker
