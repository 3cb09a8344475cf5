// CPU glue of the histogram_bins op.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "histogram_kernel.h"

namespace proxyfast {
namespace cpu {
namespace {

std::tuple<at::Tensor, at::Tensor> histogram_bins_cpu(const at::Tensor& values, double lo, double bin_width,
                                                      int64_t n_bins, double top) {
  check_histogram_values(values);
  check_bins(lo, bin_width, n_bins, top);
  const at::Tensor contiguous = values.contiguous();
  const int64_t n = contiguous.numel();
  at::Tensor bin_ids = at::empty({n}, values.options().dtype(at::kInt));
  at::Tensor counts = at::empty({n_bins}, values.options().dtype(at::kLong));
  const BinSpec bins{lo, bin_width, top, static_cast<int32_t>(n_bins)};
  int32_t* ids = bin_ids.mutable_data_ptr<int32_t>();
  if (contiguous.scalar_type() == at::kDouble) {
    const double* src = contiguous.const_data_ptr<double>();
    at::parallel_for(0, n, int64_t{1} << 16, [&](int64_t begin, int64_t end) { assign_bins(src, begin, end, bins, ids); });
  } else {
    const float* src = contiguous.const_data_ptr<float>();
    at::parallel_for(0, n, int64_t{1} << 16, [&](int64_t begin, int64_t end) { assign_bins(src, begin, end, bins, ids); });
  }
  count_bins(ids, n, bins.n_bins, counts.mutable_data_ptr<int64_t>());
  return {bin_ids, counts};
}

}  // namespace

TORCH_LIBRARY_IMPL(proxyfast, CPU, m) { m.impl("histogram_bins", &histogram_bins_cpu); }

}  // namespace cpu
}  // namespace proxyfast
