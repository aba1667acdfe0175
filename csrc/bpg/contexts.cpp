#include "contexts.h"

#include <memory>
#include <new>

namespace npp_ext
{

namespace
{
struct EncoderDeleter {
    void operator()(bpg_encoder *e) const { bpg_encoder_free(e); }
};
struct DecoderDeleter {
    void operator()(bpg_decoder *d) const { bpg_decoder_free(d); }
};
} // namespace

bpg_encoder *thread_encoder()
{
    thread_local std::unique_ptr<bpg_encoder, EncoderDeleter> enc(bpg_encoder_new());
    if (!enc)
        throw std::bad_alloc();
    return enc.get();
}

bpg_decoder *thread_decoder()
{
    thread_local std::unique_ptr<bpg_decoder, DecoderDeleter> dec(bpg_decoder_new());
    if (!dec)
        throw std::bad_alloc();
    return dec.get();
}

} // namespace npp_ext
