// A fixed set of worker threads that run batch jobs. Each worker keeps its
// own codec contexts (see worker_contexts.h) for the life of the process, so
// a batch never pays the encoder/decoder set-up per image.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace npp_ext
{

class ThreadPool
{
  public:
    explicit ThreadPool(size_t threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    size_t size() const { return workers_.size(); }
    // Run fn(i) for i in [0, n) on at most `parallel` workers (the calling
    // thread waits); returns when all are done and rethrows the first
    // exception fn threw.
    void parallel_for(size_t n, size_t parallel, const std::function<void(size_t)> &fn);

  private:
    void loop();
    std::vector<std::thread> workers_;
    std::queue<std::function<void()>> tasks_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
};

// The process-wide pool, grown on demand to at least `min_threads` workers.
ThreadPool &global_pool(size_t min_threads);

} // namespace npp_ext
