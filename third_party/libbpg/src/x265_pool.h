// Process-wide pool of x265 encoders.
//
// x265 keeps the CTU and minimum CU size in process globals: every encoder
// open at once must use the same sizes, and changing them needs all encoders
// closed and x265_cleanup(). Small pictures need a smaller CTU (x265 refuses
// pictures smaller than one CTU), so the pool runs one "CTU configuration"
// at a time: a request for another configuration closes the idle encoders,
// waits for busy ones to come back, then switches. Encoders are kept idle
// between calls, keyed by picture size, chroma format and preset, because
// opening one costs milliseconds.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include <x265.h>

#include "format.h"
#include "x265_open.h"

namespace bpg
{

struct X265Key {
    int coded_w = 0, coded_h = 0, chroma = 0, level = 0;
    int pad_unit = 8;  // 16 when a side is <= 8: then the min CU is 16 too
    std::string extra; // extra x265 parameters, "name=value:name=value"
    bool operator==(const X265Key &o) const
    {
        return coded_w == o.coded_w && coded_h == o.coded_h && chroma == o.chroma &&
               level == o.level && pad_unit == o.pad_unit && extra == o.extra;
    }
};

struct X265Encoder {
    X265Key key;
    int ctu = 64, min_cu = 8;
    const x265_api *api = nullptr;
    x265_param *param = nullptr;
    x265_encoder *enc = nullptr;
    X265Opened opened; // what close_x265 needs
    x265_picture *pic = nullptr;
    bool broken = false;   // set after a failed encode: closed instead of reused
    std::thread::id owner; // the thread that last used it
    ~X265Encoder();
};

struct X265Deleter {
    void operator()(X265Encoder *e) const;
};
using X265Lease = std::unique_ptr<X265Encoder, X265Deleter>;

// Borrow an encoder for `key` (opening one if none is idle). On failure
// returns null and sets *err.
X265Lease acquire_x265(const X265Key &key, std::string *err);

// The I-slice QP x265 uses in constant-QP mode for a requested QP.
int x265_intra_qp(const x265_param *param, int qp);

} // namespace bpg
