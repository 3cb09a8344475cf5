// Argument checks of the mixed-edge ops, shared by the CPU and CUDA glue. The Python
// layer (proxyfast/nas/fused.py) builds the arguments from the modules of an edge;
// these checks guard direct calls of torch.ops.proxyfast.mixed_edge*.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <array>
#include <cmath>
#include <optional>

#include "mixed_edge.h"

namespace proxyfast {
namespace mixed_edge {

// Positions in free_slots (the parameter-free operations).
constexpr int kSkip = 0;
constexpr int kMaxPool = 1;
constexpr int kAvgPool = 2;

inline at::ScalarType acc_dtype(at::ScalarType dtype) { return dtype == at::kDouble ? at::kDouble : at::kFloat; }

// The normalisation of term t, kNormNone for an absent pool.
inline int64_t term_mode(at::IntArrayRef free_slots, at::IntArrayRef norm_modes, int t) {
  if (t == kTermMax && free_slots[kMaxPool] < 0) return kNormNone;
  if (t == kTermAvg && free_slots[kAvgPool] < 0) return kNormNone;
  return norm_modes[t];
}

inline bool uses_mode(at::IntArrayRef free_slots, at::IntArrayRef norm_modes, int64_t mode) {
  for (int t = 0; t < static_cast<int>(norm_modes.size()); ++t) {
    if (term_mode(free_slots, norm_modes, t) == mode) return true;
  }
  return false;
}

// Checks the arguments both directions share and returns the shapes.
inline Geometry check_edge(const at::Tensor& x, const at::Tensor& weights, at::TensorList branches,
                           at::IntArrayRef branch_slots, at::IntArrayRef free_slots, int64_t stride,
                           at::IntArrayRef norm_modes, at::ArrayRef<double> eps) {
  TORCH_CHECK(x.dim() == 4, "proxyfast: mixed_edge: x must be 4-D [N, C, H, W], got ", x.dim(), " dimensions");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble,
              "proxyfast: mixed_edge: x must be float32, float16, bfloat16 or float64, got ", dtype);
  TORCH_CHECK(x.is_contiguous(), "proxyfast: mixed_edge: x must be contiguous (NCHW)");
  TORCH_CHECK(x.numel() > 0, "proxyfast: mixed_edge: x is empty, shape ", x.sizes());
  // The pools' argmax is an int32 offset within a plane, on both devices.
  TORCH_CHECK(x.size(2) * x.size(3) < (int64_t{1} << 31), "proxyfast: mixed_edge: a plane of x (H * W) must hold "
              "fewer than 2^31 values, got ", x.size(2), " x ", x.size(3));
  TORCH_CHECK(stride == 1 || stride == 2, "proxyfast: mixed_edge: stride must be 1 or 2, got ", stride);
  TORCH_CHECK(weights.dim() == 1 && weights.numel() > 0, "proxyfast: mixed_edge: weights must be a non-empty 1-D "
              "tensor, got shape ", weights.sizes());
  TORCH_CHECK(weights.scalar_type() == acc_dtype(dtype), "proxyfast: mixed_edge: weights must be ",
              acc_dtype(dtype), " for ", dtype, " x, got ", weights.scalar_type());
  TORCH_CHECK(weights.is_contiguous() && weights.device() == x.device(),
              "proxyfast: mixed_edge: weights must be contiguous and on the device of x");
  TORCH_CHECK(branches.size() == branch_slots.size(), "proxyfast: mixed_edge: ", branches.size(),
              " branches but ", branch_slots.size(), " branch_slots");
  TORCH_CHECK(branches.size() <= static_cast<size_t>(kMaxBranches), "proxyfast: mixed_edge: at most ", kMaxBranches,
              " branches, got ", branches.size());
  TORCH_CHECK(free_slots.size() == 3, "proxyfast: mixed_edge: free_slots must be [skip, max_pool, avg_pool], got ",
              free_slots.size(), " entries");
  const size_t terms = kTermBranch0 + branches.size();
  TORCH_CHECK(norm_modes.size() == terms && eps.size() == terms, "proxyfast: mixed_edge: norm_modes and eps need ",
              terms, " entries (max pool, avg pool, then one per branch), got ", norm_modes.size(), " and ",
              eps.size());
  for (size_t t = 0; t < terms; ++t) {
    const int64_t mode = term_mode(free_slots, norm_modes, static_cast<int>(t));
    TORCH_CHECK(mode == kNormNone || mode == kNormBatch || mode == kNormRunning,
                "proxyfast: mixed_edge: norm_modes must be 0 (none), 1 (batch) or 2 (running), got ", mode);
    const bool present_pool = t < kTermBranch0 && free_slots[t == kTermMax ? kMaxPool : kAvgPool] >= 0;
    TORCH_CHECK(!present_pool || mode != kNormNone,
                "proxyfast: mixed_edge: a pool is always normalised (norm mode 1 or 2)");
    TORCH_CHECK(mode == kNormNone || (std::isfinite(eps[t]) && eps[t] > 0),
                "proxyfast: mixed_edge: eps must be positive and finite, got ", eps[t]);
  }
  const int64_t k = weights.numel();
  std::vector<bool> used(static_cast<size_t>(k), false);
  auto claim = [&](int64_t slot, bool optional) {
    if (optional && slot < 0) return;
    TORCH_CHECK(slot >= 0 && slot < k, "proxyfast: mixed_edge: slot ", slot, " is outside the ", k, " weights");
    TORCH_CHECK(!used[static_cast<size_t>(slot)], "proxyfast: mixed_edge: weight slot ", slot, " is used twice");
    used[static_cast<size_t>(slot)] = true;
  };
  for (int64_t slot : branch_slots) claim(slot, false);
  for (int64_t slot : free_slots) claim(slot, true);
  TORCH_CHECK(free_slots[kSkip] < 0 || stride == 1,
              "proxyfast: mixed_edge: skip_connect is the identity only at stride 1 (stride-2 skip is a branch)");

  const Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), pooled_size(x.size(2), stride),
                   pooled_size(x.size(3), stride), stride};
  for (size_t b = 0; b < branches.size(); ++b) {
    const at::Tensor& branch = branches[b];
    TORCH_CHECK(branch.scalar_type() == dtype && branch.device() == x.device(), "proxyfast: mixed_edge: branch ", b,
                " must be ", dtype, " on ", x.device(), ", got ", branch.scalar_type(), " on ", branch.device());
    TORCH_CHECK(branch.sizes() == at::IntArrayRef({g.batch, g.channels, g.out_height, g.out_width}),
                "proxyfast: mixed_edge: branch ", b, " has shape ", branch.sizes(), ", expected [", g.batch, ", ",
                g.channels, ", ", g.out_height, ", ", g.out_width, "]");
    TORCH_CHECK(branch.is_contiguous(), "proxyfast: mixed_edge: branch ", b, " must be contiguous (NCHW)");
  }
  TORCH_CHECK(!uses_mode(free_slots, norm_modes, kNormBatch) || g.stat_count() > 1,
              "proxyfast: mixed_edge: batch statistics need more than 1 value per channel, got input shape ",
              x.sizes());
  return g;
}

// A [2 * terms, C] float64 array of per-term statistics (rows as in mixed_edge.h).
inline void check_term_stats(const at::Tensor& stats, const at::Tensor& x, size_t terms, const char* name) {
  TORCH_CHECK(stats.dim() == 2 && stats.size(0) == static_cast<int64_t>(2 * terms) && stats.size(1) == x.size(1),
              "proxyfast: mixed_edge: ", name, " must have shape [", 2 * terms, ", ", x.size(1), "], got ",
              stats.sizes());
  TORCH_CHECK(stats.scalar_type() == at::kDouble && stats.is_contiguous() && stats.device() == x.device(),
              "proxyfast: mixed_edge: ", name, " must be a contiguous float64 tensor on the device of x");
}

// Forward: running_stats is needed (and checked) when a term normalises with it.
inline void check_running_stats(const std::optional<at::Tensor>& running_stats, const at::Tensor& x,
                                at::IntArrayRef free_slots, at::IntArrayRef norm_modes) {
  if (!uses_mode(free_slots, norm_modes, kNormRunning)) return;
  TORCH_CHECK(running_stats.has_value(), "proxyfast: mixed_edge: running_stats is needed for a term normalised "
              "with running statistics");
  check_term_stats(*running_stats, x, norm_modes.size(), "running_stats");
}

inline void check_edge_grad(const at::Tensor& grad, const at::Tensor& x, const Geometry& g) {
  TORCH_CHECK(grad.scalar_type() == x.scalar_type() && grad.device() == x.device() && grad.is_contiguous(),
              "proxyfast: mixed_edge_backward: grad must be contiguous ", x.scalar_type(), " on the device of x");
  TORCH_CHECK(grad.sizes() == at::IntArrayRef({g.batch, g.channels, g.out_height, g.out_width}),
              "proxyfast: mixed_edge_backward: grad has shape ", grad.sizes(), ", expected the output's");
}

inline void check_running_update(const at::Tensor& running_mean, const at::Tensor& running_var,
                                 const at::Tensor& mean, const at::Tensor& var, double momentum, int64_t count) {
  const int64_t c = running_mean.numel();
  for (const at::Tensor* t : {&running_mean, &running_var}) {
    TORCH_CHECK(t->dim() == 1 && t->numel() == c && t->is_floating_point() && t->is_contiguous() &&
                    t->device() == mean.device(),
                "proxyfast: batch_norm_running_update: running statistics must be contiguous 1-D floating "
                "tensors of one size on the device of the batch statistics");
  }
  TORCH_CHECK(running_mean.scalar_type() == running_var.scalar_type(),
              "proxyfast: batch_norm_running_update: running_mean and running_var must have one dtype");
  for (const at::Tensor* t : {&mean, &var}) {
    TORCH_CHECK(t->dim() == 1 && t->numel() == c && t->scalar_type() == at::kDouble && t->is_contiguous() &&
                    t->device() == mean.device(),
                "proxyfast: batch_norm_running_update: batch statistics must be contiguous 1-D float64 tensors of ",
                c, " values on one device");
  }
  TORCH_CHECK(std::isfinite(momentum) && momentum >= 0 && momentum <= 1,
              "proxyfast: batch_norm_running_update: momentum must be in [0, 1], got ", momentum);
  TORCH_CHECK(count > 1, "proxyfast: batch_norm_running_update: count must exceed 1, got ", count);
}

// Calls fn(tag) with a value of the kernels' storage type for a checked dtype (float,
// double, half or bfloat16): the CPU and CUDA glue instantiate their kernels with it.
template <typename Fn>
auto dispatch_storage(at::ScalarType dtype, Fn&& fn) {
  switch (dtype) {
    case at::kFloat:
      return fn(float{});
    case at::kDouble:
      return fn(double{});
    case at::kHalf:
      return fn(Half16{});
    default:
      return fn(BFloat16{});
  }
}

}  // namespace mixed_edge
}  // namespace proxyfast
