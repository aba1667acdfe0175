#include "bitstream.h"

namespace bpg
{

void BitWriter::put(uint32_t value, int bits)
{
    for (int i = bits - 1; i >= 0; --i) {
        if (bit_ == 0)
            buf_.push_back(0);
        if ((value >> i) & 1)
            buf_.back() |= static_cast<uint8_t>(0x80 >> bit_);
        bit_ = (bit_ + 1) & 7;
    }
}

void BitWriter::put_ue(uint32_t value)
{
    // codeNum + 1 written with as many leading zeros as it has bits minus one.
    const uint64_t v = static_cast<uint64_t>(value) + 1;
    int len = 0;
    while ((v >> len) > 1)
        ++len;
    put(0, len);
    put(static_cast<uint32_t>(v >> 32), len + 1 > 32 ? len + 1 - 32 : 0);
    put(static_cast<uint32_t>(v), len + 1 > 32 ? 32 : len + 1);
}

void BitWriter::put_se(int32_t value)
{
    const uint32_t code = value > 0 ? 2u * static_cast<uint32_t>(value) - 1
                                    : 2u * static_cast<uint32_t>(-static_cast<int64_t>(value));
    put_ue(code);
}

void BitWriter::put_trailing_bits()
{
    put(1, 1);
    align_zero();
}

void BitWriter::align_zero()
{
    if (bit_ != 0)
        put(0, 8 - bit_);
}

uint32_t BitReader::get(int bits)
{
    uint32_t v = 0;
    for (int i = 0; i < bits; ++i) {
        uint32_t b = 0;
        if (pos_ < size_ * 8)
            b = (data_[pos_ >> 3] >> (7 - (pos_ & 7))) & 1;
        else
            failed_ = true;
        ++pos_;
        v = (v << 1) | b;
    }
    return v;
}

uint32_t BitReader::get_ue()
{
    int zeros = 0;
    while (!get_flag()) {
        if (failed_ || ++zeros > 31) {
            failed_ = true;
            return 0;
        }
    }
    const uint64_t v = (uint64_t{1} << zeros) - 1 + get(zeros);
    if (v > 0xFFFFFFFEu) {
        failed_ = true;
        return 0;
    }
    return static_cast<uint32_t>(v);
}

int32_t BitReader::get_se()
{
    const uint32_t k = get_ue();
    return (k & 1) ? static_cast<int32_t>((k + 1) / 2) : -static_cast<int32_t>(k / 2);
}

bool ByteReader::u8(uint8_t *v)
{
    if (pos_ >= size_)
        return false;
    *v = data_[pos_++];
    return true;
}

bool ByteReader::ue7(uint32_t *v, std::string *err)
{
    uint32_t value = 0;
    for (int i = 0; i < 5; ++i) {
        uint8_t b;
        if (!u8(&b)) {
            *err = "file ends inside a ue7 number";
            return false;
        }
        if (i == 0 && b == 0x80) {
            *err = "invalid ue7 number (leading 0x80)";
            return false;
        }
        if (i == 4 && (value >> 25) != 0) {
            *err = "ue7 number exceeds 32 bits";
            return false;
        }
        value = (value << 7) | (b & 0x7f);
        if (!(b & 0x80)) {
            *v = value;
            return true;
        }
    }
    *err = "ue7 number longer than 5 bytes";
    return false;
}

bool ByteReader::skip(size_t n)
{
    if (n > size_ - pos_)
        return false;
    pos_ += n;
    return true;
}

void put_ue7(std::vector<uint8_t> &out, uint32_t v)
{
    int groups = 1;
    while (groups < 5 && (v >> (7 * groups)) != 0)
        ++groups;
    for (int i = groups - 1; i >= 0; --i) {
        uint8_t b = (v >> (7 * i)) & 0x7f;
        if (i > 0)
            b |= 0x80;
        out.push_back(b);
    }
}

std::vector<uint8_t> escape_rbsp(const uint8_t *rbsp, size_t size)
{
    std::vector<uint8_t> out;
    out.reserve(size + size / 64 + 4);
    int zeros = 0;
    for (size_t i = 0; i < size; ++i) {
        if (zeros >= 2 && rbsp[i] <= 3) {
            out.push_back(3);
            zeros = 0;
        }
        out.push_back(rbsp[i]);
        zeros = rbsp[i] == 0 ? zeros + 1 : 0;
    }
    // A payload may not end in a zero byte.
    if (!out.empty() && out.back() == 0)
        out.push_back(3);
    return out;
}

std::vector<uint8_t> unescape_nal(const uint8_t *nal, size_t size)
{
    std::vector<uint8_t> out;
    out.reserve(size);
    int zeros = 0;
    for (size_t i = 0; i < size; ++i) {
        if (zeros >= 2 && nal[i] == 3) {
            zeros = 0;
            continue;
        }
        out.push_back(nal[i]);
        zeros = nal[i] == 0 ? zeros + 1 : 0;
    }
    return out;
}

} // namespace bpg
