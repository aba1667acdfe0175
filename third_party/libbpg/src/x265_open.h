// Opening and closing x265 encoders without the memory libx265 3.5 loses on each
// open (docs/x265.md, "Memory lost per encoder open").
#pragma once

#include <vector>

#include <x265.h>

namespace bpg
{

// What close_x265 needs of an open encoder.
struct X265Opened {
    x265_param *param = nullptr;  // the encoder's m_param
    x265_param *latest = nullptr; // its m_latestParam
    std::vector<void *> saos;     // its row filters' SAO objects
};

// Whether this build gives the lost memory back (x265 3.5, whose open and close this
// repair is written for, linked statically with the allocation wraps).
bool x265_repairs_open_leak();

// api->encoder_open(p); with the repair, also frees what the open loses and fills *opened.
x265_encoder *open_x265(const x265_api *api, x265_param *p, X265Opened *opened);

// api->encoder_close(enc); with the repair, also frees what close leaves behind.
// Opens and closes must not run at the same time (the pool runs them one at a time).
void close_x265(const x265_api *api, x265_encoder *enc, const X265Opened &opened);

// In a forked child, before anything else here: starts the records afresh.
void forget_x265_records_in_child();

} // namespace bpg
