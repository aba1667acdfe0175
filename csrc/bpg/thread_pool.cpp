#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <system_error>

#include <pthread.h>

namespace npp_ext
{

namespace
{
size_t cores() { return std::max<size_t>(1, std::thread::hardware_concurrency()); }
} // namespace

ThreadPool::ThreadPool(size_t threads) { grow(std::max<size_t>(1, threads)); }

ThreadPool::~ThreadPool()
{
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    for (std::thread &t : workers_)
        t.join();
}

size_t ThreadPool::size()
{
    std::lock_guard<std::mutex> lk(mu_);
    return workers_.size();
}

void ThreadPool::grow(size_t threads)
{
    std::lock_guard<std::mutex> lk(mu_);
    while (workers_.size() < threads) {
        try {
            workers_.emplace_back([this] { loop(); });
        } catch (const std::system_error &) {
            if (workers_.empty())
                throw;
            return; // at the system's limit: run with the workers there are
        }
    }
}

void ThreadPool::loop()
{
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [this] { return stop_ || !tasks_.empty(); });
            if (stop_ && tasks_.empty())
                return;
            task = std::move(tasks_.front());
            tasks_.pop();
        }
        task();
    }
}

std::shared_ptr<ThreadPool::Batch> ThreadPool::submit(size_t n, size_t parallel,
                                                      std::function<void(size_t)> fn)
{
    auto batch = std::make_shared<Batch>();
    batch->fn = std::move(fn);
    batch->n = n;
    if (n == 0)
        return batch;
    if (parallel == 0)
        parallel = cores();
    {
        std::lock_guard<std::mutex> lk(mu_);
        parallel = std::min({parallel, workers_.size(), n});
        batch->remaining = parallel;
        // Workers claim indices from a shared counter, so uneven images balance.
        for (size_t w = 0; w < parallel; ++w) {
            tasks_.push([b = batch] {
                for (size_t i = b->next++; i < b->n && !b->cancel; i = b->next++) {
                    try {
                        b->fn(i);
                    } catch (...) {
                        // Never let an exception escape a worker thread.
                        std::lock_guard<std::mutex> lk2(b->mu);
                        if (!b->error)
                            b->error = std::current_exception();
                    }
                }
                std::lock_guard<std::mutex> lk2(b->mu);
                if (--b->remaining == 0)
                    b->finished.notify_all();
            });
        }
    }
    cv_.notify_all();
    return batch;
}

bool ThreadPool::Batch::done()
{
    std::lock_guard<std::mutex> lk(mu);
    return remaining == 0;
}

void ThreadPool::Batch::wait(const std::function<bool()> &interrupted)
{
    std::unique_lock<std::mutex> lk(mu);
    while (remaining > 0) {
        if (!interrupted) {
            finished.wait(lk, [&] { return remaining == 0; });
            break;
        }
        if (finished.wait_for(lk, std::chrono::milliseconds(100), [&] { return remaining == 0; }))
            break;
        if (!cancel) {
            lk.unlock(); // the callback may wait for the GIL: hold no lock of ours
            if (interrupted())
                cancel = true;
            lk.lock();
        }
    }
    if (cancel) // first: the caller has an exception pending for it
        throw Interrupted();
    if (error)
        std::rethrow_exception(error);
}

void ThreadPool::parallel_for(size_t n, size_t parallel, const std::function<void(size_t)> &fn,
                              const std::function<bool()> &interrupted)
{
    submit(n, parallel, fn)->wait(interrupted);
}

namespace
{

// The one pool, grown in place. Never destroyed: worker threads must not be
// joined at exit while the interpreter tears down.
struct Global {
    std::mutex mu;
    ThreadPool *pool = nullptr;
};
Global *g_global = nullptr;

// A forked child (a DataLoader worker, say) has none of the parent's threads:
// work queued on their pool would wait forever, and a lock may have been held
// by one of them. The child starts afresh and leaks the old pool (destroying
// it would join threads that do not exist).
void forget_pool_in_child() { g_global = new Global(); }

} // namespace

ThreadPool &global_pool(size_t min_threads)
{
    static std::once_flag once;
    std::call_once(once, [] {
        g_global = new Global();
        pthread_atfork(nullptr, nullptr, forget_pool_in_child);
    });
    Global &g = *g_global;
    std::lock_guard<std::mutex> lk(g.mu);
    if (min_threads == 0)
        min_threads = cores();
    if (g.pool == nullptr)
        g.pool = new ThreadPool(min_threads);
    else
        g.pool->grow(min_threads);
    return *g.pool;
}

} // namespace npp_ext
