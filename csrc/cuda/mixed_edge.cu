// CUDA glue and kernels of the fused mixed-op edge (mixed_edge, mixed_edge_backward) and of
// the batch-norm running-statistics update: the twins of cpu/mixed_edge.cpp, with the
// same argument checks (common/mixed_edge_checks.h) and the same pooling and batch-norm
// arithmetic (common/mixed_edge.h).
//
// Forward: per-channel partial sums of the values of the terms that normalise with batch
// statistics (training only; one launch per group of up to kStatGroup such terms, each
// reading only its own inputs), one thread per channel turning them into the statistics
// and the output's per-channel coefficients, and one thread per output value for the
// weighted sum, the pools computed from x on the fly (L1 serves the overlapping 3x3
// windows). Backward: per-channel partial sums of the gradient terms, one block turning
// them into the weight gradients and each term's per-channel gradient coefficients, one
// thread per output window for what each pool's window passes back (to its maximum, and
// to each of its taps), one thread per input value gathering that from the windows that
// cover it (which keeps the max pool's scatter free of atomics), and one thread per
// output value for the branch gradients. Partial sums are combined in a fixed order: the
// results do not depend on scheduling. Flat indices are split with FastDivmod rather
// than 64-bit divisions. Channels are looped over in gridDim.y steps: any channel count.
#include <ATen/Dispatch.h>

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include "../common/fast_divmod.h"
#include "../common/half.h"
#include "../common/mixed_edge.h"
#include "../common/mixed_edge_checks.h"
#include "device.h"

namespace proxyfast {
namespace cuda {
namespace {

using namespace mixed_edge;

constexpr int kThreads = 256;
// Values of one channel each thread of a reduction handles, at most; the blocks per
// channel follow from it (capped, so that the coefficient pass stays short).
constexpr int64_t kValuesPerThread = 16;
constexpr int64_t kMaxBlocksPerChannel = 128;
constexpr int64_t kMaxGridBlocks = int64_t{1} << 20;  // element-wise grids are grid-strided beyond it
// Forward partial sums: per term, its values less a pivot and their squares.
constexpr int kStatSums = 2 * kMaxTerms;
// Terms whose batch statistics one launch gathers: few enough to keep the sums in
// registers at full occupancy.
constexpr int kStatGroup = 4;
// Backward partial sums: g, g * x (skip), then per term g * (value - its mean).
constexpr int kSumGrad = 0;
constexpr int kSumGradSkip = 1;
constexpr int kSumTerm0 = 2;
constexpr int kMaxSums = kSumTerm0 + kMaxTerms;

// The edge as the kernels see it; passed by value (kernel parameter space).
template <typename T>
struct Edge {
  Geometry g;
  const T* x;
  const T* branches[kMaxBranches];
  int num_branches;
  int skip_slot;          // -1: absent
  int slot[kMaxTerms];    // weight slot of each term, -1 for an absent pool
  int mode[kMaxTerms];    // kNormNone, kNormBatch or kNormRunning
  double eps[kMaxTerms];
  // Divisors of the flat indices.
  FastDivmod out_size;    // out_height * out_width
  FastDivmod out_width;
  FastDivmod plane_size;  // height * width
  FastDivmod width;
  FastDivmod channels;

  __host__ __device__ int num_terms() const { return kTermBranch0 + num_branches; }
  __host__ __device__ bool has_pools() const { return slot[kTermMax] >= 0 || slot[kTermAvg] >= 0; }
};

// A position in the output: its plane (n * C + c), channel, row and column.
struct OutputAt {
  int64_t plane;
  int64_t channel;
  int64_t p;
  int64_t q;
};

template <typename T>
__device__ __forceinline__ OutputAt output_at(const Edge<T>& edge, int64_t e) {
  uint64_t plane, rem, p, q, n, c;
  edge.out_size.divmod(static_cast<uint64_t>(e), plane, rem);
  edge.out_width.divmod(rem, p, q);
  edge.channels.divmod(plane, n, c);
  return OutputAt{static_cast<int64_t>(plane), static_cast<int64_t>(c), static_cast<int64_t>(p),
                  static_cast<int64_t>(q)};
}

// Value e of channel c in batch-statistics order (n, then the output plane).
template <typename T>
__device__ __forceinline__ OutputAt channel_value_at(const Edge<T>& edge, int64_t c, int64_t e) {
  uint64_t n, rem, p, q;
  edge.out_size.divmod(static_cast<uint64_t>(e), n, rem);
  edge.out_width.divmod(rem, p, q);
  return OutputAt{static_cast<int64_t>(n) * edge.g.channels + c, c, static_cast<int64_t>(p),
                  static_cast<int64_t>(q)};
}

template <typename T>
__device__ __forceinline__ int64_t output_index(const Edge<T>& edge, const OutputAt& at) {
  return (at.plane * edge.g.out_height + at.p) * edge.g.out_width + at.q;
}

template <typename T>
struct BranchGrads {
  T* data[kMaxBranches];
};

// The terms one term_stats launch gathers statistics for.
struct StatGroup {
  int terms[kStatGroup];
  int count;
  bool pools;  // one of them is a pool
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

unsigned int grid_for(int64_t n) { return static_cast<unsigned int>(std::min(ceil_div(n, kThreads), kMaxGridBlocks)); }

int64_t blocks_per_channel(const Geometry& g) {
  return std::clamp<int64_t>(ceil_div(g.stat_count(), kThreads * kValuesPerThread), 1, kMaxBlocksPerChannel);
}

// A grid of `blocks` blocks per channel, the channels looped over in gridDim.y steps.
dim3 channel_grid(int64_t blocks, int64_t channels) {
  return dim3(static_cast<unsigned int>(blocks), static_cast<unsigned int>(std::min<int64_t>(channels, kMaxGridY)));
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int mask = kWarpSize / 2; mask > 0; mask /= 2) v += __shfl_xor_sync(kFullMask, v, mask);
  return v;
}

// Sums each of v[0..N) over the block; thread 0 ends with the totals. `shared` holds
// N * kWarpSize doubles. Every thread of the block must call it; it may be called again
// right after (the trailing barrier).
template <int N>
__device__ void block_sum(double (&v)[N], double* shared) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    v[k] = warp_sum(v[k]);
    if (lane == 0) shared[k * kWarpSize + warp] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = warp_sum(lane < num_warps ? shared[k * kWarpSize + lane] : 0.0);
  }
  __syncthreads();
}

template <typename A, typename T>
__device__ __forceinline__ Pooled<A> pool_at(const Edge<T>& edge, const OutputAt& at) {
  const Geometry& g = edge.g;
  return pool3x3<A>(edge.x + at.plane * g.plane_size(), g.width, window_taps(at.p, g.stride, g.height),
                    window_taps(at.q, g.stride, g.width));
}

// The values of every term at an output position; pools only when `pools`.
template <typename A, typename T>
__device__ __forceinline__ void term_values(const Edge<T>& edge, const OutputAt& at, bool pools,
                                            A (&v)[kMaxTerms]) {
  if (pools) {
    const Pooled<A> pooled = pool_at<A>(edge, at);
    v[kTermMax] = pooled.max;
    v[kTermAvg] = pooled.avg;
  }
  const int64_t index = output_index(edge, at);
#pragma unroll
  for (int b = 0; b < kMaxBranches; ++b) {
    if (b < edge.num_branches) v[kTermBranch0 + b] = static_cast<A>(widen(edge.branches[b][index]));
  }
}

// The values of a group's terms at an output position.
template <typename A, typename T>
__device__ __forceinline__ void group_values(const Edge<T>& edge, const StatGroup& group, const OutputAt& at,
                                             A (&v)[kStatGroup]) {
  Pooled<A> pooled{A(0), A(0), 0};
  if (group.pools) pooled = pool_at<A>(edge, at);
  const int64_t index = output_index(edge, at);
#pragma unroll
  for (int k = 0; k < kStatGroup; ++k) {
    if (k < group.count) {
      const int t = group.terms[k];
      v[k] = t == kTermMax   ? pooled.max
             : t == kTermAvg ? pooled.avg
                             : static_cast<A>(widen(edge.branches[t - kTermBranch0][index]));
    }
  }
}

// Term t's first value in channel c: the pivot its batch statistics are gathered around.
template <typename A, typename T>
__device__ __forceinline__ A pivot_value(const Edge<T>& edge, int t, int64_t c) {
  const StatGroup one{{t, 0, 0, 0}, 1, t < kTermBranch0};
  A v[kStatGroup] = {};
  group_values(edge, one, OutputAt{c, c, 0, 0}, v);
  return v[0];
}

// Forward, training: per (channel, block) sums over the values of each term of `group`,
// less a pivot (the channel's first value, which keeps the variance free of
// cancellation), and of their squares, into that term's slots of `partial`.
template <typename T>
__global__ void __launch_bounds__(kThreads) term_stats_kernel(Edge<T> edge, StatGroup group, double* partial) {
  using A = acc_t<T>;
  __shared__ double shared[2 * kStatGroup * kWarpSize];
  const Geometry& g = edge.g;
  for (int64_t c = blockIdx.y; c < g.channels; c += gridDim.y) {
    A pivot[kStatGroup] = {};
    group_values(edge, group, OutputAt{c, c, 0, 0}, pivot);
    double sums[2 * kStatGroup];
#pragma unroll
    for (int k = 0; k < 2 * kStatGroup; ++k) sums[k] = 0.0;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < g.stat_count();
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      A v[kStatGroup] = {};
      group_values(edge, group, channel_value_at(edge, c, e), v);
#pragma unroll
      for (int k = 0; k < kStatGroup; ++k) {
        const double d = static_cast<double>(v[k]) - static_cast<double>(pivot[k]);
        sums[2 * k] += d;
        sums[2 * k + 1] += d * d;
      }
    }
    block_sum(sums, shared);
    if (threadIdx.x == 0) {
      double* out = partial + (c * gridDim.x + blockIdx.x) * kStatSums;
      for (int k = 0; k < group.count; ++k) {
        out[2 * group.terms[k]] = sums[2 * k];
        out[2 * group.terms[k] + 1] = sums[2 * k + 1];
      }
    }
  }
}

// One thread per channel: the statistics each term normalises with (batch ones from the
// partial sums, or running ones; zeros for the others) into stats [2 * terms, C], and
// the output's coefficients: scale [terms, C] and shift [C].
template <typename T>
__global__ void forward_coefficients_kernel(Edge<T> edge, const acc_t<T>* weights, const double* partial,
                                            int64_t blocks, const double* running, double* stats, acc_t<T>* scale,
                                            acc_t<T>* shift) {
  using A = acc_t<T>;
  const Geometry& g = edge.g;
  const int64_t c_count = g.channels;
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= c_count) return;
  const double count = static_cast<double>(g.stat_count());
  double total_shift = 0.0;
  for (int t = 0; t < edge.num_terms(); ++t) {
    double mean = 0.0, var = 0.0;
    if (edge.mode[t] == kNormBatch) {
      double sum = 0.0, sum_squares = 0.0;
      for (int64_t b = 0; b < blocks; ++b) {
        sum += partial[(c * blocks + b) * kStatSums + 2 * t];
        sum_squares += partial[(c * blocks + b) * kStatSums + 2 * t + 1];
      }
      const double shifted_mean = sum / count;
      mean = static_cast<double>(pivot_value<A>(edge, t, c)) + shifted_mean;
      // Rounding can leave a tiny negative variance. A NaN one (a NaN or inf value)
      // stays NaN, and so does the mean then: common/mixed_edge.h.
      const double v = sum_squares / count - shifted_mean * shifted_mean;
      var = v < 0.0 ? 0.0 : v;
      mean = var != var ? var : mean;
    } else if (edge.mode[t] == kNormRunning) {
      mean = running[mean_row(t) * c_count + c];
      var = running[var_row(t) * c_count + c];
    }
    stats[mean_row(t) * c_count + c] = mean;
    stats[var_row(t) * c_count + c] = var;
    NormTerm term{0.0, 0.0};
    if (edge.slot[t] >= 0) {
      const double weight = static_cast<double>(weights[edge.slot[t]]);
      term = edge.mode[t] == kNormNone ? NormTerm{weight, 0.0} : forward_norm_term(weight, mean, var, edge.eps[t]);
    }
    scale[t * c_count + c] = static_cast<A>(term.scale);
    total_shift += term.shift;
  }
  shift[c] = static_cast<A>(total_shift);
}

// One thread per output value: the weighted sum of the edge.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    edge_forward_kernel(Edge<T> edge, const acc_t<T>* weights, const acc_t<T>* scale, const acc_t<T>* shift,
                        T* out) {
  using A = acc_t<T>;
  const Geometry& g = edge.g;
  const int64_t total = g.planes() * g.out_plane_size();
  const bool pools = edge.has_pools();
  const A skip_weight = edge.skip_slot >= 0 ? weights[edge.skip_slot] : A(0);
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const OutputAt at = output_at(edge, e);
    const int64_t c = at.channel;
    A v[kMaxTerms] = {};
    term_values(edge, at, pools, v);
    A acc = shift[c];
#pragma unroll
    for (int t = 0; t < kMaxTerms; ++t) {
      if (t < edge.num_terms() && edge.slot[t] >= 0) acc += scale[t * g.channels + c] * v[t];
    }
    if (edge.skip_slot >= 0) acc += skip_weight * static_cast<A>(widen(edge.x[e]));  // stride 1: same index
    store(out + e, acc);
  }
}

// Backward, first pass: per (channel, block) sums of the gradient terms.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_sums_kernel(Edge<T> edge, const T* grad, const double* stats, double* partial) {
  using A = acc_t<T>;
  __shared__ double shared[kMaxSums * kWarpSize];
  const Geometry& g = edge.g;
  const bool pools = edge.has_pools();
  for (int64_t c = blockIdx.y; c < g.channels; c += gridDim.y) {
    A centre[kMaxTerms];
#pragma unroll
    for (int t = 0; t < kMaxTerms; ++t) {
      centre[t] = t < edge.num_terms() ? static_cast<A>(stats[mean_row(t) * g.channels + c]) : A(0);
    }
    double sums[kMaxSums];
#pragma unroll
    for (int k = 0; k < kMaxSums; ++k) sums[k] = 0.0;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < g.stat_count();
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const OutputAt at = channel_value_at(edge, c, e);
      const int64_t index = output_index(edge, at);
      const A gv = static_cast<A>(widen(grad[index]));
      A v[kMaxTerms] = {};
      term_values(edge, at, pools, v);
      sums[kSumGrad] += gv;
#pragma unroll
      for (int t = 0; t < kMaxTerms; ++t) {
        if (t < edge.num_terms() && edge.slot[t] >= 0) sums[kSumTerm0 + t] += gv * (v[t] - centre[t]);
      }
      if (edge.skip_slot >= 0) sums[kSumGradSkip] += gv * static_cast<A>(widen(edge.x[index]));  // stride 1
    }
    block_sum(sums, shared);
    if (threadIdx.x == 0) {
      double* out = partial + (c * gridDim.x + blockIdx.x) * kMaxSums;
      for (int k = 0; k < kMaxSums; ++k) out[k] = sums[k];
    }
  }
}

// Backward, one block: per channel, the sums over its blocks and each term's gradient
// coefficients ([3 * terms, C]: g_scale, v_scale, shift per term); then the weight
// gradients, each a sum over the channels in order. The per-channel weight-gradient
// terms go to the first block's slots of `partial`, which the channel's thread alone reads.
template <typename T>
__global__ void backward_coefficients_kernel(Edge<T> edge, const acc_t<T>* weights, const double* stats,
                                             double* partial, int64_t blocks, acc_t<T>* coefficients,
                                             acc_t<T>* grad_weights, int64_t num_weights) {
  using A = acc_t<T>;
  const Geometry& g = edge.g;
  const int64_t c_count = g.channels;
  const double count = static_cast<double>(g.stat_count());
  for (int64_t c = threadIdx.x; c < c_count; c += blockDim.x) {
    double sums[kMaxSums];
    for (int k = 0; k < kMaxSums; ++k) sums[k] = 0.0;
    for (int64_t b = 0; b < blocks; ++b) {
      for (int k = 0; k < kMaxSums; ++k) sums[k] += partial[(c * blocks + b) * kMaxSums + k];
    }
    for (int t = 0; t < edge.num_terms(); ++t) {
      TermGrad term{0.0, 0.0, 0.0, 0.0};
      if (edge.slot[t] >= 0) {
        term = backward_term(edge.mode[t], static_cast<double>(weights[edge.slot[t]]),
                             stats[mean_row(t) * c_count + c], stats[var_row(t) * c_count + c], edge.eps[t],
                             sums[kSumGrad], sums[kSumTerm0 + t], count);
      }
      coefficients[(3 * t) * c_count + c] = static_cast<A>(term.g_scale);
      coefficients[(3 * t + 1) * c_count + c] = static_cast<A>(term.v_scale);
      coefficients[(3 * t + 2) * c_count + c] = static_cast<A>(term.shift);
      sums[kSumTerm0 + t] = term.weight_grad;
    }
    for (int k = 0; k < kMaxSums; ++k) partial[c * blocks * kMaxSums + k] = sums[k];
  }
  __syncthreads();
  for (int64_t k = threadIdx.x; k < num_weights; k += blockDim.x) {
    int sum_slot = k == edge.skip_slot ? kSumGradSkip : -1;
    for (int t = 0; t < edge.num_terms(); ++t) {
      if (k == edge.slot[t]) sum_slot = kSumTerm0 + t;
    }
    double total = 0.0;
    if (sum_slot >= 0) {
      for (int64_t c = 0; c < c_count; ++c) total += partial[c * blocks * kMaxSums + sum_slot];
    }
    grad_weights[k] = static_cast<A>(total);
  }
}

// What each pool's window passes back, computed once per window.
template <typename A>
struct WindowGrads {
  A* max_share;     // to the window's maximum
  int32_t* max_at;  // its plane offset (the first maximum, as in PyTorch)
  A* avg_share;     // to each of its valid taps
};

// Backward, one thread per output window of the pools.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    window_grads_kernel(Edge<T> edge, const T* grad, const acc_t<T>* coefficients, WindowGrads<acc_t<T>> out) {
  using A = acc_t<T>;
  const Geometry& g = edge.g;
  const int64_t total = g.planes() * g.out_plane_size();
  const int64_t c_count = g.channels;
  const bool has_max = edge.slot[kTermMax] >= 0, has_avg = edge.slot[kTermAvg] >= 0;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const OutputAt at = output_at(edge, e);
    auto coefficient = [&](int t, int k) { return coefficients[(3 * t + k) * c_count + at.channel]; };
    const Taps rows = window_taps(at.p, g.stride, g.height);
    const Taps cols = window_taps(at.q, g.stride, g.width);
    const Pooled<A> v = pool3x3<A>(edge.x + at.plane * g.plane_size(), g.width, rows, cols);
    const A gv = static_cast<A>(widen(grad[e]));
    if (has_max) {
      out.max_share[e] = coefficient(kTermMax, 0) * gv + coefficient(kTermMax, 2) +
                         value_term(coefficient(kTermMax, 1), v.max);
      out.max_at[e] = static_cast<int32_t>(v.argmax);
    }
    if (has_avg) {
      const A taps = static_cast<A>(valid_taps(rows) * valid_taps(cols));
      out.avg_share[e] =
          (coefficient(kTermAvg, 0) * gv + coefficient(kTermAvg, 2) + value_term(coefficient(kTermAvg, 1), v.avg)) /
          taps;
    }
  }
}

// Backward, gradient of x: one thread per input value gathers skip's gradient and the
// shares of every pooling window covering it (the max window's only where it is the
// window's maximum).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_input_kernel(Edge<T> edge, const acc_t<T>* weights, const T* grad, WindowGrads<acc_t<T>> windows,
                          T* grad_x) {
  using A = acc_t<T>;
  const Geometry& g = edge.g;
  const int64_t total = g.planes() * g.plane_size();
  const bool has_max = edge.slot[kTermMax] >= 0, has_avg = edge.slot[kTermAvg] >= 0;
  const A skip_weight = edge.skip_slot >= 0 ? weights[edge.skip_slot] : A(0);
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A acc = 0;
    if (edge.skip_slot >= 0) acc = skip_weight * static_cast<A>(widen(grad[e]));  // stride 1: same index
    if (has_max || has_avg) {
      uint64_t plane, offset, i, j;
      edge.plane_size.divmod(static_cast<uint64_t>(e), plane, offset);
      edge.width.divmod(offset, i, j);
      const int64_t window0 = static_cast<int64_t>(plane) * g.out_plane_size();
      const int64_t p_last = last_covering(static_cast<int64_t>(i), g.stride, g.out_height);
      const int64_t q_first = first_covering(static_cast<int64_t>(j), g.stride);
      const int64_t q_last = last_covering(static_cast<int64_t>(j), g.stride, g.out_width);
      for (int64_t p = first_covering(static_cast<int64_t>(i), g.stride); p <= p_last; ++p) {
        for (int64_t q = q_first; q <= q_last; ++q) {
          const int64_t w = window0 + p * g.out_width + q;
          if (has_max && windows.max_at[w] == static_cast<int32_t>(offset)) acc += windows.max_share[w];
          if (has_avg) acc += windows.avg_share[w];
        }
      }
    }
    store(grad_x + e, acc);
  }
}

// Backward, branch gradients: one thread per output value, g_scale * g + v_scale * v + shift.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    branch_grads_kernel(Edge<T> edge, const T* grad, const acc_t<T>* coefficients, BranchGrads<T> branch_grads) {
  using A = acc_t<T>;
  const Geometry& g = edge.g;
  const int64_t total = g.planes() * g.out_plane_size();
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t plane, n, c;
    plane = edge.out_size.div(static_cast<uint64_t>(e));
    edge.channels.divmod(plane, n, c);
    const A gv = static_cast<A>(widen(grad[e]));
#pragma unroll
    for (int b = 0; b < kMaxBranches; ++b) {
      if (b < edge.num_branches) {
        const int t = kTermBranch0 + b;
        const A v = static_cast<A>(widen(edge.branches[b][e]));
        store(branch_grads.data[b] + e, coefficients[(3 * t) * g.channels + c] * gv +
                                            coefficients[(3 * t + 2) * g.channels + c] +
                                            value_term(coefficients[(3 * t + 1) * g.channels + c], v));
      }
    }
  }
}

template <typename T>
Edge<T> make_edge(const Geometry& g, const at::Tensor& x, at::TensorList branches, at::IntArrayRef branch_slots,
                  at::IntArrayRef free_slots, at::IntArrayRef norm_modes, at::ArrayRef<double> eps) {
  Edge<T> edge{};
  edge.g = g;
  edge.x = reinterpret_cast<const T*>(x.const_data_ptr());
  edge.num_branches = static_cast<int>(branches.size());
  edge.skip_slot = static_cast<int>(free_slots[kSkip]);
  edge.slot[kTermMax] = static_cast<int>(free_slots[kMaxPool]);
  edge.slot[kTermAvg] = static_cast<int>(free_slots[kAvgPool]);
  for (size_t b = 0; b < branches.size(); ++b) {
    edge.branches[b] = reinterpret_cast<const T*>(branches[b].const_data_ptr());
    edge.slot[kTermBranch0 + b] = static_cast<int>(branch_slots[b]);
  }
  for (int t = 0; t < kMaxTerms; ++t) {
    const bool term = t < edge.num_terms();
    edge.mode[t] = term ? static_cast<int>(term_mode(free_slots, norm_modes, t)) : static_cast<int>(kNormNone);
    edge.eps[t] = term ? eps[t] : 0.0;
    if (!term) edge.slot[t] = -1;
  }
  edge.out_size = FastDivmod::make(static_cast<uint64_t>(g.out_plane_size()));
  edge.out_width = FastDivmod::make(static_cast<uint64_t>(g.out_width));
  edge.plane_size = FastDivmod::make(static_cast<uint64_t>(g.plane_size()));
  edge.width = FastDivmod::make(static_cast<uint64_t>(g.width));
  edge.channels = FastDivmod::make(static_cast<uint64_t>(g.channels));
  return edge;
}

// The terms normalised with batch statistics, in groups of up to kStatGroup.
template <typename T>
std::vector<StatGroup> stat_groups(const Edge<T>& edge) {
  std::vector<StatGroup> groups;
  for (int t = 0; t < edge.num_terms(); ++t) {
    if (edge.mode[t] != kNormBatch) continue;
    if (groups.empty() || groups.back().count == kStatGroup) groups.push_back(StatGroup{{0, 0, 0, 0}, 0, false});
    StatGroup& group = groups.back();
    group.terms[group.count++] = t;
    group.pools = group.pools || t < kTermBranch0;
  }
  return groups;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> edge_forward(const at::Tensor& x, const at::Tensor& weights,
                                                at::TensorList branches, at::IntArrayRef branch_slots,
                                                at::IntArrayRef free_slots, const Geometry& g,
                                                at::IntArrayRef norm_modes, at::ArrayRef<double> eps,
                                                const std::optional<at::Tensor>& running_stats) {
  using A = acc_t<T>;
  const Edge<T> edge = make_edge<T>(g, x, branches, branch_slots, free_slots, norm_modes, eps);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const A* w = weights.const_data_ptr<A>();
  const auto options = x.options();
  const int num_terms = edge.num_terms();
  // The coefficient kernel writes every entry of stats, scale and shift.
  at::Tensor stats = at::empty({2 * num_terms, g.channels}, options.dtype(at::kDouble));
  at::Tensor scale = at::empty({num_terms + 1, g.channels}, options.dtype(weights.scalar_type()));  // + shift
  const int64_t blocks = blocks_per_channel(g);
  at::Tensor partial;
  const std::vector<StatGroup> groups = stat_groups(edge);
  if (!groups.empty()) {
    partial = at::empty({g.channels, blocks, kStatSums}, options.dtype(at::kDouble));
    for (const StatGroup& group : groups) {
      launch(term_stats_kernel<T>, channel_grid(blocks, g.channels), kThreads, 0, stream, edge, group,
             partial.mutable_data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
  const double* running =
      uses_mode(free_slots, norm_modes, kNormRunning) ? running_stats->const_data_ptr<double>() : nullptr;
  A* scale_data = scale.mutable_data_ptr<A>();
  A* shift_data = scale_data + num_terms * g.channels;
  const double* partial_data = partial.defined() ? partial.const_data_ptr<double>() : nullptr;
  launch(forward_coefficients_kernel<T>, static_cast<unsigned int>(ceil_div(g.channels, kThreads)), kThreads, 0,
         stream, edge, w, partial_data, blocks, running, stats.mutable_data_ptr<double>(), scale_data, shift_data);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor out = at::empty({g.batch, g.channels, g.out_height, g.out_width}, options);
  launch(edge_forward_kernel<T>, grid_for(out.numel()), kThreads, 0, stream, edge, w, scale_data, shift_data,
         reinterpret_cast<T*>(out.mutable_data_ptr()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, stats};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> edge_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weights, at::TensorList branches,
    at::IntArrayRef branch_slots, at::IntArrayRef free_slots, const Geometry& g, at::IntArrayRef norm_modes,
    at::ArrayRef<double> eps, const at::Tensor& stats, std::array<bool, 2> output_mask) {
  using A = acc_t<T>;
  const Edge<T> edge = make_edge<T>(g, x, branches, branch_slots, free_slots, norm_modes, eps);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const A* w = weights.const_data_ptr<A>();
  const T* grad_data = reinterpret_cast<const T*>(grad.const_data_ptr());
  const auto options = x.options();

  const int64_t blocks = blocks_per_channel(g);
  at::Tensor partial = at::empty({g.channels, blocks, kMaxSums}, options.dtype(at::kDouble));
  launch(backward_sums_kernel<T>, channel_grid(blocks, g.channels), kThreads, 0, stream, edge, grad_data,
         stats.const_data_ptr<double>(), partial.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  at::Tensor coefficients = at::empty({3 * edge.num_terms(), g.channels}, options.dtype(weights.scalar_type()));
  at::Tensor grad_weights = at::empty_like(weights);
  launch(backward_coefficients_kernel<T>, 1, kThreads, 0, stream, edge, w, stats.const_data_ptr<double>(),
         partial.mutable_data_ptr<double>(), blocks, coefficients.mutable_data_ptr<A>(),
         grad_weights.mutable_data_ptr<A>(), weights.numel());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  at::Tensor grad_x = at::empty({0}, options);
  if (output_mask[0]) {
    grad_x = at::empty_like(x);
    const bool has_max = edge.slot[kTermMax] >= 0, has_avg = edge.slot[kTermAvg] >= 0;
    const int64_t windows = grad.numel();
    const auto acc_options = options.dtype(weights.scalar_type());
    at::Tensor max_share = has_max ? at::empty({windows}, acc_options) : at::Tensor();
    at::Tensor max_at = has_max ? at::empty({windows}, options.dtype(at::kInt)) : at::Tensor();
    at::Tensor avg_share = has_avg ? at::empty({windows}, acc_options) : at::Tensor();
    const WindowGrads<A> window_grads{has_max ? max_share.mutable_data_ptr<A>() : nullptr,
                                      has_max ? max_at.mutable_data_ptr<int32_t>() : nullptr,
                                      has_avg ? avg_share.mutable_data_ptr<A>() : nullptr};
    if (has_max || has_avg) {
      launch(window_grads_kernel<T>, grid_for(windows), kThreads, 0, stream, edge, grad_data,
             coefficients.const_data_ptr<A>(), window_grads);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    launch(backward_input_kernel<T>, grid_for(x.numel()), kThreads, 0, stream, edge, w, grad_data, window_grads,
           reinterpret_cast<T*>(grad_x.mutable_data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  std::vector<at::Tensor> branch_grads;
  if (output_mask[1] && !branches.empty()) {
    BranchGrads<T> branch_grad_data{};
    for (size_t b = 0; b < branches.size(); ++b) {
      branch_grads.push_back(at::empty_like(branches[b]));
      branch_grad_data.data[b] = reinterpret_cast<T*>(branch_grads.back().mutable_data_ptr());
    }
    launch(branch_grads_kernel<T>, grid_for(grad.numel()), kThreads, 0, stream, edge, grad_data,
           coefficients.const_data_ptr<A>(), branch_grad_data);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {grad_x, grad_weights, branch_grads};
}

std::tuple<at::Tensor, at::Tensor> mixed_edge_cuda(const at::Tensor& x, const at::Tensor& weights,
                                                   at::TensorList branches, at::IntArrayRef branch_slots,
                                                   at::IntArrayRef free_slots, int64_t stride,
                                                   at::IntArrayRef norm_modes, at::ArrayRef<double> eps,
                                                   const std::optional<at::Tensor>& running_stats) {
  const Geometry g = check_edge(x, weights, branches, branch_slots, free_slots, stride, norm_modes, eps);
  check_running_stats(running_stats, x, free_slots, norm_modes);
  const c10::cuda::CUDAGuard guard(x.device());
  return dispatch_storage(x.scalar_type(), [&](auto tag) {
    return edge_forward<decltype(tag)>(x, weights, branches, branch_slots, free_slots, g, norm_modes, eps,
                                       running_stats);
  });
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> mixed_edge_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weights, at::TensorList branches,
    at::IntArrayRef branch_slots, at::IntArrayRef free_slots, int64_t stride, at::IntArrayRef norm_modes,
    at::ArrayRef<double> eps, const at::Tensor& stats, std::array<bool, 2> output_mask) {
  const Geometry g = check_edge(x, weights, branches, branch_slots, free_slots, stride, norm_modes, eps);
  check_edge_grad(grad, x, g);
  check_term_stats(stats, x, norm_modes.size(), "stats");
  const c10::cuda::CUDAGuard guard(x.device());
  return dispatch_storage(x.scalar_type(), [&](auto tag) {
    return edge_backward<decltype(tag)>(grad, x, weights, branches, branch_slots, free_slots, g, norm_modes, eps,
                                        stats, output_mask);
  });
}

template <typename S>
__global__ void running_update_kernel(S* running_mean, S* running_var, const double* mean, const double* var,
                                      double momentum, double unbias, int64_t channels) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= channels) return;
  running_mean[c] = static_cast<S>(momentum * mean[c] + (1 - momentum) * static_cast<double>(running_mean[c]));
  running_var[c] =
      static_cast<S>(momentum * var[c] * unbias + (1 - momentum) * static_cast<double>(running_var[c]));
}

void batch_norm_running_update_cuda(const at::Tensor& running_mean, const at::Tensor& running_var,
                                    const at::Tensor& mean, const at::Tensor& var, double momentum, int64_t count) {
  check_running_update(running_mean, running_var, mean, var, momentum, count);
  const int64_t channels = running_mean.numel();
  if (channels == 0) return;  // nothing to update (and an empty grid is no launch)
  const c10::cuda::CUDAGuard guard(mean.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, running_mean.scalar_type(), "batch_norm_running_update", [&] {
        launch(running_update_kernel<scalar_t>, static_cast<unsigned int>(ceil_div(channels, kThreads)), kThreads, 0,
               stream, running_mean.mutable_data_ptr<scalar_t>(), running_var.mutable_data_ptr<scalar_t>(),
               mean.const_data_ptr<double>(), var.const_data_ptr<double>(), momentum, unbias, channels);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

}  // namespace

PF_CUDA_LIBRARY_IMPL(m) {
  m.impl("mixed_edge", &mixed_edge_cuda);
  m.impl("mixed_edge_backward", &mixed_edge_backward_cuda);
  m.impl("batch_norm_running_update", &batch_norm_running_update_cuda);
}

}  // namespace cuda
}  // namespace proxyfast
