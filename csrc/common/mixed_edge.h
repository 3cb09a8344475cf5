// Arithmetic of the fused mixed-op edge shared by the CPU and CUDA kernels: the 3x3
// pooling windows of the DARTS search space, the non-affine batch norms, and the
// rounding of fp32 results to fp16 / bf16.
//
// An edge computes y = sum_t w_t * term_t + w_skip * x, over the terms
//   t = 0: bn(maxpool(x)),  t = 1: bn(avgpool(x)),  t = 2 + b: branch b,
// with 3x3 pooling, padding 1, stride 1 or 2 (avg pooling without the padding in its
// count). A branch is either taken as it is (a convolution's final output) or, when it
// is the input of the convolution's closing non-affine batch norm, normalised here too;
// each pool is always followed by its batch norm. A batch norm uses batch statistics
// (training) or running ones (eval).
#pragma once

#include <cmath>
#include <cstdint>

#include "half.h"
#include "macros.h"

#if defined(__CUDACC__)
#define PF_UNROLL _Pragma("unroll")
#else
#define PF_UNROLL
#endif

namespace proxyfast {
namespace mixed_edge {

// Convolution-branch outputs one kernel call takes.
constexpr int kMaxBranches = 8;

// Terms of an edge: the two pools, then the branches.
constexpr int kTermMax = 0;
constexpr int kTermAvg = 1;
constexpr int kTermBranch0 = 2;
constexpr int kMaxTerms = kTermBranch0 + kMaxBranches;

// How a term is normalised (norm_modes): not at all (a branch taken as it is; an absent
// pool), with batch statistics, or with running statistics.
constexpr int64_t kNormNone = 0;
constexpr int64_t kNormBatch = 1;
constexpr int64_t kNormRunning = 2;

// The per-channel statistics array [2 * terms, C] (float64) holds for term t its mean in
// row 2t and its biased variance in row 2t + 1. Batch statistics of a channel holding a
// NaN or an infinite value are NaN, mean and variance alike, on every device (whatever
// order the values are summed in).
PF_HOST_DEVICE PF_FORCE_INLINE int64_t mean_row(int t) { return 2 * t; }
PF_HOST_DEVICE PF_FORCE_INLINE int64_t var_row(int t) { return 2 * t + 1; }

// Shapes of one edge: x is [batch, channels, height, width], the output and every
// branch [batch, channels, out_height, out_width]; all contiguous NCHW.
struct Geometry {
  int64_t batch;
  int64_t channels;
  int64_t height;
  int64_t width;
  int64_t out_height;
  int64_t out_width;
  int64_t stride;

  PF_HOST_DEVICE int64_t planes() const { return batch * channels; }
  PF_HOST_DEVICE int64_t plane_size() const { return height * width; }
  PF_HOST_DEVICE int64_t out_plane_size() const { return out_height * out_width; }
  // Values each pool's batch norm averages over: N * out_height * out_width.
  PF_HOST_DEVICE int64_t stat_count() const { return batch * out_height * out_width; }
};

// Accumulation type: fp32 for fp32/fp16/bf16 storage, fp64 for fp64.
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};
template <typename T>
using acc_t = typename Acc<T>::type;

PF_HOST_DEVICE PF_FORCE_INLINE float widen(float v) { return v; }
PF_HOST_DEVICE PF_FORCE_INLINE double widen(double v) { return v; }
PF_HOST_DEVICE PF_FORCE_INLINE float widen(Half16 v) { return to_float(v); }
PF_HOST_DEVICE PF_FORCE_INLINE float widen(BFloat16 v) { return to_float(v); }

// fp32 -> binary16, rounded to nearest even; overflow gives inf, NaN stays NaN.
PF_HOST_DEVICE PF_FORCE_INLINE Half16 half_from_float(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t magnitude = x & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return Half16{static_cast<uint16_t>(sign | 0x7E00u)};  // NaN
  if (magnitude >= 0x47800000u) return Half16{static_cast<uint16_t>(sign | 0x7C00u)};  // >= 2^16: inf
  if (magnitude < 0x38800000u) {
    // Below 2^-14, the smallest normal half: a multiple of 2^-24. Scaling by 2^24 is
    // exact and rintf rounds to nearest even; 1024 units is the smallest normal, whose
    // bits are 0x0400 too.
    const float units = rintf(float_from_bits(magnitude) * 16777216.0f);
    return Half16{static_cast<uint16_t>(sign | static_cast<uint32_t>(units))};
  }
  // Normal: rebias the exponent, keep 10 of the 23 mantissa bits, round the other 13 to
  // nearest even; a carry out of the mantissa correctly bumps the exponent (up to inf).
  uint32_t h = ((magnitude >> 23) - 112u) << 10 | ((magnitude >> 13) & 0x3FFu);
  const uint32_t rest = magnitude & 0x1FFFu;
  h += (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ? 1u : 0u;
  return Half16{static_cast<uint16_t>(sign | h)};
}

// fp32 -> bfloat16, rounded to nearest even; NaN stays NaN.
PF_HOST_DEVICE PF_FORCE_INLINE BFloat16 bfloat16_from_float(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return BFloat16{static_cast<uint16_t>((x >> 16) | 0x0040u)};
  return BFloat16{static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16)};
}

PF_HOST_DEVICE PF_FORCE_INLINE void store(float* p, float v) { *p = v; }
PF_HOST_DEVICE PF_FORCE_INLINE void store(double* p, double v) { *p = v; }
PF_HOST_DEVICE PF_FORCE_INLINE void store(Half16* p, float v) { *p = half_from_float(v); }
PF_HOST_DEVICE PF_FORCE_INLINE void store(BFloat16* p, float v) { *p = bfloat16_from_float(v); }

// Output size of the 3x3, padding-1 pooling along a dimension of `size`: ceil(size / stride).
PF_HOST_DEVICE PF_FORCE_INLINE int64_t pooled_size(int64_t size, int64_t stride) { return (size - 1) / stride + 1; }

// The three input rows (or columns) under output index `out`. The centre is always
// inside; an outer tap that falls on the padding is replaced by the centre and marked
// invalid, so every load stays in bounds and the loops need no branches. For the
// maximum a repeated centre changes nothing (strict > keeps the first occurrence, which
// comes in PyTorch's scan order); sums skip the invalid taps.
struct Taps {
  int64_t lo;
  int64_t mid;
  int64_t hi;
  bool lo_valid;
  bool hi_valid;
};

PF_HOST_DEVICE PF_FORCE_INLINE Taps window_taps(int64_t out, int64_t stride, int64_t size) {
  const int64_t mid = out * stride;
  const bool lo_valid = mid >= 1;
  const bool hi_valid = mid + 1 < size;
  return Taps{lo_valid ? mid - 1 : mid, mid, hi_valid ? mid + 1 : mid, lo_valid, hi_valid};
}

PF_HOST_DEVICE PF_FORCE_INLINE int valid_taps(const Taps& t) {
  return 1 + static_cast<int>(t.lo_valid) + static_cast<int>(t.hi_valid);
}

template <typename A>
struct Pooled {
  A max;
  A avg;
  int64_t argmax;  // plane offset of the maximum (the first in row-major order, or the last NaN)
};

// Max and average pooling of one window of a plane with `width` columns, exactly as
// PyTorch computes them: the maximum with its tie and NaN rule, the sum in row-major
// order divided by the number of valid taps (count_include_pad=False).
template <typename A, typename T>
PF_HOST_DEVICE PF_FORCE_INLINE Pooled<A> pool3x3(const T* plane, int64_t width, const Taps& rows, const Taps& cols) {
  const int64_t row[3] = {rows.lo, rows.mid, rows.hi};
  const bool row_valid[3] = {rows.lo_valid, true, rows.hi_valid};
  const int64_t col[3] = {cols.lo, cols.mid, cols.hi};
  const bool col_valid[3] = {cols.lo_valid, true, cols.hi_valid};
  A max = static_cast<A>(-INFINITY);
  int64_t argmax = row[0] * width + col[0];
  A sum = 0;
PF_UNROLL
  for (int a = 0; a < 3; ++a) {
PF_UNROLL
    for (int b = 0; b < 3; ++b) {
      const int64_t offset = row[a] * width + col[b];
      const A v = static_cast<A>(widen(plane[offset]));
      const bool take = v > max || v != v;
      max = take ? v : max;
      argmax = take ? offset : argmax;
      sum += (row_valid[a] && col_valid[b]) ? v : A(0);
    }
  }
  return Pooled<A>{max, sum / static_cast<A>(valid_taps(rows) * valid_taps(cols)), argmax};
}

// A normalised term's share of the output, w * (v - mean) / sqrt(var + eps), written as
// scale * v + shift.
struct NormTerm {
  double scale;
  double shift;
};

PF_HOST_DEVICE PF_FORCE_INLINE NormTerm forward_norm_term(double weight, double mean, double var, double eps) {
  const double rstd = 1.0 / sqrt(var + eps);
  return NormTerm{weight * rstd, -weight * rstd * mean};
}

// The backward of one term for one channel, given over that channel's `count` values
// the sums of g and of g * (v - centre), centre being the term's mean when normalised,
// else 0. The gradient reaching a value v of the term is g_scale * g + v_scale * v +
// shift; weight_grad is sum g * term, the channel's share of the term weight's gradient.
// With batch statistics the mean and the variance depend on the values (the usual
// batch-norm backward); running statistics are constants.
struct TermGrad {
  double g_scale;
  double v_scale;
  double shift;
  double weight_grad;
};

PF_HOST_DEVICE PF_FORCE_INLINE TermGrad backward_term(int64_t mode, double weight, double mean, double var,
                                                      double eps, double sum_g, double sum_g_centered,
                                                      double count) {
  if (mode == kNormNone) return TermGrad{weight, 0.0, 0.0, sum_g_centered};
  const double rstd = 1.0 / sqrt(var + eps);
  const double sum_g_normalized = rstd * sum_g_centered;
  TermGrad t{weight * rstd, 0.0, 0.0, sum_g_normalized};
  if (mode == kNormBatch) {
    // rstd * w * (g - mean(g) - vhat * mean(g * vhat)), vhat = (v - mean) * rstd.
    t.v_scale = -weight * rstd * rstd * sum_g_normalized / count;
    t.shift = -weight * rstd * sum_g / count - t.v_scale * mean;
  }
  return t;
}

// v_scale * v of the gradient above, or 0 where v_scale is 0 (a branch taken as it is,
// or running statistics): an infinite v must not turn the gradient into NaN there.
template <typename A>
PF_HOST_DEVICE PF_FORCE_INLINE A value_term(A v_scale, A v) {
  return v_scale != A(0) ? v_scale * v : A(0);
}

// Input rows (or columns) i of a pooled dimension are covered by the outputs
// [first, last] (empty when first > last, which cannot happen for sizes >= 1).
// Stride is 1 or 2: shifts rather than divisions.
PF_HOST_DEVICE PF_FORCE_INLINE int64_t first_covering(int64_t i, int64_t stride) {
  // The smallest p with p * stride + 1 >= i: i - 1, or ceil((i - 1) / 2) = i / 2.
  return i <= 1 ? 0 : (stride == 1 ? i - 1 : i >> 1);
}

PF_HOST_DEVICE PF_FORCE_INLINE int64_t last_covering(int64_t i, int64_t stride, int64_t out_size) {
  // The largest p with p * stride - 1 <= i.
  const int64_t p = stride == 1 ? i + 1 : (i + 1) >> 1;
  return p < out_size - 1 ? p : out_size - 1;
}

}  // namespace mixed_edge
}  // namespace proxyfast
