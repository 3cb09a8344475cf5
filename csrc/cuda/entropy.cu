// CUDA glue and kernels of the entropy op, the twin of
// cpu/entropy.cpp with the same checks (checks.h) and row math (common/entropy_math.h).
//
// A group of threads handles one row: a warp for rows of up to kWarpMaxClasses logits,
// a block above that. Pass 1 finds the top two logits and whether the row is finite;
// pass 2 sums the entropy terms relative to them. Each thread keeps the logits it read
// in pass 1 in registers (kItems of them), so pass 2 reads no memory; only rows longer
// than kBlockItems * kMaxBlockThreads (64 KB of fp32) are read twice, the second time
// mostly from L1/L2, which hold the few rows an SM works on at a time. Column-major
// logits (a transposed [C, N] tensor) take one thread per row instead, so that a warp
// reads 32 neighbouring rows at once rather than 32 scattered logits of one row.
//
// The sums are compensated fp32 (Neumaier's variant of Kahan summation, with the
// products' rounding errors kept too): about the accuracy of fp64 sums at fp32 speed,
// which matters on GPUs whose fp64 units run at 1/64 of the fp32 rate.
#include <algorithm>
#include <limits>

#include "../checks.h"
#include "../common/entropy_math.h"
#include "../common/half.h"
#include "../common/histogram_rule.h"
#include "bin_counts.cuh"
#include "device.h"

namespace proxyfast {
namespace cuda {
namespace {

// Warp-per-row path: 8 warps per block, up to 32 logits per lane (C <= 1024 covers
// ImageNet; 8 per lane for C <= 256 keeps registers, hence occupancy, high for small C).
constexpr int kWarpBlockThreads = 256;
constexpr int64_t kWarpMaxClasses = 32 * kWarpSize;
constexpr int64_t kWarpSmallClasses = 8 * kWarpSize;
// Block-per-row path: up to kBlockItems logits per thread stay in registers. Longer rows
// are streamed by smaller blocks, so that several rows per SM overlap their reductions.
constexpr int kBlockItems = 16;
constexpr int kMinBlockThreads = 128;
constexpr int kMaxBlockThreads = 1024;
constexpr int kStreamBlockThreads = 512;
constexpr int64_t kMaxBlocks = 4096;  // grid cap; rows are grid-strided beyond it
constexpr int kColumnBlockThreads = 128;  // thread-per-row path

// Pass 1 state of a thread or a group: the top two logits and whether all are finite.
struct RowTop {
  float m1;
  float m2;
  int finite;
};

// A sum of fp32 terms as an fp32 value and the rounding error it has shed.
struct CompensatedSum {
  float sum;
  float error;
};

__device__ __forceinline__ float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);  // never contracted into an FMA: `error` must see this very product
#else
  return a * b;
#endif
}

// Neumaier's step: the rounding error of sum + x, exactly, whichever is larger.
__device__ __forceinline__ void add(CompensatedSum& s, float x) {
  const float t = s.sum + x;
  s.error += fabsf(s.sum) >= fabsf(x) ? (s.sum - t) + x : (x - t) + s.sum;
  s.sum = t;
}

// Adds a * b, keeping the product's rounding error too (exact by an FMA).
__device__ __forceinline__ void add_product(CompensatedSum& s, float a, float b) {
  const float p = mul_rn(a, b);
  s.error += fmaf(a, b, -p);
  add(s, p);
}

__device__ __forceinline__ CompensatedSum combine(CompensatedSum a, CompensatedSum b) {
  add(a, b.sum);
  a.error += b.error;
  return a;
}

__device__ __forceinline__ double total(CompensatedSum s) {
  return static_cast<double>(s.sum) + static_cast<double>(s.error);
}

// Pass 2 state: the sums of common/entropy_math.h over logits below the maximum, and
// the number of logits equal to it.
struct RowSums {
  CompensatedSum delta2;
  CompensatedSum u2;
  long long ties;
};

// The fused histogram; ids == nullptr when not binning. shared_bins is n_bins when the
// counts fit in shared memory, else 0 and rows count straight into global memory.
struct BinParams {
  double lo;
  double width;
  double top;
  int32_t n_bins;
  int32_t shared_bins;
  int32_t* ids;
  unsigned long long* counts;
};

__device__ __forceinline__ RowTop combine(RowTop a, RowTop b) {
  const Top2 t = top2_merge(Top2{a.m1, a.m2}, Top2{b.m1, b.m2});
  return RowTop{t.m1, t.m2, a.finite & b.finite};
}

__device__ __forceinline__ RowSums combine(RowSums a, RowSums b) {
  return RowSums{combine(a.delta2, b.delta2), combine(a.u2, b.u2), a.ties + b.ties};
}

__device__ __forceinline__ RowTop shfl_xor(RowTop v, int mask) {
  return RowTop{__shfl_xor_sync(kFullMask, v.m1, mask), __shfl_xor_sync(kFullMask, v.m2, mask),
                __shfl_xor_sync(kFullMask, v.finite, mask)};
}

__device__ __forceinline__ CompensatedSum shfl_xor(CompensatedSum v, int mask) {
  return CompensatedSum{__shfl_xor_sync(kFullMask, v.sum, mask), __shfl_xor_sync(kFullMask, v.error, mask)};
}

__device__ __forceinline__ RowSums shfl_xor(RowSums v, int mask) {
  return RowSums{shfl_xor(v.delta2, mask), shfl_xor(v.u2, mask), __shfl_xor_sync(kFullMask, v.ties, mask)};
}

// Butterfly reduction: every lane ends with the same total (combine is commutative).
// The whole warp must be converged here; lanes without logits hold the identity.
template <typename V>
__device__ __forceinline__ V warp_allreduce(V v) {
#pragma unroll
  for (int mask = kWarpSize / 2; mask > 0; mask /= 2) v = combine(v, shfl_xor(v, mask));
  return v;
}

// Every thread of the block gets the total. `slots` holds one value per warp; the
// trailing barrier lets the next reduction reuse them.
template <typename V>
__device__ V block_allreduce(V v, V* slots) {
  v = warp_allreduce(v);
  const int warp = threadIdx.x / kWarpSize;
  if (threadIdx.x % kWarpSize == 0) slots[warp] = v;
  __syncthreads();
  V total = slots[0];
  const int num_warps = blockDim.x / kWarpSize;
  for (int w = 1; w < num_warps; ++w) total = combine(total, slots[w]);
  __syncthreads();
  return total;
}

struct WarpGroup {
  __device__ int rank() const { return threadIdx.x % kWarpSize; }
  __device__ int size() const { return kWarpSize; }
  template <typename V>
  __device__ V allreduce(V v) const {
    return warp_allreduce(v);
  }
};

// One thread alone: its reductions are the identity.
struct ThreadGroup {
  __device__ int rank() const { return 0; }
  __device__ int size() const { return 1; }
  template <typename V>
  __device__ V allreduce(V v) const {
    return v;
  }
};

struct BlockGroup {
  RowTop* top_slots;
  RowSums* sum_slots;
  __device__ int rank() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ RowTop allreduce(RowTop v) const { return block_allreduce(v, top_slots); }
  __device__ RowSums allreduce(RowSums v) const { return block_allreduce(v, sum_slots); }
};

template <typename T>
__device__ __forceinline__ float load_logit(const T* __restrict__ row, int64_t j, int64_t col_stride) {
  return to_float(row[j * col_stride]);
}

__device__ __forceinline__ RowTop push(RowTop t, float x) {
  const Top2 top = top2_push(Top2{t.m1, t.m2}, x);
  return RowTop{top.m1, top.m2, t.finite & (isfinite(x) ? 1 : 0)};
}

// Logit x's terms of delta2 and u2, exactly as the CPU kernel forms them, or a tie with
// the maximum (in a finite row, x >= m1 means x == m1).
__device__ __forceinline__ void accumulate(RowSums& sums, float x, float m1, float m2) {
  if (x < m1) {
    const float d = fmaxf(fminf(x - m2, 0.0f), kEntropyExpFloor);  // as on the CPU: x - m2 may overflow
    const float t = expf(d);
    add(sums.delta2, t);
    add_product(sums.u2, t, -d);
  } else {
    sums.ties += 1;
  }
}

// Entropy of one row, computed by all threads of `group` (each gets the result).
// kItems > 0: the thread's logits j = rank + i * size, i < kItems, are kept in registers
// (requires num_classes <= kItems * size); kItems == 0: the row is read twice.
template <int kItems, typename T, typename Group>
__device__ EntropyResult row_entropy(const T* __restrict__ row, int64_t num_classes, int64_t col_stride,
                                     const Group& group) {
  const int rank = group.rank();
  const int size = group.size();
  const float neg_inf = -std::numeric_limits<float>::infinity();
  RowTop top{neg_inf, neg_inf, 1};
  float cached[kItems > 0 ? kItems : 1] = {};
  if constexpr (kItems > 0) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int64_t j = rank + static_cast<int64_t>(i) * size;
      if (j < num_classes) {
        cached[i] = load_logit(row, j, col_stride);
        top = push(top, cached[i]);
      }
    }
  } else {
#pragma unroll 4
    for (int64_t j = rank; j < num_classes; j += size) top = push(top, load_logit(row, j, col_stride));
  }
  top = group.allreduce(top);
  if (!top.finite) return entropy_nan();

  RowSums sums{{0.0f, 0.0f}, {0.0f, 0.0f}, 0};
  if constexpr (kItems > 0) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if (rank + static_cast<int64_t>(i) * size < num_classes) accumulate(sums, cached[i], top.m1, top.m2);
    }
  } else {
#pragma unroll 4
    for (int64_t j = rank; j < num_classes; j += size) accumulate(sums, load_logit(row, j, col_stride), top.m1, top.m2);
  }
  sums = group.allreduce(sums);
  return entropy_from_sums(top.m1, top.m2, total(sums.delta2), total(sums.u2), sums.ties);
}

// Writes row r's outputs; called by one thread per row.
__device__ __forceinline__ void store_row(int64_t r, EntropyResult result, float* __restrict__ entropy,
                                          float* __restrict__ log10_entropy, const BinParams& bins,
                                          unsigned int* shared_counts) {
  entropy[r] = result.entropy;
  log10_entropy[r] = result.log10_entropy;
  if (bins.ids == nullptr) return;
  const int32_t b = bin_index(result.log10_entropy, bins.lo, bins.width, bins.n_bins, bins.top);
  bins.ids[r] = b;
  if (b >= 0) count_bin(b, bins.shared_bins, shared_counts, bins.counts);
}

template <int kItems, typename T>
__global__ void __launch_bounds__(kWarpBlockThreads)
    entropy_warp_kernel(const T* __restrict__ logits, int64_t num_rows, int64_t num_classes, int64_t row_stride,
                        int64_t col_stride, float* __restrict__ entropy, float* __restrict__ log10_entropy,
                        BinParams bins) {
  unsigned int* shared_counts = dynamic_shared<unsigned int>();
  zero_shared_counts(shared_counts, bins.shared_bins);
  const int64_t warps_per_block = blockDim.x / kWarpSize;
  const int64_t first = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize;
  const int64_t step = gridDim.x * warps_per_block;
  // The row index is uniform across the warp, so all lanes take part in the shuffles.
  for (int64_t r = first; r < num_rows; r += step) {
    const EntropyResult result = row_entropy<kItems>(logits + r * row_stride, num_classes, col_stride, WarpGroup{});
    if (threadIdx.x % kWarpSize == 0) store_row(r, result, entropy, log10_entropy, bins, shared_counts);
  }
  flush_shared_counts(shared_counts, bins.shared_bins, bins.counts);
}

template <int kItems, typename T>
__global__ void __launch_bounds__(kMaxBlockThreads)
    entropy_block_kernel(const T* __restrict__ logits, int64_t num_rows, int64_t num_classes, int64_t row_stride,
                         int64_t col_stride, float* __restrict__ entropy, float* __restrict__ log10_entropy,
                         BinParams bins) {
  __shared__ RowTop top_slots[kMaxBlockThreads / kWarpSize];
  __shared__ RowSums sum_slots[kMaxBlockThreads / kWarpSize];
  unsigned int* shared_counts = dynamic_shared<unsigned int>();
  zero_shared_counts(shared_counts, bins.shared_bins);
  const BlockGroup group{top_slots, sum_slots};
  for (int64_t r = blockIdx.x; r < num_rows; r += gridDim.x) {
    const EntropyResult result = row_entropy<kItems>(logits + r * row_stride, num_classes, col_stride, group);
    if (threadIdx.x == 0) store_row(r, result, entropy, log10_entropy, bins, shared_counts);
  }
  flush_shared_counts(shared_counts, bins.shared_bins, bins.counts);
}

// Column-major logits: one thread per row, neighbouring threads on neighbouring rows.
template <typename T>
__global__ void __launch_bounds__(kColumnBlockThreads)
    entropy_column_kernel(const T* __restrict__ logits, int64_t num_rows, int64_t num_classes, int64_t row_stride,
                          int64_t col_stride, float* __restrict__ entropy, float* __restrict__ log10_entropy,
                          BinParams bins) {
  unsigned int* shared_counts = dynamic_shared<unsigned int>();
  zero_shared_counts(shared_counts, bins.shared_bins);
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < num_rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const EntropyResult result = row_entropy<0>(logits + r * row_stride, num_classes, col_stride, ThreadGroup{});
    store_row(r, result, entropy, log10_entropy, bins, shared_counts);
  }
  flush_shared_counts(shared_counts, bins.shared_bins, bins.counts);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
void launch_entropy(const at::Tensor& logits, float* entropy, float* log10_entropy, const BinParams& bins) {
  const int64_t n = logits.size(0);
  const int64_t c = logits.size(1);
  const int64_t row_stride = logits.stride(0);
  const int64_t col_stride = logits.stride(1);
  const T* data = reinterpret_cast<const T*>(logits.const_data_ptr());
  const size_t shared_bytes = static_cast<size_t>(bins.shared_bins) * sizeof(unsigned int);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (row_stride == 1 && col_stride != 1 && n > 1) {
    const auto blocks = static_cast<unsigned int>(std::min(ceil_div(n, kColumnBlockThreads), kMaxBlocks));
    launch(entropy_column_kernel<T>, blocks, kColumnBlockThreads, shared_bytes, stream, data, n, c, row_stride,
           col_stride, entropy, log10_entropy, bins);
  } else if (c <= kWarpMaxClasses) {
    const auto blocks = static_cast<unsigned int>(std::min(ceil_div(n, kWarpBlockThreads / kWarpSize), kMaxBlocks));
    if (c <= kWarpSmallClasses) {
      launch(entropy_warp_kernel<kWarpSmallClasses / kWarpSize, T>, blocks, kWarpBlockThreads, shared_bytes, stream,
             data, n, c, row_stride, col_stride, entropy, log10_entropy, bins);
    } else {
      launch(entropy_warp_kernel<kWarpMaxClasses / kWarpSize, T>, blocks, kWarpBlockThreads, shared_bytes, stream,
             data, n, c, row_stride, col_stride, entropy, log10_entropy, bins);
    }
  } else {
    const auto blocks = static_cast<unsigned int>(std::min(n, kMaxBlocks));
    if (c <= int64_t{kBlockItems} * kMaxBlockThreads) {
      // Just enough whole warps for kBlockItems logits per thread.
      const auto threads = static_cast<unsigned int>(
          std::max<int64_t>(kMinBlockThreads, ceil_div(ceil_div(c, kBlockItems), kWarpSize) * kWarpSize));
      launch(entropy_block_kernel<kBlockItems, T>, blocks, threads, shared_bytes, stream, data, n, c, row_stride,
             col_stride, entropy, log10_entropy, bins);
    } else {
      launch(entropy_block_kernel<0, T>, blocks, kStreamBlockThreads, shared_bytes, stream, data, n, c, row_stride,
             col_stride, entropy, log10_entropy, bins);
    }
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void run_entropy(const at::Tensor& logits, at::Tensor& entropy, at::Tensor& log10_entropy, const BinParams& bins) {
  if (logits.size(0) == 0) return;
  float* h = entropy.mutable_data_ptr<float>();
  float* log10_h = log10_entropy.mutable_data_ptr<float>();
  switch (logits.scalar_type()) {
    case at::kFloat:
      launch_entropy<float>(logits, h, log10_h, bins);
      break;
    case at::kHalf:
      launch_entropy<Half16>(logits, h, log10_h, bins);
      break;
    default:
      launch_entropy<BFloat16>(logits, h, log10_h, bins);
      break;
  }
}

std::tuple<at::Tensor, at::Tensor> entropy_cuda(const at::Tensor& logits) {
  check_logits(logits);
  const c10::cuda::CUDAGuard guard(logits.device());
  const auto options = logits.options().dtype(at::kFloat);
  at::Tensor entropy = at::empty({logits.size(0)}, options);
  at::Tensor log10_entropy = at::empty({logits.size(0)}, options);
  run_entropy(logits, entropy, log10_entropy, BinParams{0.0, 1.0, 0.0, 0, 0, nullptr, nullptr});
  return {entropy, log10_entropy};
}

}  // namespace

PF_CUDA_LIBRARY_IMPL(m) { m.impl("entropy", &entropy_cuda); }

}  // namespace cuda
}  // namespace proxyfast
