// A fixed set of threads that run Vault calls, so that many IPC requests are in flight at
// once and no Vault call waits behind another. Bounded queue: when it is full, Submit()
// fails and the caller answers RESOURCE_EXHAUSTED instead of piling up work.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vkms::broker {

class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queue);
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  bool Submit(std::function<void()> task);
  // Runs every queued task to completion, then joins the threads.
  void Drain();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t max_queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace vkms::broker
