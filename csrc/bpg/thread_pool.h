// A set of worker threads that run batch jobs. Each worker keeps its own
// codec contexts (see contexts.h) for the life of the process, so a batch
// never pays the encoder/decoder set-up per image.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <thread>
#include <vector>

namespace npp_ext
{

// Thrown by parallel_for when its `interrupted` callback said so.
struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted") {}
};

class ThreadPool
{
  public:
    // Throws std::system_error if not even one thread can be started.
    explicit ThreadPool(size_t threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    size_t size();
    // Adds workers up to `threads`; stops quietly at the system's thread
    // limit once there is at least one (the pool runs with what it has).
    void grow(size_t threads);
    // A batch handed to the workers; see submit().
    class Batch;
    // Queue fn(i) for i in [0, n) on at most `parallel` workers (0: one per
    // core) and return at once. Batches start in the order they were
    // submitted: a worker that runs out of one batch's indices takes up the
    // next batch, without waiting for the first batch's last image.
    std::shared_ptr<Batch> submit(size_t n, size_t parallel, std::function<void(size_t)> fn);
    // submit() and wait: rethrows the first exception fn threw. While waiting
    // it calls `interrupted` every 100 ms, if given: once that returns true no
    // new index starts, and after the running ones finish it throws
    // Interrupted.
    void parallel_for(size_t n, size_t parallel, const std::function<void(size_t)> &fn,
                      const std::function<bool()> &interrupted = nullptr);

  private:
    void loop();
    std::vector<std::thread> workers_;
    std::queue<std::function<void()>> tasks_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
};

class ThreadPool::Batch
{
  public:
    // Wait until every index ran (see parallel_for for `interrupted`), then
    // rethrow the first exception fn threw. Safe to call more than once.
    void wait(const std::function<bool()> &interrupted = nullptr);
    bool done();

  private:
    friend class ThreadPool;
    std::function<void(size_t)> fn;
    size_t n = 0;
    std::atomic<size_t> next{0};
    std::atomic<bool> cancel{false};
    size_t remaining = 0; // workers still in the batch
    std::mutex mu;
    std::condition_variable finished;
    std::exception_ptr error; // first exception thrown by fn
};

// The process-wide pool, grown on demand to at least `min_threads` workers
// (0: one per core).
ThreadPool &global_pool(size_t min_threads);

} // namespace npp_ext
