// fp16 / bf16 to fp32 conversion from raw bits, shared by host and device code so the
// kernel halves need no torch or CUDA half types.
#pragma once

#include <cstdint>
#include <cstring>

#include "macros.h"

namespace proxyfast {

// Storage types with the same layout as at::Half and at::BFloat16.
struct Half16 {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

PF_HOST_DEVICE PF_FORCE_INLINE float float_from_bits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

PF_HOST_DEVICE PF_FORCE_INLINE uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
#endif
}

// Exact IEEE binary16 -> binary32, branch-free so that loops over it vectorize.
// Normal numbers: shift exponent and mantissa into place and rescale by 2^-112 (which
// also maps the f16 inf/NaN exponent onto the f32 one). Subnormals: build 0.5 + m*2^-24
// with the mantissa in the low bits and subtract 0.5.
PF_HOST_DEVICE PF_FORCE_INLINE float to_float(Half16 h) {
  const uint32_t w = static_cast<uint32_t>(h.bits) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = float_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = float_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t magnitude = two_w < (1u << 27) ? float_bits(denormalized) : float_bits(normalized);
  return float_from_bits(sign | magnitude);
}

PF_HOST_DEVICE PF_FORCE_INLINE float to_float(BFloat16 b) {
  return float_from_bits(static_cast<uint32_t>(b.bits) << 16);
}

PF_HOST_DEVICE PF_FORCE_INLINE float to_float(float x) { return x; }

}  // namespace proxyfast
