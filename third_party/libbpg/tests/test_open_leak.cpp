// Test: encoding pictures of ever new sizes keeps the heap flat. x265 opens an
// encoder per picture size, and x265 3.5 loses about 1.3 KB on each open, and
// its SAO buffers (3 KB and more) when SAO is off, unless src/x265_open.cpp
// gives them back (static libx265). Per level (8: SAO on; 1: the superfast
// preset, SAO off), two identical passes over 120 sizes (the pool keeps 8 idle
// encoders, so every picture reopens one) must leave the same bytes in use.
#include <cstdio>

#include <malloc.h>

#include "bpg/bpg.h"
#include "test_util.h"
#include "x265_open.h"

namespace
{

constexpr int kSizes = 120;
constexpr size_t kAllowedGrowth = 24 * 1024; // the losses: 150 KB and more per pass

void pass(bpg_encoder *enc, int level)
{
    for (int k = 0; k < kSizes; ++k) {
        const int w = 64 + 8 * (k % 40), h = 64 + 8 * (k / 40);
        CHECK(!bt::encode(enc, bt::make_image(w, h, k), w, h, 35, BPG_CM_420, level).empty());
    }
}

void check_flat(int level)
{
    bpg_encoder *enc = bpg_encoder_new();
    pass(enc, level); // warm-up: tables, thread-local buffers, the allocator's free lists
    pass(enc, level);
    const size_t before = mallinfo2().uordblks;
    pass(enc, level);
    const size_t after = mallinfo2().uordblks;
    bpg_encoder_free(enc);
    std::printf("open_leak: level %d, %d encoder opens: heap in use %zu -> %zu bytes\n", level,
                kSizes, before, after);
    CHECKF(after <= before + kAllowedGrowth, "level %d: the heap grew by %zu bytes", level,
           after - before);
}

} // namespace

int main()
{
    if (!bpg::x265_repairs_open_leak()) {
        std::printf("open_leak: skipped: libx265 is linked as a shared library, or is not 3.5\n");
        return 77;
    }
    check_flat(8);
    check_flat(1);
    return bt::finish("open_leak");
}
