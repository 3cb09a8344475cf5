#include "histogram_kernel.h"

#include "../common/histogram_rule.h"

namespace proxyfast {
namespace cpu {

namespace {

template <typename T>
void assign_loop(const T* values, int64_t begin, int64_t end, const BinSpec& bins, int32_t* bin_ids) {
  for (int64_t i = begin; i < end; ++i) {
    bin_ids[i] = bin_index(static_cast<double>(values[i]), bins.lo, bins.width, bins.n_bins, bins.top);
  }
}

}  // namespace

void assign_bins(const float* values, int64_t begin, int64_t end, const BinSpec& bins, int32_t* bin_ids) {
  assign_loop(values, begin, end, bins, bin_ids);
}

void assign_bins(const double* values, int64_t begin, int64_t end, const BinSpec& bins, int32_t* bin_ids) {
  assign_loop(values, begin, end, bins, bin_ids);
}

void count_bins(const int32_t* bin_ids, int64_t n, int32_t n_bins, int64_t* counts) {
  for (int32_t b = 0; b < n_bins; ++b) counts[b] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t b = bin_ids[i];
    if (b >= 0 && b < n_bins) ++counts[b];
  }
}

}  // namespace cpu
}  // namespace proxyfast
