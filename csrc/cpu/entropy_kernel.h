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
template <typename T>
void entropy_rows(const T* logits, int64_t num_classes, int64_t row_stride, int64_t col_stride,
                  int64_t row_begin, int64_t row_end, float* entropy, float* log10_entropy,
                  const BinSpec* bins, int32_t* bin_ids, float* scratch);

// Entropy of one contiguous fp32 row.
void entropy_row(const float* z, int64_t num_classes, float* entropy, float* log10_entropy);

}  // namespace cpu
}  // namespace proxyfast
