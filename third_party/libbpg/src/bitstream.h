// Bit-level readers and writers for the BPG header and HEVC parameter sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bpg
{

// MSB-first bit writer with HEVC exp-Golomb codes.
class BitWriter
{
  public:
    void put(uint32_t value, int bits);
    void put_flag(bool f) { put(f ? 1 : 0, 1); }
    void put_ue(uint32_t value);
    void put_se(int32_t value);
    // rbsp_trailing_bits: a one bit, then zeros to the byte boundary.
    void put_trailing_bits();
    // Zero bits up to the byte boundary (the BPG hevc_header padding).
    void align_zero();
    const std::vector<uint8_t> &bytes() const { return buf_; }

  private:
    std::vector<uint8_t> buf_;
    int bit_ = 0; // bits used in the last byte (0 = byte aligned)
};

// MSB-first bit reader that never reads past its buffer: a read beyond the
// end sets the error flag and returns zeros.
class BitReader
{
  public:
    BitReader(const uint8_t *data, size_t size) : data_(data), size_(size) {}
    uint32_t get(int bits);
    bool get_flag() { return get(1) != 0; }
    uint32_t get_ue(); // error on codes longer than 32 bits
    int32_t get_se();
    bool failed() const { return failed_; }
    size_t bit_pos() const { return pos_; }

  private:
    const uint8_t *data_;
    size_t size_;
    size_t pos_ = 0;
    bool failed_ = false;
};

// Byte reader for the BPG container (ue7 numbers, big-endian fields).
class ByteReader
{
  public:
    ByteReader(const uint8_t *data, size_t size) : data_(data), size_(size) {}
    bool u8(uint8_t *v);
    // BPG ue7: 7 bits per byte, MSB group first, at most 5 bytes / 32 bits.
    bool ue7(uint32_t *v, std::string *err);
    bool skip(size_t n);
    size_t pos() const { return pos_; }
    size_t left() const { return size_ - pos_; }
    const uint8_t *here() const { return data_ + pos_; }

  private:
    const uint8_t *data_;
    size_t size_;
    size_t pos_ = 0;
};

void put_ue7(std::vector<uint8_t> &out, uint32_t v);

// Emulation prevention: RBSP -> NAL payload and back.
std::vector<uint8_t> escape_rbsp(const uint8_t *rbsp, size_t size);
std::vector<uint8_t> unescape_nal(const uint8_t *nal, size_t size);

} // namespace bpg
