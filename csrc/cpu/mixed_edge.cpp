// CPU glue of the fused mixed-op edge (mixed_edge, mixed_edge_backward) and of the
// batch-norm running-statistics update. Threads split the (n, c) planes; per-plane
// partial results are combined in plane order, so results do not depend on the
// thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <vector>

#include "../common/mixed_edge_checks.h"
#include "mixed_edge_kernel.h"

namespace proxyfast {
namespace cpu {
namespace {

using namespace mixed_edge;

// Planes per task: about 16K output values, enough to amortise the hand-off.
int64_t grain_planes(const EdgeGeometry& g) { return std::max<int64_t>(1, (int64_t{1} << 14) / g.out_plane_size()); }

template <typename T>
const T* data_of(const at::Tensor& t) {
  return reinterpret_cast<const T*>(t.const_data_ptr());
}

template <typename T>
T* mutable_data_of(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.mutable_data_ptr());
}

// Runs fn(begin, end, scratch, indices) over the planes in parallel, with per-task scratch.
template <typename A, typename Fn>
void for_planes(const EdgeGeometry& g, Fn&& fn) {
  at::parallel_for(0, g.planes(), grain_planes(g), [&](int64_t begin, int64_t end) {
    std::vector<A> scratch(static_cast<size_t>(edge_scratch_values(g)));
    std::vector<int32_t> indices(static_cast<size_t>(edge_scratch_indices(g)));
    fn(begin, end, scratch.data(), indices.data());
  });
}

// The arguments of an edge in the kernel's terms: the inputs, and each term's weight
// and normalisation.
template <typename T>
struct HostEdge {
  using A = acc_t<T>;
  std::vector<const T*> branches;
  EdgeTerms<T> terms{};
  std::vector<double> weight;   // [terms]
  std::vector<int64_t> mode;    // [terms]
  std::vector<int64_t> slot;    // [terms], -1 for an absent pool
  const A* weights = nullptr;

  HostEdge(const at::Tensor& x, const at::Tensor& weights_tensor, at::TensorList branch_tensors,
           at::IntArrayRef branch_slots, at::IntArrayRef free_slots, at::IntArrayRef norm_modes) {
    weights = weights_tensor.const_data_ptr<A>();
    for (const at::Tensor& branch : branch_tensors) branches.push_back(data_of<T>(branch));
    terms.x = data_of<T>(x);
    terms.num_branches = static_cast<int>(branches.size());
    terms.branches = branches.data();
    terms.has_skip = free_slots[kSkip] >= 0;
    terms.skip_weight = terms.has_skip ? weights[free_slots[kSkip]] : A(0);
    terms.has_max = free_slots[kMaxPool] >= 0;
    terms.has_avg = free_slots[kAvgPool] >= 0;
    slot = {free_slots[kMaxPool], free_slots[kAvgPool]};
    slot.insert(slot.end(), branch_slots.begin(), branch_slots.end());
    for (int t = 0; t < terms.num_terms(); ++t) {
      weight.push_back(slot[t] >= 0 ? static_cast<double>(weights[slot[t]]) : 0.0);
      mode.push_back(term_mode(free_slots, norm_modes, t));
    }
  }

  bool present(int t) const { return slot[t] >= 0; }
};

template <typename T>
std::tuple<at::Tensor, at::Tensor> edge_forward(const at::Tensor& x, const at::Tensor& weights, at::TensorList branches,
                                                at::IntArrayRef branch_slots, at::IntArrayRef free_slots,
                                                const EdgeGeometry& g, at::IntArrayRef norm_modes,
                                                at::ArrayRef<double> eps,
                                                const std::optional<at::Tensor>& running_stats) {
  using A = acc_t<T>;
  const HostEdge<T> edge(x, weights, branches, branch_slots, free_slots, norm_modes);
  const EdgeTerms<T>& terms = edge.terms;
  const int num_terms = terms.num_terms();
  const int64_t c_count = g.channels;

  at::Tensor stats = at::zeros({2 * num_terms, c_count}, x.options().dtype(at::kDouble));
  double* s = stats.mutable_data_ptr<double>();
  bool want[kMaxTerms] = {};
  bool any_batch = false;
  for (int t = 0; t < num_terms; ++t) {
    want[t] = edge.mode[t] == kNormBatch;
    any_batch = any_batch || want[t];
  }
  if (any_batch) {
    std::vector<double> moments(static_cast<size_t>(g.planes() * num_terms * 2));
    for_planes<A>(g, [&](int64_t begin, int64_t end, A* scratch, int32_t* indices) {
      term_plane_moments<T>(terms, g, want, begin, end, moments.data(), scratch, indices);
    });
    merge_channel_moments(moments.data(), num_terms, want, g, s);
  }
  if (uses_mode(free_slots, norm_modes, kNormRunning)) {
    const double* r = running_stats->const_data_ptr<double>();
    for (int t = 0; t < num_terms; ++t) {
      if (edge.mode[t] != kNormRunning) continue;
      for (int64_t row : {mean_row(t), var_row(t)}) {
        std::copy(r + row * c_count, r + (row + 1) * c_count, s + row * c_count);
      }
    }
  }

  std::vector<A> scale(static_cast<size_t>(num_terms * c_count), A(0)), shift(static_cast<size_t>(c_count), A(0));
  for (int64_t c = 0; c < c_count; ++c) {
    double total_shift = 0.0;
    for (int t = 0; t < num_terms; ++t) {
      if (!edge.present(t)) continue;
      NormTerm term{edge.weight[t], 0.0};
      if (edge.mode[t] != kNormNone) {
        term = forward_norm_term(edge.weight[t], s[mean_row(t) * c_count + c], s[var_row(t) * c_count + c], eps[t]);
      }
      scale[t * c_count + c] = static_cast<A>(term.scale);
      total_shift += term.shift;
    }
    shift[c] = static_cast<A>(total_shift);
  }

  at::Tensor out = at::empty({g.batch, c_count, g.out_height, g.out_width}, x.options());
  T* out_data = mutable_data_of<T>(out);
  for_planes<A>(g, [&](int64_t begin, int64_t end, A* scratch, int32_t* indices) {
    forward_planes<T>(terms, g, scale.data(), shift.data(), out_data, begin, end, scratch, indices);
  });
  return {out, stats};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> edge_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weights, at::TensorList branches,
    at::IntArrayRef branch_slots, at::IntArrayRef free_slots, const EdgeGeometry& g, at::IntArrayRef norm_modes,
    at::ArrayRef<double> eps, const at::Tensor& stats, std::array<bool, 2> output_mask) {
  using A = acc_t<T>;
  const HostEdge<T> edge(x, weights, branches, branch_slots, free_slots, norm_modes);
  const EdgeTerms<T>& terms = edge.terms;
  const int num_terms = terms.num_terms();
  const int64_t c_count = g.channels;
  const double* s = stats.const_data_ptr<double>();

  const int n_sums = backward_sum_count(num_terms);
  std::vector<double> sums(static_cast<size_t>(g.planes() * n_sums));
  const T* grad_data = data_of<T>(grad);
  for_planes<A>(g, [&](int64_t begin, int64_t end, A* scratch, int32_t* indices) {
    backward_sums<T>(terms, g, grad_data, s, begin, end, sums.data(), scratch, indices);
  });
  // Per channel, in batch order.
  std::vector<double> channel_sums(static_cast<size_t>(c_count * n_sums), 0.0);
  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t c = 0; c < c_count; ++c) {
      for (int k = 0; k < n_sums; ++k) channel_sums[c * n_sums + k] += sums[(n * c_count + c) * n_sums + k];
    }
  }

  // The gradient coefficients of every term (common/mixed_edge.h, TermGrad) and the
  // weight gradients, each a sum over the channels in order.
  std::vector<double> weight_grads(static_cast<size_t>(weights.numel()), 0.0);
  std::vector<A> coefficients(static_cast<size_t>(3 * num_terms * c_count), A(0));
  const auto count = static_cast<double>(g.stat_count());
  for (int64_t c = 0; c < c_count; ++c) {
    const double* cs = channel_sums.data() + c * n_sums;
    if (terms.has_skip) weight_grads[free_slots[kSkip]] += cs[kSumGradSkip];
    for (int t = 0; t < num_terms; ++t) {
      if (!edge.present(t)) continue;
      const TermGrad term = backward_term(edge.mode[t], edge.weight[t], s[mean_row(t) * c_count + c],
                                          s[var_row(t) * c_count + c], eps[t], cs[kSumGrad], cs[kSumTerm0 + t],
                                          count);
      weight_grads[edge.slot[t]] += term.weight_grad;
      coefficients[(3 * t) * c_count + c] = static_cast<A>(term.g_scale);
      coefficients[(3 * t + 1) * c_count + c] = static_cast<A>(term.v_scale);
      coefficients[(3 * t + 2) * c_count + c] = static_cast<A>(term.shift);
    }
  }
  at::Tensor grad_weights = at::empty_like(weights);
  A* gw = grad_weights.mutable_data_ptr<A>();
  for (size_t k = 0; k < weight_grads.size(); ++k) gw[k] = static_cast<A>(weight_grads[k]);

  at::Tensor grad_x = output_mask[0] ? at::empty_like(x) : at::empty({0}, x.options());
  std::vector<at::Tensor> branch_grads;
  std::vector<T*> branch_grad_data;
  if (output_mask[1]) {
    for (const at::Tensor& branch : branches) {
      branch_grads.push_back(at::empty_like(branch));
      branch_grad_data.push_back(mutable_data_of<T>(branch_grads.back()));
    }
  }
  if (output_mask[0] || (output_mask[1] && !branches.empty())) {
    T* grad_x_data = output_mask[0] ? mutable_data_of<T>(grad_x) : nullptr;
    T* const* branch_grad_ptrs = output_mask[1] ? branch_grad_data.data() : nullptr;
    for_planes<A>(g, [&](int64_t begin, int64_t end, A* scratch, int32_t* indices) {
      backward_apply<T>(terms, g, grad_data, coefficients.data(), grad_x_data, branch_grad_ptrs, begin, end, scratch,
                        indices);
    });
  }
  return {grad_x, grad_weights, branch_grads};
}

std::tuple<at::Tensor, at::Tensor> mixed_edge_cpu(const at::Tensor& x, const at::Tensor& weights,
                                                  at::TensorList branches, at::IntArrayRef branch_slots,
                                                  at::IntArrayRef free_slots, int64_t stride,
                                                  at::IntArrayRef norm_modes, at::ArrayRef<double> eps,
                                                  const std::optional<at::Tensor>& running_stats) {
  const EdgeGeometry g = check_edge(x, weights, branches, branch_slots, free_slots, stride, norm_modes, eps);
  check_running_stats(running_stats, x, free_slots, norm_modes);
  return dispatch_storage(x.scalar_type(), [&](auto tag) {
    return edge_forward<decltype(tag)>(x, weights, branches, branch_slots, free_slots, g, norm_modes, eps,
                                       running_stats);
  });
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> mixed_edge_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weights, at::TensorList branches,
    at::IntArrayRef branch_slots, at::IntArrayRef free_slots, int64_t stride, at::IntArrayRef norm_modes,
    at::ArrayRef<double> eps, const at::Tensor& stats, std::array<bool, 2> output_mask) {
  const EdgeGeometry g = check_edge(x, weights, branches, branch_slots, free_slots, stride, norm_modes, eps);
  check_edge_grad(grad, x, g);
  check_term_stats(stats, x, norm_modes.size(), "stats");
  return dispatch_storage(x.scalar_type(), [&](auto tag) {
    return edge_backward<decltype(tag)>(grad, x, weights, branches, branch_slots, free_slots, g, norm_modes, eps,
                                        stats, output_mask);
  });
}

void batch_norm_running_update_cpu(const at::Tensor& running_mean, const at::Tensor& running_var,
                                   const at::Tensor& mean, const at::Tensor& var, double momentum, int64_t count) {
  check_running_update(running_mean, running_var, mean, var, momentum, count);
  const double* m = mean.const_data_ptr<double>();
  const double* v = var.const_data_ptr<double>();
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_mean.scalar_type(), "batch_norm_running_update",
                                  [&] {
                                    auto* rm = running_mean.mutable_data_ptr<scalar_t>();
                                    auto* rv = running_var.mutable_data_ptr<scalar_t>();
                                    for (int64_t c = 0; c < running_mean.numel(); ++c) {
                                      rm[c] = static_cast<scalar_t>(momentum * m[c] +
                                                                    (1 - momentum) * static_cast<double>(rm[c]));
                                      rv[c] = static_cast<scalar_t>(momentum * v[c] * unbias +
                                                                    (1 - momentum) * static_cast<double>(rv[c]));
                                    }
                                  });
}

}  // namespace

TORCH_LIBRARY_IMPL(proxyfast, CPU, m) {
  m.impl("mixed_edge", &mixed_edge_cpu);
  m.impl("mixed_edge_backward", &mixed_edge_backward_cpu);
  m.impl("batch_norm_running_update", &batch_norm_running_update_cpu);
}

}  // namespace cpu
}  // namespace proxyfast
