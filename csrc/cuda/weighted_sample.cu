// CUDA glue and kernels of the weighted_sample op, the twin of cpu/weighted_sample.cpp.
//
// Every item gets the exponential clock of common/sampling_keys.h (the same bits as on
// the CPU, indexed by the item's position); the sample is the k smallest clocks in
// increasing order, ties to the lower index. Rather than sorting all N clocks:
//   1. a histogram of the clocks' binades (their exponent bits) finds the binade that
//      holds the k-th smallest clock; the m >= k items up to that binade are the
//      candidates (about 2k at most: clocks of any weights have a concave CDF F, and
//      F(2t) <= 2 F(t));
//   2. the candidates are compacted in index order and radix sorted by clock; the sort
//      is stable, so equal clocks keep the lower index first: the CPU's order exactly.
#if !defined(PF_HOST_MODEL)
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>
#endif

#include <algorithm>

#include "../checks.h"
#include "../common/det_math.h"
#include "../common/sampling_keys.h"
#include "device.h"

namespace proxyfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;  // about one wave on an H100; items are grid-strided
// One bucket per binade: the 11 exponent bits of a clock. Valid clocks are positive, so
// the sign bit is clear, and +inf (a zero weight) lands in the last bucket. One more
// slot, kBuckets, counts the invalid clocks: those of negative, infinite or NaN weights.
constexpr int kBuckets = 2048;
constexpr int kBucketShift = 52;
constexpr int kBucketsPerThread = kBuckets / kThreads;

__device__ __forceinline__ int clock_bucket(double clock) {
  return static_cast<int>(double_bits(clock) >> kBucketShift);
}

// clocks[i] and indices[i] = i for every item, and the histogram of their buckets.
template <typename W>
__global__ void __launch_bounds__(kThreads)
    clock_kernel(const W* __restrict__ weights, int64_t n, int64_t stride, uint64_t seed, uint32_t stream,
                 double* __restrict__ clocks, int32_t* __restrict__ indices,
                 unsigned long long* __restrict__ histogram) {
  __shared__ unsigned int block_histogram[kBuckets + 1];
  for (int b = threadIdx.x; b <= kBuckets; b += blockDim.x) block_histogram[b] = 0;
  __syncthreads();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double clock = exponential_clock(static_cast<double>(weights[i * stride]), seed, static_cast<uint64_t>(i),
                                           stream);
    clocks[i] = clock;
    indices[i] = static_cast<int32_t>(i);
    atomicAdd(&block_histogram[clock > 0.0 ? clock_bucket(clock) : kBuckets], 1u);  // NaN compares false
  }
  __syncthreads();
  for (int b = threadIdx.x; b <= kBuckets; b += blockDim.x) {
    if (block_histogram[b] != 0) atomicAdd(&histogram[b], static_cast<unsigned long long>(block_histogram[b]));
  }
}

// One block of kThreads threads. stats = {the bucket holding the k-th smallest clock (-1
// for k = 0), the number of items up to and including that bucket (0 for k = 0), the
// number of finite clocks, the number of invalid clocks}; requires 0 <= k <= N.
__global__ void __launch_bounds__(kThreads)
    last_bucket_kernel(const unsigned long long* __restrict__ histogram, int64_t k, int64_t* __restrict__ stats) {
  __shared__ long long before_thread[kThreads];
  long long counts[kBucketsPerThread];
  long long total = 0;
  const int first = threadIdx.x * kBucketsPerThread;
#pragma unroll
  for (int j = 0; j < kBucketsPerThread; ++j) {
    counts[j] = static_cast<long long>(histogram[first + j]);
    total += counts[j];
  }
  before_thread[threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.x == 0) {  // an exclusive scan of the threads' totals; 256 additions
    long long running = 0;
    for (int t = 0; t < kThreads; ++t) {
      const long long count = before_thread[t];
      before_thread[t] = running;
      running += count;
    }
    stats[0] = -1;
    stats[1] = 0;
    stats[3] = static_cast<long long>(histogram[kBuckets]);
  }
  __syncthreads();
  long long before = before_thread[threadIdx.x];
#pragma unroll
  for (int j = 0; j < kBucketsPerThread; ++j) {
    // For k >= 1 exactly one (non-empty) bucket has `before` < k <= `before` + count.
    if (before < k && k <= before + counts[j]) {
      stats[0] = first + j;
      stats[1] = before + counts[j];
    }
    if (threadIdx.x == kThreads - 1 && j == kBucketsPerThread - 1) stats[2] = before;  // all but the +inf bucket
    before += counts[j];
  }
}

struct InBuckets {
  const double* clocks;
  int last_bucket;
  __device__ bool operator()(int32_t i) const { return clock_bucket(clocks[i]) <= last_bucket; }
};

__global__ void __launch_bounds__(kThreads)
    gather_clocks_kernel(const double* __restrict__ clocks, const int32_t* __restrict__ indices, int64_t m,
                         double* __restrict__ out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < m;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[j] = clocks[indices[j]];
  }
}

unsigned int grid_for(int64_t items) {
  return static_cast<unsigned int>(std::min((items + kThreads - 1) / kThreads, kMaxBlocks));
}

at::Tensor weighted_sample_cuda(const at::Tensor& weights, int64_t k, int64_t seed, int64_t stream) {
  check_sample_args(weights, k, seed, stream);
  const c10::cuda::CUDAGuard guard(weights.device());
  const auto options = weights.options();

  // n < 2^31 (checked above): int32 indices suffice.
  const int64_t n = weights.numel();
  const cudaStream_t cuda_stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor clocks = at::empty({n}, options.dtype(at::kDouble));
  at::Tensor indices = at::empty({n}, options.dtype(at::kInt));
  // int64 counts updated through unsigned 64-bit atomics: the same bits for counts < 2^63.
  at::Tensor histogram = at::zeros({kBuckets + 1}, options.dtype(at::kLong));
  auto* histogram_data = reinterpret_cast<unsigned long long*>(histogram.mutable_data_ptr<int64_t>());
  double* clock_data = clocks.mutable_data_ptr<double>();
  int32_t* index_data = indices.mutable_data_ptr<int32_t>();
  if (n > 0) {
    if (weights.scalar_type() == at::kFloat) {
      launch(clock_kernel<float>, grid_for(n), kThreads, 0, cuda_stream, weights.const_data_ptr<float>(), n,
             weights.stride(0), static_cast<uint64_t>(seed), static_cast<uint32_t>(stream), clock_data, index_data,
             histogram_data);
    } else {
      launch(clock_kernel<double>, grid_for(n), kThreads, 0, cuda_stream, weights.const_data_ptr<double>(), n,
             weights.stride(0), static_cast<uint64_t>(seed), static_cast<uint32_t>(stream), clock_data, index_data,
             histogram_data);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor stats = at::empty({4}, options.dtype(at::kLong));
  launch(last_bucket_kernel, 1, kThreads, 0, cuda_stream, histogram_data, k, stats.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const at::Tensor host_stats = stats.cpu();  // waits for the kernels above
  const int last_bucket = static_cast<int>(host_stats.const_data_ptr<int64_t>()[0]);
  const int64_t m = host_stats.const_data_ptr<int64_t>()[1];
  // The CPU op's checks, in its order: the weights are validated whatever k is.
  check_sample_counts(host_stats.const_data_ptr<int64_t>()[3], host_stats.const_data_ptr<int64_t>()[2], k);
  if (k == 0) return at::empty({0}, options.dtype(at::kLong));

  // The candidates, in index order, then their clocks; two halves each for the sort.
  at::Tensor candidate_indices = at::empty({2 * m}, options.dtype(at::kInt));
  at::Tensor candidate_clocks = at::empty({2 * m}, options.dtype(at::kDouble));
  at::Tensor num_selected = at::empty({1}, options.dtype(at::kLong));
  int32_t* selected = candidate_indices.mutable_data_ptr<int32_t>();
  double* selected_clocks = candidate_clocks.mutable_data_ptr<double>();
  const InBuckets in_buckets{clock_data, last_bucket};
  size_t select_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceSelect::If(nullptr, select_bytes, index_data, selected,
                                       num_selected.mutable_data_ptr<int64_t>(), n, in_buckets, cuda_stream));
  // At least one byte: a null temp pointer would make the second call a size query again.
  at::Tensor select_temp =
      at::empty({static_cast<int64_t>(std::max<size_t>(select_bytes, 1))}, options.dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceSelect::If(select_temp.mutable_data_ptr(), select_bytes, index_data, selected,
                                       num_selected.mutable_data_ptr<int64_t>(), n, in_buckets, cuda_stream));
  launch(gather_clocks_kernel, grid_for(m), kThreads, 0, cuda_stream, clock_data, selected, m, selected_clocks);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  cub::DoubleBuffer<double> keys(selected_clocks, selected_clocks + m);
  cub::DoubleBuffer<int32_t> values(selected, selected + m);
  const int num_items = static_cast<int>(m);
  size_t sort_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys, values, num_items, 0, 64, cuda_stream));
  at::Tensor sort_temp = at::empty({static_cast<int64_t>(std::max<size_t>(sort_bytes, 1))}, options.dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_temp.mutable_data_ptr(), sort_bytes, keys, values, num_items, 0,
                                                 64, cuda_stream));
  const int64_t sorted_half = values.Current() == selected ? 0 : m;
  return candidate_indices.narrow(0, sorted_half, k).to(at::kLong);
}

}  // namespace

PF_CUDA_LIBRARY_IMPL(m) { m.impl("weighted_sample", &weighted_sample_cuda); }

}  // namespace cuda
}  // namespace proxyfast
