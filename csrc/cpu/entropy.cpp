// CPU glue of the entropy op.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../checks.h"
#include "entropy_kernel.h"

namespace proxyfast {
namespace cpu {
namespace {

// Rows per task: enough work (about 64K logits) to amortise the thread hand-off.
int64_t grain_rows(int64_t num_classes) { return std::max<int64_t>(1, (int64_t{1} << 16) / num_classes); }

void run_entropy(const at::Tensor& logits, float* entropy, float* log10_entropy, const BinSpec* bins,
                 int32_t* bin_ids) {
  const int64_t n = logits.size(0);
  const int64_t c = logits.size(1);
  const int64_t row_stride = logits.stride(0);
  const int64_t col_stride = logits.stride(1);
  const auto dtype = logits.scalar_type();
  const char* error = nullptr;
  const CpuCapability capability = entropy_cpu_capability(&error);
  TORCH_CHECK(error == nullptr, error);
  at::parallel_for(0, n, grain_rows(c), [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(static_cast<size_t>(c));
    if (dtype == at::kFloat) {
      entropy_rows(logits.const_data_ptr<float>(), c, row_stride, col_stride, begin, end, entropy, log10_entropy,
                   bins, bin_ids, scratch.data(), capability);
    } else if (dtype == at::kHalf) {
      entropy_rows(reinterpret_cast<const Half16*>(logits.const_data_ptr<at::Half>()), c, row_stride, col_stride,
                   begin, end, entropy, log10_entropy, bins, bin_ids, scratch.data(), capability);
    } else {
      entropy_rows(reinterpret_cast<const BFloat16*>(logits.const_data_ptr<at::BFloat16>()), c, row_stride,
                   col_stride, begin, end, entropy, log10_entropy, bins, bin_ids, scratch.data(), capability);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> entropy_cpu(const at::Tensor& logits) {
  check_logits(logits);
  const auto options = logits.options().dtype(at::kFloat);
  at::Tensor entropy = at::empty({logits.size(0)}, options);
  at::Tensor log10_entropy = at::empty({logits.size(0)}, options);
  run_entropy(logits, entropy.mutable_data_ptr<float>(), log10_entropy.mutable_data_ptr<float>(), nullptr, nullptr);
  return {entropy, log10_entropy};
}

std::string entropy_cpu_capability_name() {
  const char* error = nullptr;
  const CpuCapability capability = entropy_cpu_capability(&error);
  TORCH_CHECK(error == nullptr, error);
  return cpu_capability_name(capability);
}

}  // namespace

// Which vector code the CPU entropy kernel runs here: "avx512", "avx2" or "default".
TORCH_LIBRARY_FRAGMENT(proxyfast, m) { m.def("entropy_cpu_capability() -> str", &entropy_cpu_capability_name); }

TORCH_LIBRARY_IMPL(proxyfast, CPU, m) { m.impl("entropy", &entropy_cpu); }

}  // namespace cpu
}  // namespace proxyfast
