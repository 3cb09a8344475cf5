// Philox4x32-10 (Salmon et al., SC 2011): a counter-based generator, so the random
// number for example i depends only on (seed, i) and every device produces the same bits.
#pragma once

#include <cstdint>

#include "det_math.h"
#include "macros.h"

namespace proxyfast {

struct Philox4x32Out {
  uint32_t x[4];
};

PF_HOST_DEVICE PF_FORCE_INLINE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

// Ten rounds of Philox4x32 on `counter` with `key`.
PF_HOST_DEVICE inline Philox4x32Out philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                                  uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u;
  constexpr uint32_t kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u;
  constexpr uint32_t kWeyl1 = 0xBB67AE85u;
  // Fully unrolled, also on the host, so that loops over many counters vectorize.
#if defined(__CUDACC__)
#pragma unroll
#elif defined(__GNUC__)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, c0, hi0, lo0);
    philox_mulhilo(kMul1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Philox4x32Out{{c0, c1, c2, c3}};
}

// A uniform double strictly inside (0, 1), (m + 1/2) * 2^-52, from the 52 high bits m of
// the 64-bit word (hi, lo). Built from the bits of 1 + m * 2^-52 and one exact
// subtraction (Sterbenz), because x86 vector units lack 64-bit integer to double.
PF_HOST_DEVICE PF_FORCE_INLINE double uniform_open01_from_words(uint32_t hi, uint32_t lo) {
  const uint64_t bits = (static_cast<uint64_t>(hi) << 32) | lo;
  const double one_plus = bits_double(0x3FF0000000000000ull | (bits >> 12));
  return det_add(one_plus, -(1.0 - 0x1.0p-53));
}

// One Philox block yields the uniforms of items 2j and 2j + 1 of random stream `stream`.
PF_HOST_DEVICE PF_FORCE_INLINE Philox4x32Out philox_block(uint64_t seed, uint64_t pair, uint32_t stream) {
  return philox4x32_10(static_cast<uint32_t>(pair), static_cast<uint32_t>(pair >> 32), stream, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// The uniform of item `index`: words 0-1 of block index / 2 for even items, 2-3 for odd.
PF_HOST_DEVICE inline double philox_uniform_open01(uint64_t seed, uint64_t index, uint32_t stream) {
  const Philox4x32Out r = philox_block(seed, index >> 1, stream);
  return (index & 1) ? uniform_open01_from_words(r.x[2], r.x[3]) : uniform_open01_from_words(r.x[0], r.x[1]);
}

}  // namespace proxyfast
