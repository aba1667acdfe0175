// Test (8): the x265 encoder pool runs one CTU configuration at a time. A
// thread that needs another one must get its turn once the encodes in flight
// end, however busy the other threads keep the active configuration.
//
// Counted, not timed: while one 8x8 picture (CTU 16) is encoded, three
// threads encode 128x128 pictures (CTU 64) back to back. Each can finish the
// encode it had in flight and one or two started before the pool saw the
// request (more if this thread is descheduled in between on a loaded
// machine, hence the slack); the pool used to keep admitting them ahead of
// the waiter: hundreds to thousands of encodes, tens of seconds.
#include <atomic>
#include <thread>
#include <vector>

#include "bpg/bpg.h"
#include "test_util.h"

int main()
{
    constexpr int kBigThreads = 3;
    std::atomic<bool> stop{false};
    std::atomic<long> big_done{0};
    const std::vector<uint8_t> big = bt::make_image(128, 128, 1);
    const std::vector<uint8_t> small = bt::make_image(8, 8, 2);
    std::vector<std::thread> threads;
    for (int t = 0; t < kBigThreads; ++t) {
        threads.emplace_back([&] {
            bpg_encoder *enc = bpg_encoder_new();
            while (!stop.load()) {
                CHECK(!bt::encode(enc, big, 128, 128, 30, BPG_CM_420, 1).empty());
                ++big_done;
            }
            bpg_encoder_free(enc);
        });
    }
    // Wait until the big configuration is busy on every thread.
    while (big_done.load() < 3 * kBigThreads)
        std::this_thread::yield();
    bpg_encoder *enc = bpg_encoder_new();
    long worst = 0;
    for (int i = 0; i < 10; ++i) {
        const long before = big_done.load();
        CHECK(!bt::encode(enc, small, 8, 8, 30, BPG_CM_420, 1).empty());
        const long overtaken = big_done.load() - before;
        worst = overtaken > worst ? overtaken : worst;
        // Let the big configuration come back before the next request.
        const long resume = big_done.load();
        while (big_done.load() < resume + kBigThreads)
            std::this_thread::yield();
    }
    stop = true;
    for (std::thread &th : threads)
        th.join();
    bpg_encoder_free(enc);
    CHECKF(worst <= 4 * kBigThreads, "%ld big encodes finished while one small one waited", worst);
    return bt::finish("pool_fairness");
}
