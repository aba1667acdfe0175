#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>

#include <pthread.h>

namespace npp_ext
{

ThreadPool::ThreadPool(size_t threads)
{
    for (size_t i = 0; i < threads; ++i)
        workers_.emplace_back([this] { loop(); });
}

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

void ThreadPool::parallel_for(size_t n, size_t parallel, const std::function<void(size_t)> &fn)
{
    if (n == 0)
        return;
    if (parallel == 0 || parallel > workers_.size())
        parallel = workers_.size();
    if (parallel > n)
        parallel = n;
    // Workers claim indices from a shared counter, so uneven images balance.
    struct State {
        std::atomic<size_t> next{0};
        size_t remaining;
        std::mutex mu;
        std::condition_variable done;
        std::exception_ptr error; // first exception thrown by fn
    };
    auto st = std::make_shared<State>();
    st->remaining = parallel;
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (size_t w = 0; w < parallel; ++w) {
            tasks_.push([st, n, &fn] {
                for (size_t i = st->next++; i < n; i = st->next++) {
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
    st->done.wait(lk, [&] { return st->remaining == 0; });
    if (st->error)
        std::rethrow_exception(st->error);
}

namespace
{

// Every pool made so far. Never destroyed: a batch running on a smaller pool in
// another thread keeps using it, and worker threads must not be joined at exit
// while the interpreter tears down.
struct Pools {
    std::mutex mu;
    std::vector<std::unique_ptr<ThreadPool>> all;
};
Pools *g_pools = nullptr;

// A forked child (a DataLoader worker, say) has none of the parent's threads:
// work queued on their pools would wait forever, and `mu` may have been held
// by one of them. The child starts afresh and leaks the old pools (destroying
// them would join threads that do not exist).
void forget_pools_in_child() { g_pools = new Pools(); }

Pools &pools()
{
    static std::once_flag once;
    std::call_once(once, [] {
        g_pools = new Pools();
        pthread_atfork(nullptr, nullptr, forget_pools_in_child);
    });
    return *g_pools;
}

} // namespace

ThreadPool &global_pool(size_t min_threads)
{
    Pools &p = pools();
    std::lock_guard<std::mutex> lk(p.mu);
    if (min_threads == 0)
        min_threads = std::max<size_t>(1, std::thread::hardware_concurrency());
    if (p.all.empty() || p.all.back()->size() < min_threads)
        p.all.push_back(std::make_unique<ThreadPool>(min_threads));
    return *p.all.back();
}

} // namespace npp_ext
