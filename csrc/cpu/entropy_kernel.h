// CPU kernel half of the entropy op: torch-free, one call handles a range of rows so
// the caller decides the threading.
#pragma once

#include <cstdint>

#include "../common/half.h"

namespace proxyfast {
namespace cpu {

// Bin edges for the fused entropy + histogram path (see common/histogram_rule.h).
struct BinSpec {
  double lo;
  double width;
  double top;
  int32_t n_bins;
};

// For rows [row_begin, row_end) of a [N, C] array of logits with the given element
// strides, writes the entropy in nats and its log10 (NaN for a row holding a non-finite
// logit) and, when `bins` is not null, the bin of each row's log10 entropy.
// `scratch` must hold C floats; it is used when the row is not contiguous fp32.
// Contiguous rows take the fast path of `capability` (entropy_simd.h); the others, and
// every row with kDefault, the exact path.
enum class CpuCapability { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };  // narrowest first

template <typename T>
void entropy_rows(const T* logits, int64_t num_classes, int64_t row_stride, int64_t col_stride,
                  int64_t row_begin, int64_t row_end, float* entropy, float* log10_entropy,
                  const BinSpec* bins, int32_t* bin_ids, float* scratch, CpuCapability capability);

// Entropy of one contiguous fp32 row: the exact path, any margin.
void entropy_row(const float* z, int64_t num_classes, float* entropy, float* log10_entropy);

// What this processor has, capped by the environment variable PROXYFAST_CPU_CAPABILITY
// ("avx512", "avx2" or "default"; unset: no cap). `error` is set, and kDefault
// returned, when the variable holds anything else.
CpuCapability entropy_cpu_capability(const char** error);
const char* cpu_capability_name(CpuCapability capability);

// The fast path's bound on delta' (entropy_simd.h): rows below it take entropy_row().
constexpr double kFastPathMinDelta = 0x1p-64;

// exp(r) ~ 1 + r (c1 + r (c2 + r (c3 + r (c4 + r c5)))) on |r| <= ln2 / 2: fitted for the
// least maximum relative error (9e-8; 1.7e-7 evaluated in fp32 by FMA, within 2 ulp).
constexpr float kExpC1 = 0.99999971f;
constexpr float kExpC2 = 0.4999915f;
constexpr float kExpC3 = 0.16667636f;
constexpr float kExpC4 = 0.04189793f;
constexpr float kExpC5 = 0.00829031f;

// The fast path for rows of contiguous logits (column stride 1), per instruction set.
// Only on x86-64, and only to be called where the processor has that set.
template <typename T>
void entropy_rows_avx512(const T* logits, int64_t num_classes, int64_t row_stride, int64_t row_begin,
                         int64_t row_end, float* entropy, float* log10_entropy, float* scratch);
template <typename T>
void entropy_rows_avx2(const T* logits, int64_t num_classes, int64_t row_stride, int64_t row_begin,
                       int64_t row_end, float* entropy, float* log10_entropy, float* scratch);

}  // namespace cpu
}  // namespace proxyfast
