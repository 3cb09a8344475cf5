// Argument checks shared by the CPU and CUDA glue. The Python wrappers check first
// and give friendlier messages; these guard direct calls of torch.ops.proxyfast.*.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace proxyfast {

inline void check_logits(const at::Tensor& logits) {
  TORCH_CHECK(logits.dim() == 2, "proxyfast: logits must be 2-D [N, C], got ", logits.dim(), " dimensions");
  TORCH_CHECK(logits.size(1) >= 2, "proxyfast: logits need at least 2 classes, got ", logits.size(1));
  const auto dtype = logits.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "proxyfast: logits must be float32, float16 or bfloat16, got ", dtype);
}

inline void check_histogram_values(const at::Tensor& values) {
  TORCH_CHECK(values.dim() == 1 && (values.scalar_type() == at::kFloat || values.scalar_type() == at::kDouble),
              "proxyfast: histogram values must be a 1-D float32 or float64 tensor, got ", values.dim(), "-D ",
              values.scalar_type());
}

inline void check_bins(double lo, double bin_width, int64_t n_bins, double top) {
  TORCH_CHECK(std::isfinite(lo) && std::isfinite(top) && lo <= top, "proxyfast: bin range [", lo, ", ", top,
              "] must be finite and ordered");
  TORCH_CHECK(std::isfinite(bin_width) && bin_width > 0, "proxyfast: bin_width must be positive, got ", bin_width);
  TORCH_CHECK(n_bins >= 1 && n_bins <= (int64_t{1} << 30), "proxyfast: n_bins must be in [1, 2^30], got ", n_bins);
}

inline void check_sample_args(const at::Tensor& weights, int64_t k, int64_t seed, int64_t stream) {
  TORCH_CHECK(weights.dim() == 1, "proxyfast: weights must be 1-D, got ", weights.dim(), " dimensions");
  TORCH_CHECK(weights.scalar_type() == at::kFloat || weights.scalar_type() == at::kDouble,
              "proxyfast: weights must be float32 or float64, got ", weights.scalar_type());
  TORCH_CHECK(weights.numel() < (int64_t{1} << 31), "proxyfast: at most 2^31 - 1 weights, got ", weights.numel());
  TORCH_CHECK(k >= 0 && k <= weights.numel(), "proxyfast: k must be in [0, ", weights.numel(), "], got ", k);
  TORCH_CHECK(seed >= 0, "proxyfast: seed must be non-negative, got ", seed);
  TORCH_CHECK(stream >= 0 && stream <= 0xFFFFFFFFll, "proxyfast: stream must fit in 32 bits, got ", stream);
}

// After the weights have been read: every weight valid, and at least k positive ones.
// Checked for k = 0 too, so that invalid weights raise whatever k is.
inline void check_sample_counts(int64_t num_invalid, int64_t num_positive, int64_t k) {
  TORCH_CHECK(num_invalid == 0, "proxyfast: weights must be finite and non-negative; ", num_invalid, " are not");
  TORCH_CHECK(k <= num_positive, "proxyfast: k = ", k, " exceeds the number of positive weights (", num_positive,
              ")");
}

}  // namespace proxyfast
