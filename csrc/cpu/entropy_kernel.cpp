#include "entropy_kernel.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../common/entropy_math.h"
#include "../common/histogram_rule.h"
#include "cpu_dispatch.h"

namespace proxyfast {
namespace cpu {
namespace {

// Lanes of the top-2 scan; independent accumulators let the compiler vectorize it.
constexpr int kLanes = 16;

inline float max_f(float a, float b) { return a > b ? a : b; }
inline float min_f(float a, float b) { return a < b ? a : b; }

// exp(x) for x in [kEntropyExpFloor, 0], within 2 ulp, branch-free so that the loop
// calling it vectorizes: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor
// polynomial of degree 7 (truncation error < 6e-9), 2^n assembled in the exponent bits.
inline float exp_nonpositive(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * kLog2e + kRoundMagic) - kRoundMagic;
  float r = x - n * 0.693145751953125f;   // ln 2, high bits (exact product for |n| < 2^8)
  r = r - n * 1.428606820309417232e-6f;   // ln 2, low bits
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t biased = static_cast<int32_t>(n) + 127;
  return p * float_from_bits(static_cast<uint32_t>(biased) << 23);
}

// Adds logit x's terms of delta2 and u2 (common/entropy_math.h), or counts it as a
// copy of the maximum. Branch-free so that the loops calling it vectorize.
inline void accumulate_entropy_term(float x, float top1, float top2, float& delta2, float& u2, int32_t& ties) {
  // x - top2 <= 0 for every logit below the maximum; clamped before use, since it can
  // overflow to +-inf for finite logits of opposite signs (a term of 0 times inf is NaN).
  const float e = max_f(min_f(x - top2, 0.0f), kEntropyExpFloor);
  const float exp_e = exp_nonpositive(e);
  const float t = x < top1 ? exp_e : 0.0f;
  delta2 += t;
  u2 += t * -e;
  ties += x == top1 ? 1 : 0;
}

}  // namespace

PF_CPU_CLONES void entropy_row(const float* z, int64_t num_classes, float* entropy, float* log10_entropy) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float m1[kLanes], m2[kLanes], poison[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    m1[l] = neg_inf;
    m2[l] = neg_inf;
    poison[l] = 0.0f;
  }
  int64_t i = 0;
  for (; i + kLanes <= num_classes; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float x = z[i + l];
      m2[l] = max_f(m2[l], min_f(m1[l], x));
      m1[l] = max_f(m1[l], x);
      poison[l] += x * 0.0f;  // NaN once any logit is inf or NaN
    }
  }
  for (int l = 0; i < num_classes; ++i, ++l) {
    const float x = z[i];
    m2[l] = max_f(m2[l], min_f(m1[l], x));
    m1[l] = max_f(m1[l], x);
    poison[l] += x * 0.0f;
  }
  Top2 top{m1[0], m2[0]};
  float poisoned = poison[0];
  for (int l = 1; l < kLanes; ++l) {
    top = top2_merge(top, Top2{m1[l], m2[l]});
    poisoned += poison[l];
  }
  if (poisoned != 0.0f) {  // NaN compares unequal to everything
    *entropy = std::numeric_limits<float>::quiet_NaN();
    *log10_entropy = std::numeric_limits<float>::quiet_NaN();
    return;
  }

  const float top1 = top.m1;
  const float top2 = top.m2;
  // fp32 partial sums per lane over blocks of kBlock logits (each lane adds at most 16
  // terms: relative error < 1e-6), accumulated across blocks in fp64.
  constexpr int64_t kBlock = 16 * kLanes;
  double delta2 = 0.0;
  double u2 = 0.0;
  int64_t ties = 0;
  for (int64_t start = 0; start < num_classes; start += kBlock) {
    const int64_t stop = start + kBlock < num_classes ? start + kBlock : num_classes;
    float lane_delta2[kLanes], lane_u2[kLanes];
    int32_t lane_ties[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      lane_delta2[l] = 0.0f;
      lane_u2[l] = 0.0f;
      lane_ties[l] = 0;
    }
    int64_t j = start;
    for (; j + kLanes <= stop; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        accumulate_entropy_term(z[j + l], top1, top2, lane_delta2[l], lane_u2[l], lane_ties[l]);
      }
    }
    for (int l = 0; j < stop; ++j, ++l) {
      accumulate_entropy_term(z[j], top1, top2, lane_delta2[l], lane_u2[l], lane_ties[l]);
    }
    for (int l = 0; l < kLanes; ++l) {
      delta2 += lane_delta2[l];
      u2 += lane_u2[l];
      ties += lane_ties[l];
    }
  }
  const EntropyResult result = entropy_from_sums(top1, top2, delta2, u2, ties);
  *entropy = result.entropy;
  *log10_entropy = result.log10_entropy;
}

CpuCapability entropy_cpu_capability(const char** error) {
  *error = nullptr;
  CpuCapability best = CpuCapability::kDefault;
#if PF_X86_KERNELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    best = CpuCapability::kAvx2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
      best = CpuCapability::kAvx512;
    }
  }
#endif
  const char* cap = std::getenv("PROXYFAST_CPU_CAPABILITY");
  if (cap == nullptr || *cap == '\0') return best;
  CpuCapability wanted;
  if (std::strcmp(cap, "avx512") == 0) {
    wanted = CpuCapability::kAvx512;
  } else if (std::strcmp(cap, "avx2") == 0) {
    wanted = CpuCapability::kAvx2;
  } else if (std::strcmp(cap, "default") == 0) {
    wanted = CpuCapability::kDefault;
  } else {
    *error = "PROXYFAST_CPU_CAPABILITY must be avx512, avx2 or default";
    return CpuCapability::kDefault;
  }
  return wanted < best ? wanted : best;
}

const char* cpu_capability_name(CpuCapability capability) {
  switch (capability) {
    case CpuCapability::kAvx512:
      return "avx512";
    case CpuCapability::kAvx2:
      return "avx2";
    default:
      return "default";
  }
}

template <typename T>
void entropy_rows(const T* logits, int64_t num_classes, int64_t row_stride, int64_t col_stride,
                  int64_t row_begin, int64_t row_end, float* entropy, float* log10_entropy,
                  const BinSpec* bins, int32_t* bin_ids, float* scratch, CpuCapability capability) {
#if PF_X86_KERNELS
  if (capability != CpuCapability::kDefault) {
    const auto fast_rows = [&](const auto* rows, int64_t stride, int64_t begin, int64_t end, float* h, float* log10_h) {
      if (capability == CpuCapability::kAvx512) {
        entropy_rows_avx512(rows, num_classes, stride, begin, end, h, log10_h, scratch);
      } else {
        entropy_rows_avx2(rows, num_classes, stride, begin, end, h, log10_h, scratch);
      }
    };
    if (col_stride == 1) {
      fast_rows(logits, row_stride, row_begin, row_end, entropy, log10_entropy);
    } else {  // gathered into a contiguous fp32 row: the same results as a contiguous copy
      for (int64_t r = row_begin; r < row_end; ++r) {
        const T* row = logits + r * row_stride;
        for (int64_t c = 0; c < num_classes; ++c) scratch[c] = to_float(row[c * col_stride]);
        fast_rows(static_cast<const float*>(scratch), 0, 0, 1, entropy + r, log10_entropy + r);
      }
    }
    if (bins != nullptr) {
      for (int64_t r = row_begin; r < row_end; ++r) {
        bin_ids[r] = bin_index(log10_entropy[r], bins->lo, bins->width, bins->n_bins, bins->top);
      }
    }
    return;
  }
#endif
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* row = logits + r * row_stride;
    const float* z;
    if (std::is_same<T, float>::value && col_stride == 1) {
      z = reinterpret_cast<const float*>(row);
    } else {
      for (int64_t c = 0; c < num_classes; ++c) scratch[c] = to_float(row[c * col_stride]);
      z = scratch;
    }
    entropy_row(z, num_classes, entropy + r, log10_entropy + r);
    if (bins != nullptr) {
      bin_ids[r] = bin_index(log10_entropy[r], bins->lo, bins->width, bins->n_bins, bins->top);
    }
  }
}

template void entropy_rows<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*, float*,
                                  const BinSpec*, int32_t*, float*, CpuCapability);
template void entropy_rows<Half16>(const Half16*, int64_t, int64_t, int64_t, int64_t, int64_t, float*, float*,
                                   const BinSpec*, int32_t*, float*, CpuCapability);
template void entropy_rows<BFloat16>(const BFloat16*, int64_t, int64_t, int64_t, int64_t, int64_t, float*, float*,
                                     const BinSpec*, int32_t*, float*, CpuCapability);

}  // namespace cpu
}  // namespace proxyfast
