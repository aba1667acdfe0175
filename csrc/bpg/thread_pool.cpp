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

void ThreadPool::parallel_for(size_t n, size_t parallel, const std::function<void(size_t)> &fn,
                              const std::function<bool()> &interrupted)
{
    if (n == 0)
        return;
    if (parallel == 0)
        parallel = cores();
    // Workers claim indices from a shared counter, so uneven images balance.
    struct State {
        std::atomic<size_t> next{0};
        std::atomic<bool> cancel{false};
        size_t remaining = 0;
        std::mutex mu;
        std::condition_variable done;
        std::exception_ptr error; // first exception thrown by fn
    };
    auto st = std::make_shared<State>();
    {
        std::lock_guard<std::mutex> lk(mu_);
        parallel = std::min({parallel, workers_.size(), n});
        st->remaining = parallel;
        for (size_t w = 0; w < parallel; ++w) {
            tasks_.push([st, n, &fn] {
                for (size_t i = st->next++; i < n && !st->cancel; i = st->next++) {
                    try {
                        fn(i);
                    } catch (...) {
                        // Never let an exception escape a worker thread.
                        std::lock_guard<std::mutex> lk2(st->mu);
                        if (!st->error)
                            st->error = std::current_exception();
                    }
                }
                std::lock_guard<std::mutex> lk2(st->mu);
                if (--st->remaining == 0)
                    st->done.notify_all();
            });
        }
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lk(st->mu);
    while (st->remaining > 0) {
        if (!interrupted) {
            st->done.wait(lk, [&] { return st->remaining == 0; });
            break;
        }
        if (st->done.wait_for(lk, std::chrono::milliseconds(100),
                              [&] { return st->remaining == 0; }))
            break;
        if (!st->cancel) {
            lk.unlock(); // the callback may wait for the GIL: hold no lock of ours
            if (interrupted())
                st->cancel = true;
            lk.lock();
        }
    }
    if (st->cancel) // first: the caller has an exception pending for it
        throw Interrupted();
    if (st->error)
        std::rethrow_exception(st->error);
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
