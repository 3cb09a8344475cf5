// Per-block bin counting shared by the fused entropy histogram and histogram_bins:
// counts go to shared memory when the bins fit, and are flushed to the global int64
// counts once per block; otherwise each value counts straight into global memory.
#pragma once

#include <cstdint>

#include "device.h"

namespace proxyfast {
namespace cuda {

// Bins that fit in shared memory (32 KB of uint32 counts) per block.
constexpr int32_t kMaxSharedBins = 8192;

// The number of bins a block counts in shared memory: n_bins when they fit, else 0.
inline int32_t shared_bin_count(int32_t n_bins) { return n_bins <= kMaxSharedBins ? n_bins : 0; }

// Every thread of the block must call this before counting.
__device__ inline void zero_shared_counts(unsigned int* shared_counts, int32_t shared_bins) {
  for (int32_t b = threadIdx.x; b < shared_bins; b += blockDim.x) shared_counts[b] = 0;
  __syncthreads();
}

__device__ __forceinline__ void count_bin(int32_t b, int32_t shared_bins, unsigned int* shared_counts,
                                          unsigned long long* global_counts) {
  if (shared_bins > 0) {
    atomicAdd(&shared_counts[b], 1u);
  } else {
    atomicAdd(&global_counts[b], 1ull);
  }
}

// Every thread of the block must call this after counting.
__device__ inline void flush_shared_counts(const unsigned int* shared_counts, int32_t shared_bins,
                                           unsigned long long* global_counts) {
  __syncthreads();
  for (int32_t b = threadIdx.x; b < shared_bins; b += blockDim.x) {
    if (shared_counts[b] != 0) atomicAdd(&global_counts[b], static_cast<unsigned long long>(shared_counts[b]));
  }
}

}  // namespace cuda
}  // namespace proxyfast
