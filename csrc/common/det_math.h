// Bit-reproducible double arithmetic for values that must agree across CPU and GPU.
//
// Library log() differs between glibc and CUDA's libdevice in the last bit, and
// compilers may fuse a*b+c into an FMA on one device and not on the other. The
// sampling keys decide which examples are drawn, so they are computed only with
// correctly rounded +, -, *, / that no compiler may contract: on the device through
// the _rn intrinsics, on the host through -ffp-contract=off (set by setup.py and CMake).
#pragma once

#include <cstdint>
#include <cstring>

#include "macros.h"

namespace proxyfast {

PF_HOST_DEVICE PF_FORCE_INLINE double det_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

PF_HOST_DEVICE PF_FORCE_INLINE double det_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

PF_HOST_DEVICE PF_FORCE_INLINE double det_div(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

PF_HOST_DEVICE PF_FORCE_INLINE uint64_t double_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
#endif
}

PF_HOST_DEVICE PF_FORCE_INLINE double bits_double(uint64_t bits) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(bits));
#else
  double x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
#endif
}

// Natural log of a positive, normal, finite double, to within a few ulp, computed
// identically on every device. x = 2^e * m with m in [sqrt(1/2), sqrt(2)), and
// log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.1716, by its odd series.
PF_HOST_DEVICE inline double det_log(double x) {
  const uint64_t bits = double_bits(x);
  const double mantissa = bits_double((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);  // [1, 2)
  // Selects rather than branches, so that loops over this function vectorize.
  const bool halve = mantissa > 1.4142135623730951;
  const double m = halve ? det_mul(mantissa, 0.5) : mantissa;
  const int32_t exponent = static_cast<int32_t>((bits >> 52) & 0x7ff) - 1023 + (halve ? 1 : 0);
  const double s = det_div(det_add(m, -1.0), det_add(m, 1.0));
  const double z = det_mul(s, s);
  // 2 * sum_{j>=0} s^(2j+1) / (2j+1); z^12 < 1e-18 so 12 terms reach double precision.
  double series = 1.0 / 25.0;
  series = det_add(det_mul(series, z), 1.0 / 23.0);
  series = det_add(det_mul(series, z), 1.0 / 21.0);
  series = det_add(det_mul(series, z), 1.0 / 19.0);
  series = det_add(det_mul(series, z), 1.0 / 17.0);
  series = det_add(det_mul(series, z), 1.0 / 15.0);
  series = det_add(det_mul(series, z), 1.0 / 13.0);
  series = det_add(det_mul(series, z), 1.0 / 11.0);
  series = det_add(det_mul(series, z), 1.0 / 9.0);
  series = det_add(det_mul(series, z), 1.0 / 7.0);
  series = det_add(det_mul(series, z), 1.0 / 5.0);
  series = det_add(det_mul(series, z), 1.0 / 3.0);
  const double log_m = det_add(det_mul(det_mul(series, z), det_mul(2.0, s)), det_mul(2.0, s));
  // ln 2 split so that exponent * kLn2Hi is exact for |exponent| < 2^11.
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  const double e = static_cast<double>(exponent);
  return det_add(det_mul(e, kLn2Hi), det_add(log_m, det_mul(e, kLn2Lo)));
}

}  // namespace proxyfast
