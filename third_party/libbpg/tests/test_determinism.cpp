// Test (7): encoding is a pure function of the image and the options. The
// same image gives the same bytes when encoded twice, after other images
// (other sizes, formats and CTU configurations of x265) on the same
// bpg_encoder, on a fresh encoder, and with one encoder per thread on two
// threads at once, and in a child forked after all that. Decoding is checked
// the same way.
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "bpg/bpg.h"
#include "test_util.h"

namespace
{

using Bytes = std::vector<uint8_t>;

struct Job {
    int w, h, chroma, qp, level;
    uint32_t seed;
    std::string name() const
    {
        return std::to_string(w) + "x" + std::to_string(h) + " " + bt::chroma_name(chroma) +
               " qp " + std::to_string(qp) + " level " + std::to_string(level);
    }
};

// 64x64 and 130x63 use x265's 64 and 32 CTU configurations, 8x8 and 1x1
// the 16x16 one, so that the encoder pool has to switch between them.
const Job kJobs[] = {
    {64, 64, BPG_CM_420, 30, 4, 1},  {64, 64, BPG_CM_420, 30, 4, 2},  {8, 8, BPG_CM_420, 30, 4, 3},
    {130, 63, BPG_CM_444, 25, 3, 4}, {40, 36, BPG_CM_GRAY, 35, 5, 5}, {1, 1, BPG_CM_444, 20, 2, 6},
    {64, 64, BPG_CM_420, 22, 4, 1},  {33, 17, BPG_CM_422, 28, 4, 7},
};
const int kNumJobs = sizeof(kJobs) / sizeof(kJobs[0]);

Bytes run_job(bpg_encoder *enc, const Job &j)
{
    return bt::encode(enc, bt::make_image(j.w, j.h, j.seed), j.w, j.h, j.qp, j.chroma, j.level);
}

void test_single_thread(std::vector<Bytes> *reference)
{
    // Reference: each job alone on a fresh encoder.
    for (const Job &j : kJobs) {
        bpg_encoder *enc = bpg_encoder_new();
        reference->push_back(run_job(enc, j));
        bpg_encoder_free(enc);
    }
    // The same image twice in a row.
    bpg_encoder *enc = bpg_encoder_new();
    const Bytes a1 = run_job(enc, kJobs[0]), a2 = run_job(enc, kJobs[0]);
    CHECK(!a1.empty() && a1 == a2);
    CHECK(a1 == (*reference)[0]);
    // Every job after every other job on one encoder.
    for (int i = 0; i < kNumJobs; ++i) {
        for (int k = 0; k < kNumJobs; ++k) {
            run_job(enc, kJobs[k]);
            const Bytes again = run_job(enc, kJobs[i]);
            CHECKF(again == (*reference)[i], "%s after %s: %zu bytes, alone %zu bytes",
                   kJobs[i].name().c_str(), kJobs[k].name().c_str(), again.size(),
                   (*reference)[i].size());
        }
    }
    bpg_encoder_free(enc);
    // Different images of one size really give different files.
    CHECK((*reference)[0] != (*reference)[1]);
}

void test_threads(const std::vector<Bytes> &reference)
{
    const int kRounds = 3;
    std::vector<std::vector<Bytes>> got(2);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([t, &got] {
            bpg_encoder *enc = bpg_encoder_new();
            // The threads walk the jobs in opposite orders, so that they ask
            // for different CTU configurations at the same time.
            for (int r = 0; r < kRounds; ++r)
                for (int i = 0; i < kNumJobs; ++i)
                    got[t].push_back(run_job(enc, kJobs[t == 0 ? i : kNumJobs - 1 - i]));
            bpg_encoder_free(enc);
        });
    }
    for (std::thread &th : threads)
        th.join();
    for (int t = 0; t < 2; ++t) {
        for (size_t n = 0; n < got[t].size(); ++n) {
            const int i = static_cast<int>(n % kNumJobs);
            const int job = t == 0 ? i : kNumJobs - 1 - i;
            CHECKF(got[t][n] == reference[job], "thread %d: %s differs from one thread", t,
                   kJobs[job].name().c_str());
        }
    }
    // Same CTU configuration on both threads at once (no pool switching).
    std::vector<Bytes> same(2 * kRounds);
    threads.clear();
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([t, &same] {
            bpg_encoder *enc = bpg_encoder_new();
            for (int r = 0; r < kRounds; ++r)
                same[static_cast<size_t>(t * kRounds + r)] = run_job(enc, kJobs[t]);
            bpg_encoder_free(enc);
        });
    }
    for (std::thread &th : threads)
        th.join();
    for (int t = 0; t < 2; ++t)
        for (int r = 0; r < kRounds; ++r)
            CHECKF(same[static_cast<size_t>(t * kRounds + r)] == reference[t],
                   "thread %d round %d: %s differs from one thread", t, r, kJobs[t].name().c_str());
}

void test_decode_threads(const std::vector<Bytes> &files)
{
    std::vector<Bytes> single;
    bpg_decoder *dec = bpg_decoder_new();
    for (int i = 0; i < kNumJobs; ++i)
        single.push_back(bt::decode(dec, files[i], kJobs[i].w, kJobs[i].h));
    bpg_decoder_free(dec);
    std::vector<std::vector<Bytes>> got(2);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([t, &got, &files] {
            bpg_decoder *d = bpg_decoder_new();
            for (int r = 0; r < 3; ++r)
                for (int i = 0; i < kNumJobs; ++i)
                    got[t].push_back(bt::decode(d, files[i], kJobs[i].w, kJobs[i].h));
            bpg_decoder_free(d);
        });
    }
    for (std::thread &th : threads)
        th.join();
    for (int t = 0; t < 2; ++t)
        for (size_t n = 0; n < got[t].size(); ++n)
            CHECKF(got[t][n] == single[n % kNumJobs], "decode thread %d: %s differs", t,
                   kJobs[n % kNumJobs].name().c_str());
}

// A child forked while the pool holds idle x265 encoders (each with a thread
// the child does not have) must still encode, at every CTU configuration.
void test_forked_child(const std::vector<Bytes> &reference)
{
    const pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(60); // a hang ends the child with SIGALRM
        bpg_encoder *enc = bpg_encoder_new();
        int bad = 0;
        for (int i = 0; i < kNumJobs; ++i)
            bad += run_job(enc, kJobs[i]) != reference[i];
        bpg_encoder_free(enc);
        _exit(bad == 0 ? 0 : 1);
    }
    if (pid < 0)
        return;
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child: %s",
           WIFSIGNALED(status) ? "hung or crashed" : "output differs");
}

} // namespace

int main()
{
    std::vector<Bytes> reference;
    test_single_thread(&reference);
    if (static_cast<int>(reference.size()) == kNumJobs) {
        test_threads(reference);
        test_decode_threads(reference);
        test_forked_child(reference);
    }
    return bt::finish("test_determinism");
}
