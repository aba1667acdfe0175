// Helpers shared by the CPU and CUDA kernel bindings: raw addresses to typed
// pointers, dtype names, and Status -> Python exception.
#pragma once

#include "kernels.h"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace npp_ext::bind
{

// Throws (as a Python RuntimeError) when a kernel entry point failed.
inline void raise_if(Status s, const char *module)
{
    if (s != kOk)
        throw std::runtime_error(std::string(module) + ": " + s);
}

// "float32" -> false, "float64" -> true; anything else throws ValueError.
inline bool is_double(const std::string &dtype, const char *module)
{
    if (dtype == "float32")
        return false;
    if (dtype == "float64")
        return true;
    throw std::invalid_argument(std::string(module) +
                                ": dtype must be 'float32' or 'float64', got '" + dtype + "'");
}

template <typename T> const T *in(uintptr_t p) { return reinterpret_cast<const T *>(p); }
template <typename T> T *out(uintptr_t p) { return reinterpret_cast<T *>(p); }

template <typename T>
PixelBranchParams<T> params(uintptr_t w1, uintptr_t b1, uintptr_t s1, uintptr_t w2, uintptr_t b2,
                            uintptr_t s2)
{
    return {in<T>(w1), in<T>(b1), in<T>(s1), in<T>(w2), in<T>(b2), in<T>(s2)};
}

template <typename T>
PixelBranchGrads<T> grads(uintptr_t w1, uintptr_t b1, uintptr_t s1, uintptr_t w2, uintptr_t b2,
                          uintptr_t s2)
{
    return {out<T>(w1), out<T>(b1), out<T>(s1), out<T>(w2), out<T>(b2), out<T>(s2)};
}

} // namespace npp_ext::bind
