#include "mixed_edge_kernel.h"

#include <type_traits>
#include <utility>

#include "cpu_dispatch.h"

namespace proxyfast {
namespace cpu {
namespace {

using mixed_edge::Taps;
using mixed_edge::store;
using mixed_edge::valid_taps;
using mixed_edge::value_term;
using mixed_edge::widen;
using mixed_edge::window_taps;

// The larger value, NaN if either is NaN (PyTorch's max pooling propagates NaN).
// Selects, not branches, so that loops over it vectorize.
template <typename A>
PF_CLONE_INLINE A nan_max(A a, A b) {
  const A larger = a > b ? a : b;
  return ((a != a) | (b != b)) ? a + b : larger;
}

// Whether v replaces `best` in a scan for the first maximum (or the last NaN).
template <typename A>
PF_CLONE_INLINE bool takes_over(A v, A best) {
  return (v > best) | (v != v);
}

// The per-call scratch, carved from one array of A and one of int32. Pooling runs in
// two separable passes: along each input row (row_*, H x Wo), then down the columns
// (the pooled planes max / avg / arg, Ho x Wo).
template <typename A>
struct Workspace {
  A* xs;         // x plane widened to A (H x W), when T is not A
  A* gs;         // output-gradient plane widened to A (Ho x Wo)
  A* row_max;    // H x Wo
  A* row_sum;    // H x Wo; reused to spread the average pool's gradient back down the columns
  A* max;        // Ho x Wo
  A* avg;        // Ho x Wo
  A* share;      // Ho x Wo: the gradient each average window spreads over one tap, or a widened branch
  A* gx;         // H x W: the input gradient being accumulated
  A* row;        // Wo: one output row being accumulated
  A* col_count;  // Wo: valid columns of each window
  A* zeros;      // Wo
  int32_t* row_arg;  // H x Wo: column of each row maximum
  int32_t* arg;      // Ho x Wo: plane offset of each window maximum

  Workspace(const EdgeGeometry& g, A* values, int32_t* indices) {
    const int64_t hw = g.plane_size(), out = g.out_plane_size(), rows = g.height * g.out_width;
    A* p = values;
    for (A** slot : {&xs, &gx}) *slot = std::exchange(p, p + hw);
    for (A** slot : {&gs, &max, &avg, &share}) *slot = std::exchange(p, p + out);
    for (A** slot : {&row_max, &row_sum}) *slot = std::exchange(p, p + rows);
    for (A** slot : {&row, &col_count, &zeros}) *slot = std::exchange(p, p + g.out_width);
    row_arg = indices;
    arg = indices + rows;
    for (int64_t q = 0; q < g.out_width; ++q) {
      col_count[q] = static_cast<A>(valid_taps(window_taps(q, g.stride, g.width)));
      zeros[q] = 0;
    }
  }
};

// The plane as A: the data itself when T already is A, else a widened copy in `buffer`.
template <typename T>
PF_CLONE_INLINE const acc_t<T>* widened(const T* src, int64_t n, acc_t<T>* buffer) {
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    return src;
  } else {
    for (int64_t i = 0; i < n; ++i) buffer[i] = widen(src[i]);
    return buffer;
  }
}

// The interior columns of pool_rows, where all three taps are valid, with the stride
// known at compile time so that the loop vectorizes.
template <int S, typename A, bool kArg>
PF_CLONE_INLINE void pool_row_interior(const A* in, int64_t wo, A* m, A* sum, int32_t* arg) {
  for (int64_t q = 1; q < wo - 1; ++q) {
    const A* t = in + q * S - 1;
    if constexpr (kArg) {
      A best = t[0];
      int32_t at = 0;
      const bool take1 = takes_over(t[1], best);
      best = take1 ? t[1] : best;
      at = take1 ? 1 : at;
      const bool take2 = takes_over(t[2], best);
      best = take2 ? t[2] : best;
      at = take2 ? 2 : at;
      m[q] = best;
      arg[q] = static_cast<int32_t>(q * S - 1) + at;
    } else {
      m[q] = nan_max(nan_max(t[0], t[1]), t[2]);
    }
    sum[q] = t[0] + t[1] + t[2];
  }
}

// First pass of the 3x3 pools: the maximum (with its column when kArg) and the sum of
// the valid taps along every input row, for each output column.
template <typename A, bool kArg>
PF_CLONE_INLINE void pool_rows(const A* xs, const EdgeGeometry& g, Workspace<A>& ws) {
  const int64_t w = g.width, wo = g.out_width, s = g.stride;
  for (int64_t r = 0; r < g.height; ++r) {
    const A* in = xs + r * w;
    A* m = ws.row_max + r * wo;
    A* sum = ws.row_sum + r * wo;
    int32_t* arg = ws.row_arg + r * wo;
    auto border = [&](int64_t q) {
      const Taps cols = window_taps(q, s, w);
      // First maximum in column order (the repeated centre of an invalid tap never wins).
      A best = in[cols.lo];
      int64_t at = cols.lo;
      for (int64_t c : {cols.mid, cols.hi}) {
        const bool take = takes_over(in[c], best);
        best = take ? in[c] : best;
        at = take ? c : at;
      }
      m[q] = best;
      if constexpr (kArg) arg[q] = static_cast<int32_t>(at);
      sum[q] = (cols.lo_valid ? in[cols.lo] : A(0)) + in[cols.mid] + (cols.hi_valid ? in[cols.hi] : A(0));
    };
    border(0);
    if (s == 1) {
      pool_row_interior<1, A, kArg>(in, wo, m, sum, arg);
    } else {
      pool_row_interior<2, A, kArg>(in, wo, m, sum, arg);
    }
    if (wo > 1) border(wo - 1);
  }
}

// Second pass: combines the three row results of each window into the pooled planes.
// The average divides the sum of the valid taps by their number (count_include_pad=False).
template <typename A, bool kArg>
PF_CLONE_INLINE void pool_columns(const EdgeGeometry& g, Workspace<A>& ws) {
  const int64_t wo = g.out_width;
  for (int64_t p = 0; p < g.out_height; ++p) {
    const Taps rows = window_taps(p, g.stride, g.height);
    const A* m[3] = {ws.row_max + rows.lo * wo, ws.row_max + rows.mid * wo, ws.row_max + rows.hi * wo};
    const A* s0 = rows.lo_valid ? ws.row_sum + rows.lo * wo : ws.zeros;
    const A* s1 = ws.row_sum + rows.mid * wo;
    const A* s2 = rows.hi_valid ? ws.row_sum + rows.hi * wo : ws.zeros;
    const A row_count = static_cast<A>(valid_taps(rows));
    A* out_max = ws.max + p * wo;
    A* out_avg = ws.avg + p * wo;
    for (int64_t q = 0; q < wo; ++q) {
      out_avg[q] = (s0[q] + s1[q] + s2[q]) / (row_count * ws.col_count[q]);
    }
    if constexpr (kArg) {
      const int64_t row_index[3] = {rows.lo, rows.mid, rows.hi};
      int32_t* out_arg = ws.arg + p * wo;
      for (int64_t q = 0; q < wo; ++q) {
        // The first row holding the maximum, at its first column: PyTorch's row-major
        // first maximum (or its last NaN).
        A best = m[0][q];
        int64_t at = row_index[0] * g.width + ws.row_arg[row_index[0] * wo + q];
        for (int k = 1; k < 3; ++k) {
          const A v = m[k][q];
          const bool take = takes_over(v, best);
          best = take ? v : best;
          at = take ? row_index[k] * g.width + ws.row_arg[row_index[k] * wo + q] : at;
        }
        out_max[q] = best;
        out_arg[q] = static_cast<int32_t>(at);
      }
    } else {
      for (int64_t q = 0; q < wo; ++q) out_max[q] = nan_max(nan_max(m[0][q], m[1][q]), m[2][q]);
    }
  }
}

template <typename A, bool kArg>
PF_CLONE_INLINE void pool_plane(const A* xs, const EdgeGeometry& g, Workspace<A>& ws) {
  pool_rows<A, kArg>(xs, g, ws);
  pool_columns<A, kArg>(g, ws);
}

// Independent accumulators of the plane reductions: lanes of a vector register, so
// that the loops vectorize without reassociating one sum.
constexpr int kLanes = 16;

// sum over i < n of term(i): kLanes running sums in A (a plane has few thousand
// values), added up in double.
template <typename A, typename Term>
PF_CLONE_INLINE double lane_sum(int64_t n, Term term) {
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
  }
  for (; i < n; ++i) lanes[0] += term(i);
  double total = 0.0;
  for (int l = 0; l < kLanes; ++l) total += static_cast<double>(lanes[l]);
  return total;
}

// sum a * (b - centre) over n values.
template <typename A, typename B>
PF_CLONE_INLINE double centred_dot(const A* a, const B* b, A centre, int64_t n) {
  return lane_sum<A>(n, [&](int64_t i) { return a[i] * (static_cast<A>(widen(b[i])) - centre); });
}

// Mean and sum of squared deviations of n values, in two passes.
template <typename A>
PF_CLONE_INLINE void moments_of(const A* v, int64_t n, double* mean, double* m2) {
  *mean = lane_sum<A>(n, [&](int64_t i) { return v[i]; }) / static_cast<double>(n);
  const A m = static_cast<A>(*mean);
  *m2 = lane_sum<A>(n, [&](int64_t i) { return (v[i] - m) * (v[i] - m); });
}

}  // namespace

int64_t edge_scratch_values(const EdgeGeometry& g) {
  return 2 * g.plane_size() + 4 * g.out_plane_size() + 2 * g.height * g.out_width + 3 * g.out_width;
}

int64_t edge_scratch_indices(const EdgeGeometry& g) { return g.height * g.out_width + g.out_plane_size(); }

template <typename T>
PF_CPU_CLONES void term_plane_moments(const EdgeTerms<T>& terms, const EdgeGeometry& g, const bool* want,
                                      int64_t begin, int64_t end, double* moments, acc_t<T>* scratch,
                                      int32_t* indices) {
  using A = acc_t<T>;
  using namespace mixed_edge;
  Workspace<A> ws(g, scratch, indices);
  const int num_terms = terms.num_terms();
  const int64_t out_size = g.out_plane_size();
  for (int64_t plane = begin; plane < end; ++plane) {
    double* m = moments + plane * num_terms * 2;
    if (want[kTermMax] || want[kTermAvg]) {
      pool_plane<A, false>(widened(terms.x + plane * g.plane_size(), g.plane_size(), ws.xs), g, ws);
      if (want[kTermMax]) moments_of(ws.max, out_size, &m[2 * kTermMax], &m[2 * kTermMax + 1]);
      if (want[kTermAvg]) moments_of(ws.avg, out_size, &m[2 * kTermAvg], &m[2 * kTermAvg + 1]);
    }
    for (int b = 0; b < terms.num_branches; ++b) {
      const int t = kTermBranch0 + b;
      if (!want[t]) continue;
      const A* values = widened(terms.branches[b] + plane * out_size, out_size, ws.share);
      moments_of(values, out_size, &m[2 * t], &m[2 * t + 1]);
    }
  }
}

void merge_channel_moments(const double* moments, int num_terms, const bool* want, const EdgeGeometry& g,
                           double* stats) {
  using namespace mixed_edge;
  const int64_t c_count = g.channels;
  const double plane_count = static_cast<double>(g.out_plane_size());
  for (int t = 0; t < num_terms; ++t) {
    if (!want[t]) continue;
    for (int64_t c = 0; c < c_count; ++c) {
      double count = 0.0, mean = 0.0, m2 = 0.0;
      for (int64_t n = 0; n < g.batch; ++n) {
        const double* m = moments + ((n * c_count + c) * num_terms + t) * 2;
        const double total = count + plane_count;
        const double delta = m[0] - mean;
        mean += delta * plane_count / total;
        m2 += m[1] + delta * delta * count * plane_count / total;
        count = total;
      }
      // A NaN variance (a NaN or inf value) makes the mean NaN too: common/mixed_edge.h.
      stats[mean_row(t) * c_count + c] = m2 != m2 ? m2 : mean;
      stats[var_row(t) * c_count + c] = m2 / count;
    }
  }
}

template <typename T>
PF_CPU_CLONES void forward_planes(const EdgeTerms<T>& terms, const EdgeGeometry& g, const acc_t<T>* scale,
                                  const acc_t<T>* shift, T* out, int64_t begin, int64_t end, acc_t<T>* scratch,
                                  int32_t* indices) {
  using A = acc_t<T>;
  using namespace mixed_edge;
  Workspace<A> ws(g, scratch, indices);
  const int64_t wo = g.out_width, c_count = g.channels;
  const bool pools = terms.has_max || terms.has_avg;
  A* row = ws.row;
  for (int64_t plane = begin; plane < end; ++plane) {
    const int64_t c = plane % c_count;
    const A* xs = (pools || terms.has_skip) ? widened(terms.x + plane * g.plane_size(), g.plane_size(), ws.xs)
                                            : nullptr;
    if (pools) pool_plane<A, false>(xs, g, ws);
    const int64_t out_offset = plane * g.out_plane_size();
    for (int64_t p = 0; p < g.out_height; ++p) {
      const A bias = shift[c];
      for (int64_t q = 0; q < wo; ++q) row[q] = bias;
      for (int b = 0; b < terms.num_branches; ++b) {
        const T* branch = terms.branches[b] + out_offset + p * wo;
        const A w = scale[(kTermBranch0 + b) * c_count + c];
        for (int64_t q = 0; q < wo; ++q) row[q] += w * widen(branch[q]);
      }
      if (terms.has_skip) {  // stride 1: the output row is the input row
        const A w = terms.skip_weight;
        const A* x_row = xs + p * g.width;
        for (int64_t q = 0; q < wo; ++q) row[q] += w * x_row[q];
      }
      // A missing pool contributes nothing (not 0 times its possibly non-finite value).
      if (terms.has_max) {
        const A w = scale[kTermMax * c_count + c];
        const A* pooled = ws.max + p * wo;
        for (int64_t q = 0; q < wo; ++q) row[q] += w * pooled[q];
      }
      if (terms.has_avg) {
        const A w = scale[kTermAvg * c_count + c];
        const A* pooled = ws.avg + p * wo;
        for (int64_t q = 0; q < wo; ++q) row[q] += w * pooled[q];
      }
      T* out_row = out + out_offset + p * wo;
      for (int64_t q = 0; q < wo; ++q) store(out_row + q, row[q]);
    }
  }
}

template <typename T>
PF_CPU_CLONES void backward_sums(const EdgeTerms<T>& terms, const EdgeGeometry& g, const T* grad,
                                 const double* stats, int64_t begin, int64_t end, double* sums, acc_t<T>* scratch,
                                 int32_t* indices) {
  using A = acc_t<T>;
  using namespace mixed_edge;
  Workspace<A> ws(g, scratch, indices);
  const int64_t out_size = g.out_plane_size(), c_count = g.channels;
  const int n_sums = backward_sum_count(terms.num_terms());
  const bool pools = terms.has_max || terms.has_avg;
  for (int64_t plane = begin; plane < end; ++plane) {
    const int64_t c = plane % c_count;
    const int64_t out_offset = plane * out_size;
    double* s = sums + plane * n_sums;
    for (int k = 0; k < n_sums; ++k) s[k] = 0.0;
    auto centre = [&](int t) { return static_cast<A>(stats[mean_row(t) * c_count + c]); };
    const A* gs = widened(grad + out_offset, out_size, ws.gs);
    s[kSumGrad] = lane_sum<A>(out_size, [&](int64_t i) { return gs[i]; });
    for (int b = 0; b < terms.num_branches; ++b) {
      const int t = kTermBranch0 + b;
      s[kSumTerm0 + t] = centred_dot(gs, terms.branches[b] + out_offset, centre(t), out_size);
    }
    if (!pools && !terms.has_skip) continue;
    const A* xs = widened(terms.x + plane * g.plane_size(), g.plane_size(), ws.xs);
    if (terms.has_skip) s[kSumGradSkip] = centred_dot(gs, xs, A(0), out_size);  // stride 1: same shape
    if (pools) {
      pool_plane<A, false>(xs, g, ws);
      if (terms.has_max) s[kSumTerm0 + kTermMax] = centred_dot(gs, ws.max, centre(kTermMax), out_size);
      if (terms.has_avg) s[kSumTerm0 + kTermAvg] = centred_dot(gs, ws.avg, centre(kTermAvg), out_size);
    }
  }
}

template <typename T>
PF_CPU_CLONES void backward_apply(const EdgeTerms<T>& terms, const EdgeGeometry& g, const T* grad,
                                  const acc_t<T>* coefficients, T* grad_x, T* const* branch_grads, int64_t begin,
                                  int64_t end, acc_t<T>* scratch, int32_t* indices) {
  using A = acc_t<T>;
  using namespace mixed_edge;
  Workspace<A> ws(g, scratch, indices);
  const int64_t out_size = g.out_plane_size();
  const int64_t plane_size = g.plane_size();
  const int64_t w = g.width, wo = g.out_width, c_count = g.channels;
  auto coefficient = [&](int t, int k, int64_t c) { return coefficients[(3 * t + k) * c_count + c]; };
  A* gx = ws.gx;
  for (int64_t plane = begin; plane < end; ++plane) {
    const int64_t c = plane % c_count;
    const int64_t out_offset = plane * out_size;
    const A* gs = widened(grad + out_offset, out_size, ws.gs);
    if (branch_grads != nullptr) {
      for (int b = 0; b < terms.num_branches; ++b) {
        const int t = kTermBranch0 + b;
        const A g_scale = coefficient(t, 0, c), v_scale = coefficient(t, 1, c), shift = coefficient(t, 2, c);
        const T* values = terms.branches[b] + out_offset;
        T* out = branch_grads[b] + out_offset;
        for (int64_t i = 0; i < out_size; ++i) {
          store(out + i, g_scale * gs[i] + shift + value_term(v_scale, static_cast<A>(widen(values[i]))));
        }
      }
    }
    if (grad_x == nullptr) continue;
    if (terms.has_skip) {  // stride 1: same shape
      for (int64_t i = 0; i < plane_size; ++i) gx[i] = terms.skip_weight * gs[i];
    } else {
      for (int64_t i = 0; i < plane_size; ++i) gx[i] = 0;
    }
    if (terms.has_max || terms.has_avg) {
      pool_plane<A, true>(widened(terms.x + plane * plane_size, plane_size, ws.xs), g, ws);
    }
    if (terms.has_max) {
      // All of a window's gradient goes to its (first) maximum.
      const A g_scale = coefficient(kTermMax, 0, c), v_scale = coefficient(kTermMax, 1, c);
      const A shift = coefficient(kTermMax, 2, c);
      for (int64_t i = 0; i < out_size; ++i) {
        gx[ws.arg[i]] += g_scale * gs[i] + shift + value_term(v_scale, ws.max[i]);
      }
    }
    if (terms.has_avg) {
      // Each window spreads its gradient evenly over its valid taps: first down the
      // columns into the rows (reusing row_sum), then along each row.
      const A g_scale = coefficient(kTermAvg, 0, c), v_scale = coefficient(kTermAvg, 1, c);
      const A shift = coefficient(kTermAvg, 2, c);
      A* spread = ws.row_sum;
      for (int64_t i = 0; i < g.height * wo; ++i) spread[i] = 0;
      for (int64_t p = 0; p < g.out_height; ++p) {
        const Taps rows = window_taps(p, g.stride, g.height);
        const A row_count = static_cast<A>(valid_taps(rows));
        A* share = ws.share + p * wo;
        for (int64_t q = 0; q < wo; ++q) {
          const int64_t i = p * wo + q;
          share[q] = (g_scale * gs[i] + shift + value_term(v_scale, ws.avg[i])) / (row_count * ws.col_count[q]);
        }
        auto add_to_row = [&](int64_t r) {
          A* dst = spread + r * wo;
          for (int64_t q = 0; q < wo; ++q) dst[q] += share[q];
        };
        add_to_row(rows.mid);
        if (rows.lo_valid) add_to_row(rows.lo);
        if (rows.hi_valid) add_to_row(rows.hi);
      }
      for (int64_t r = 0; r < g.height; ++r) {
        const A* src = spread + r * wo;
        A* dst = gx + r * w;
        for (int64_t q = 0; q < wo; ++q) {
          const Taps cols = window_taps(q, g.stride, w);
          dst[cols.mid] += src[q];
          if (cols.lo_valid) dst[cols.lo] += src[q];
          if (cols.hi_valid) dst[cols.hi] += src[q];
        }
      }
    }
    T* out = grad_x + plane * plane_size;
    for (int64_t i = 0; i < plane_size; ++i) store(out + i, gx[i]);
  }
}

#define PF_INSTANTIATE_MIXED_EDGE(T)                                                                              \
  template void term_plane_moments<T>(const EdgeTerms<T>&, const EdgeGeometry&, const bool*, int64_t, int64_t,   \
                                      double*, acc_t<T>*, int32_t*);                                              \
  template void forward_planes<T>(const EdgeTerms<T>&, const EdgeGeometry&, const acc_t<T>*, const acc_t<T>*, T*, \
                                  int64_t, int64_t, acc_t<T>*, int32_t*);                                         \
  template void backward_sums<T>(const EdgeTerms<T>&, const EdgeGeometry&, const T*, const double*, int64_t,      \
                                 int64_t, double*, acc_t<T>*, int32_t*);                                          \
  template void backward_apply<T>(const EdgeTerms<T>&, const EdgeGeometry&, const T*, const acc_t<T>*, T*,        \
                                  T* const*, int64_t, int64_t, acc_t<T>*, int32_t*);

PF_INSTANTIATE_MIXED_EDGE(float)
PF_INSTANTIATE_MIXED_EDGE(double)
PF_INSTANTIATE_MIXED_EDGE(Half16)
PF_INSTANTIATE_MIXED_EDGE(BFloat16)

#undef PF_INSTANTIATE_MIXED_EDGE

}  // namespace cpu
}  // namespace proxyfast
