// CUDA glue and kernel of the histogram_bins op, the twin of cpu/histogram.cpp.
#include <algorithm>

#include "../checks.h"
#include "../common/histogram_rule.h"
#include "bin_counts.cuh"
#include "device.h"

namespace proxyfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;  // about one wave on an H100; values are grid-strided

template <typename T>
__global__ void __launch_bounds__(kThreads)
    histogram_kernel(const T* __restrict__ values, int64_t n, int64_t stride, double lo, double width,
                     double top, int32_t n_bins, int32_t shared_bins, int32_t* __restrict__ bin_ids,
                     unsigned long long* __restrict__ counts) {
  unsigned int* shared_counts = dynamic_shared<unsigned int>();
  zero_shared_counts(shared_counts, shared_bins);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t b = bin_index(static_cast<double>(values[i * stride]), lo, width, n_bins, top);
    bin_ids[i] = b;
    if (b >= 0) count_bin(b, shared_bins, shared_counts, counts);
  }
  flush_shared_counts(shared_counts, shared_bins, counts);
}

std::tuple<at::Tensor, at::Tensor> histogram_bins_cuda(const at::Tensor& values, double lo, double bin_width,
                                                       int64_t n_bins, double top) {
  check_histogram_values(values);
  check_bins(lo, bin_width, n_bins, top);
  const c10::cuda::CUDAGuard guard(values.device());
  const int64_t n = values.numel();
  at::Tensor bin_ids = at::empty({n}, values.options().dtype(at::kInt));
  at::Tensor counts = at::zeros({n_bins}, values.options().dtype(at::kLong));
  if (n == 0) return {bin_ids, counts};
  const auto bins32 = static_cast<int32_t>(n_bins);
  const int32_t shared_bins = shared_bin_count(bins32);
  const size_t shared_bytes = static_cast<size_t>(shared_bins) * sizeof(unsigned int);
  const int64_t blocks = std::min((n + kThreads - 1) / kThreads, kMaxBlocks);
  // int64 counts updated through unsigned 64-bit atomics: the same bits for counts < 2^63.
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  auto* global_counts = reinterpret_cast<unsigned long long*>(counts.mutable_data_ptr<int64_t>());
  if (values.scalar_type() == at::kDouble) {
    launch(histogram_kernel<double>, static_cast<unsigned int>(blocks), kThreads, shared_bytes, stream,
           values.const_data_ptr<double>(), n, values.stride(0), lo, bin_width, top, bins32, shared_bins,
           bin_ids.mutable_data_ptr<int32_t>(), global_counts);
  } else {
    launch(histogram_kernel<float>, static_cast<unsigned int>(blocks), kThreads, shared_bytes, stream,
           values.const_data_ptr<float>(), n, values.stride(0), lo, bin_width, top, bins32, shared_bins,
           bin_ids.mutable_data_ptr<int32_t>(), global_counts);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {bin_ids, counts};
}

}  // namespace

PF_CUDA_LIBRARY_IMPL(m) { m.impl("histogram_bins", &histogram_bins_cuda); }

}  // namespace cuda
}  // namespace proxyfast
