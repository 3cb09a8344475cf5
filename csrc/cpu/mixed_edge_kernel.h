// CPU kernel half of the fused mixed-op edge: torch-free, each call handles a range of
// (n, c) planes of contiguous NCHW tensors so the caller decides the threading. The
// per-plane results are written to separate slots and combined by the caller in a fixed
// order, so the results do not depend on the number of threads.
//
// Terms are numbered as in common/mixed_edge.h: 0 the max pool, 1 the average pool,
// 2 + b branch b. Per-term per-channel arrays are laid out [terms, C].
#pragma once

#include <cstdint>

#include "../common/half.h"
#include "../common/mixed_edge.h"

namespace proxyfast {
namespace cpu {

using EdgeGeometry = mixed_edge::Geometry;
using mixed_edge::acc_t;

// Scratch that one call of any function below needs: edge_scratch_values(g) elements
// of acc_t<T> and edge_scratch_indices(g) int32 plane offsets.
int64_t edge_scratch_values(const EdgeGeometry& g);
int64_t edge_scratch_indices(const EdgeGeometry& g);

// The inputs of an edge. Pools and skip are left out when their flag is false.
template <typename T>
struct EdgeTerms {
  const T* x;
  int num_branches;
  const T* const* branches;  // [num_branches]
  bool has_skip;             // stride 1 only
  acc_t<T> skip_weight;
  bool has_max;
  bool has_avg;

  int num_terms() const { return mixed_edge::kTermBranch0 + num_branches; }
};

// For planes [begin, end) and each term t with want[t]: the mean and the sum of squared
// deviations of the plane's values, at moments[(plane * num_terms + t) * 2 + {0, 1}].
template <typename T>
void term_plane_moments(const EdgeTerms<T>& terms, const EdgeGeometry& g, const bool* want, int64_t begin,
                        int64_t end, double* moments, acc_t<T>* scratch, int32_t* indices);

// Combines the planes of each channel in batch order (Chan et al.'s pairwise update)
// into the mean and the biased variance of each wanted term, written to its rows of
// `stats` ([2 * num_terms, C]).
void merge_channel_moments(const double* moments, int num_terms, const bool* want, const EdgeGeometry& g,
                           double* stats);

// Forward over planes [begin, end): out = sum_t scale[t, c] * term_t + w_skip * x + shift[c],
// with the pools computed from x.
template <typename T>
void forward_planes(const EdgeTerms<T>& terms, const EdgeGeometry& g, const acc_t<T>* scale,
                    const acc_t<T>* shift, T* out, int64_t begin, int64_t end, acc_t<T>* scratch, int32_t* indices);

// Slots of the per-plane sums of the first backward pass: sum g, sum g * x (skip), then
// per term t sum g * (term_t - centre), the centre being the mean row of t in `stats`.
constexpr int kSumGrad = 0;
constexpr int kSumGradSkip = 1;
constexpr int kSumTerm0 = 2;

inline int backward_sum_count(int num_terms) { return kSumTerm0 + num_terms; }

template <typename T>
void backward_sums(const EdgeTerms<T>& terms, const EdgeGeometry& g, const T* grad, const double* stats,
                   int64_t begin, int64_t end, double* sums, acc_t<T>* scratch, int32_t* indices);

// Second backward pass over planes [begin, end), given for each term and channel the
// coefficients of the gradient reaching its values (coefficients[(3 t + k) C + c], k:
// g_scale, v_scale, shift; common/mixed_edge.h, TermGrad): the gradient of x through
// skip and both pools (the maximum's to its first argmax, as in PyTorch) when grad_x is
// not null, and the branch gradients when branch_grads is not null.
template <typename T>
void backward_apply(const EdgeTerms<T>& terms, const EdgeGeometry& g, const T* grad, const acc_t<T>* coefficients,
                    T* grad_x, T* const* branch_grads, int64_t begin, int64_t end, acc_t<T>* scratch,
                    int32_t* indices);

}  // namespace cpu
}  // namespace proxyfast
