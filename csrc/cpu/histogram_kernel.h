// CPU kernel half of the histogram op: torch-free.
#pragma once

#include <cstdint>

#include "entropy_kernel.h"

namespace proxyfast {
namespace cpu {

// Bins of values[begin, end) (log10 entropies) into bin_ids; -1 for NaN or out of range.
void assign_bins(const float* values, int64_t begin, int64_t end, const BinSpec& bins, int32_t* bin_ids);
void assign_bins(const double* values, int64_t begin, int64_t end, const BinSpec& bins, int32_t* bin_ids);

// counts[b] = number of ids equal to b, for b in [0, n_bins); ids of -1 are skipped.
void count_bins(const int32_t* bin_ids, int64_t n, int32_t n_bins, int64_t* counts);

}  // namespace cpu
}  // namespace proxyfast
