// Division by a divisor fixed for a whole launch, with a multiply-high, a subtraction and
// two shifts instead of a 64-bit integer division (a long subroutine on a GPU).
//
// Granlund and Montgomery, "Division by invariant integers using multiplication" (PLDI
// 1994), figure 4.1: for d >= 1 and l = ceil(log2 d), m = floor(2^64 (2^l - d) / d) + 1,
// every 0 <= n < 2^64 has n / d = (t + ((n - t) >> min(l, 1))) >> max(l - 1, 0), where
// t = (m * n) >> 64.
#pragma once

#include <cstdint>

#include "macros.h"

namespace proxyfast {

PF_HOST_DEVICE PF_FORCE_INLINE uint64_t mul_high(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
}

struct FastDivmod {
  uint64_t divisor;
  uint64_t multiplier;
  uint32_t shift1;
  uint32_t shift2;

  // Host side; divisor in [1, 2^63].
  static FastDivmod make(uint64_t d) {
    uint32_t l = 0;
    while (l < 64 && (uint64_t{1} << l) < d) ++l;
    const unsigned __int128 numerator = static_cast<unsigned __int128>((uint64_t{1} << l) - d) << 64;
    const auto multiplier = static_cast<uint64_t>(numerator / d + 1);
    return FastDivmod{d, multiplier, l < 1 ? l : 1u, l > 1 ? l - 1 : 0u};
  }

  PF_HOST_DEVICE PF_FORCE_INLINE uint64_t div(uint64_t n) const {
    const uint64_t t = mul_high(multiplier, n);
    return (t + ((n - t) >> shift1)) >> shift2;
  }

  // n / d and n % d.
  PF_HOST_DEVICE PF_FORCE_INLINE void divmod(uint64_t n, uint64_t& quotient, uint64_t& remainder) const {
    quotient = div(n);
    remainder = n - quotient * divisor;
  }
};

}  // namespace proxyfast
