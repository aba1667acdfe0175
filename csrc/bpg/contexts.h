// Per-thread codec contexts, created on first use and kept for the thread's
// life: the x265 encoders and the libde265 decoder they hold are reused by
// every later call on that thread.
#pragma once

#include <bpg/bpg.h>

namespace npp_ext
{

bpg_encoder *thread_encoder();
bpg_decoder *thread_decoder();

} // namespace npp_ext
