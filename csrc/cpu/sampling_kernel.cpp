#include "sampling_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/sampling_keys.h"
#include "cpu_dispatch.h"

namespace proxyfast {
namespace cpu {
namespace {

// Clocks are computed in blocks of this many items into a stack buffer, then filtered.
constexpr int64_t kBlock = 1024;
// Size of the deterministic sample that sets the threshold.
constexpr int64_t kSampleSize = 16384;

template <typename Weights>
PF_CLONE_INLINE void clocks_loop(Weights weights, int64_t begin, int64_t end, uint64_t seed, uint32_t stream,
                                 double* clocks) {
  int64_t i = begin;
  if (i < end && (i & 1)) {
    clocks[0] = exponential_clock(static_cast<double>(weights[i]), seed, static_cast<uint64_t>(i), stream);
    ++i;
  }
  // Items 2j and 2j + 1 share one Philox block.
  for (; i + 1 < end; i += 2) {
    const Philox4x32Out r = philox_block(seed, static_cast<uint64_t>(i) >> 1, stream);
    clocks[i - begin] = clock_from_uniform(static_cast<double>(weights[i]), uniform_open01_from_words(r.x[0], r.x[1]));
    clocks[i + 1 - begin] =
        clock_from_uniform(static_cast<double>(weights[i + 1]), uniform_open01_from_words(r.x[2], r.x[3]));
  }
  if (i < end) {
    clocks[i - begin] = exponential_clock(static_cast<double>(weights[i]), seed, static_cast<uint64_t>(i), stream);
  }
}

// uniforms[i - begin] = the uniform of item i, for i in [begin, end).
PF_CLONE_INLINE void uniforms_loop(int64_t begin, int64_t end, uint64_t seed, uint32_t stream, double* uniforms) {
  int64_t i = begin;
  if (i < end && (i & 1)) {
    uniforms[0] = philox_uniform_open01(seed, static_cast<uint64_t>(i), stream);
    ++i;
  }
  for (; i + 1 < end; i += 2) {
    const Philox4x32Out r = philox_block(seed, static_cast<uint64_t>(i) >> 1, stream);
    uniforms[i - begin] = uniform_open01_from_words(r.x[0], r.x[1]);
    uniforms[i + 1 - begin] = uniform_open01_from_words(r.x[2], r.x[3]);
  }
  if (i < end) uniforms[i - begin] = philox_uniform_open01(seed, static_cast<uint64_t>(i), stream);
}

// A bound under which no clock can pass `threshold`: item i can only be kept when
// x + x^2 / 2 <= bound * w_i with x = 1 - u_i, because x + x^2 / 2 <= -log(u_i), and
// det_log and the division err by far less than the 1e-9 margin. A threshold at the
// largest finite double also keeps the overflowed clocks capped to it, so it filters nothing.
inline double prefilter_bound(double threshold) {
  return threshold < 1.7976931348623157e308 ? threshold * (1.0 + 1e-9) : HUGE_VAL;
}

template <typename Weights>
PF_CLONE_INLINE CandidateCounts collect_loop(Weights weights, int64_t begin, int64_t end, uint64_t seed,
                                             uint32_t stream, double threshold, ClockCandidate* out,
                                             int64_t capacity) {
  CandidateCounts counts{0, 0, 0};
  const double bound = prefilter_bound(threshold);
  double uniforms[kBlock];
  int64_t may_pass[kBlock];
  int64_t survivors[kBlock];
  double clocks[kBlock];
  ClockCandidate kept[kBlock];
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t stop = std::min(start + kBlock, end);
    const int64_t size = stop - start;
    uniforms_loop(start, stop, seed, stream, uniforms);
    // Most clocks are far above the threshold: a cheap lower bound on -log(u) rejects
    // them (a vectorized pass), and only the survivors get the exact, costly clock.
    int64_t positive = 0;
    int64_t invalid = 0;
    for (int64_t j = 0; j < size; ++j) {
      const double w = static_cast<double>(weights[start + j]);
      const double x = 1.0 - uniforms[j];
      // Bitwise rather than short-circuit operators keep the loop free of branches.
      const int64_t is_positive = (w > 0.0) & (w < HUGE_VAL);
      positive += is_positive;
      invalid += 1 - ((w >= 0.0) & (w < HUGE_VAL));
      may_pass[j] = is_positive & (x + 0.5 * x * x <= bound * w);  // bound * w: never NaN for a positive w
    }
    counts.positive += positive;
    counts.invalid += invalid;
    // Branch-free compaction: every slot is written, it advances only for a survivor.
    int64_t num_survivors = 0;
    for (int64_t j = 0; j < size; ++j) {
      survivors[num_survivors] = j;
      num_survivors += may_pass[j];
    }
    for (int64_t s = 0; s < num_survivors; ++s) {
      const int64_t j = survivors[s];
      clocks[s] = clock_from_uniform(static_cast<double>(weights[start + j]), uniforms[j]);
    }
    int64_t num_kept = 0;
    for (int64_t j = 0; j < num_survivors; ++j) {
      kept[num_kept] = ClockCandidate{clocks[j], start + survivors[j]};
      num_kept += clocks[j] <= threshold ? 1 : 0;
    }
    if (counts.kept >= 0) {
      if (counts.kept + num_kept > capacity) {
        counts.kept = -1;  // keep counting the weights: the caller reports invalid ones
      } else {
        std::memcpy(out + counts.kept, kept, static_cast<size_t>(num_kept) * sizeof(ClockCandidate));
        counts.kept += num_kept;
      }
    }
  }
  return counts;
}

// out[j] = the clock of item j * step, for j in [0, count); step is even, so every
// item takes the first two words of its Philox block (and the loop vectorizes).
template <typename Weights>
PF_CLONE_INLINE void strided_clocks_loop(Weights weights, int64_t step, int64_t count, uint64_t seed,
                                         uint32_t stream, double* out) {
  for (int64_t j = 0; j < count; ++j) {
    const int64_t i = j * step;
    const Philox4x32Out r = philox_block(seed, static_cast<uint64_t>(i) >> 1, stream);
    out[j] = clock_from_uniform(static_cast<double>(weights[i]), uniform_open01_from_words(r.x[0], r.x[1]));
  }
}

}  // namespace

PF_CPU_CLONES void strided_clocks(const float* weights, int64_t step, int64_t count, uint64_t seed, uint32_t stream,
                                  double* out) {
  strided_clocks_loop(weights, step, count, seed, stream, out);
}
PF_CPU_CLONES void strided_clocks(const double* weights, int64_t step, int64_t count, uint64_t seed,
                                  uint32_t stream, double* out) {
  strided_clocks_loop(weights, step, count, seed, stream, out);
}
PF_CPU_CLONES void strided_clocks(BinWeights weights, int64_t step, int64_t count, uint64_t seed, uint32_t stream,
                                  double* out) {
  strided_clocks_loop(weights, step, count, seed, stream, out);
}


PF_CPU_CLONES void exponential_clocks(const float* weights, int64_t begin, int64_t end, uint64_t seed,
                                      uint32_t stream, double* clocks) {
  clocks_loop(weights, begin, end, seed, stream, clocks);
}

PF_CPU_CLONES void exponential_clocks(const double* weights, int64_t begin, int64_t end, uint64_t seed,
                                      uint32_t stream, double* clocks) {
  clocks_loop(weights, begin, end, seed, stream, clocks);
}

template <typename Weights>
ClockThreshold clock_threshold(Weights weights, int64_t n, int64_t k, uint64_t seed, uint32_t stream) {
  const ClockThreshold keep_all{HUGE_VAL, 1.0};
  if (n <= 4 * kSampleSize) return keep_all;  // small inputs: keeping everything is cheap
  // An evenly spread sample: the threshold only sets how much work the exact pass does,
  // never which items it returns.
  const int64_t step = (n / kSampleSize) & ~int64_t{1};
  std::vector<double> clocks(static_cast<size_t>(kSampleSize));
  strided_clocks(weights, step, kSampleSize, seed, stream, clocks.data());
  std::vector<double> sample;
  sample.reserve(kSampleSize);
  for (double clock : clocks) {
    if (std::isfinite(clock)) sample.push_back(clock);
  }
  // Expected number of sampled clocks under the k-th smallest clock of all n items,
  // plus 6 binomial standard deviations.
  const double p = static_cast<double>(k) / static_cast<double>(n);
  const double s = static_cast<double>(kSampleSize);
  const double rank = s * p + 6.0 * std::sqrt(s * p * (1.0 - p)) + 16.0;
  if (rank >= static_cast<double>(sample.size())) return keep_all;
  const auto nth = sample.begin() + static_cast<int64_t>(rank);
  std::nth_element(sample.begin(), nth, sample.end());
  return ClockThreshold{*nth, (rank + 1.0) / s};
}

template ClockThreshold clock_threshold<const float*>(const float*, int64_t, int64_t, uint64_t, uint32_t);
template ClockThreshold clock_threshold<const double*>(const double*, int64_t, int64_t, uint64_t, uint32_t);
template ClockThreshold clock_threshold<BinWeights>(BinWeights, int64_t, int64_t, uint64_t, uint32_t);

PF_CPU_CLONES CandidateCounts collect_candidates(const float* weights, int64_t begin, int64_t end, uint64_t seed,
                                                 uint32_t stream, double threshold, ClockCandidate* out,
                                                 int64_t capacity) {
  return collect_loop(weights, begin, end, seed, stream, threshold, out, capacity);
}

PF_CPU_CLONES CandidateCounts collect_candidates(const double* weights, int64_t begin, int64_t end, uint64_t seed,
                                                 uint32_t stream, double threshold, ClockCandidate* out,
                                                 int64_t capacity) {
  return collect_loop(weights, begin, end, seed, stream, threshold, out, capacity);
}

PF_CPU_CLONES CandidateCounts collect_candidates(BinWeights weights, int64_t begin, int64_t end, uint64_t seed,
                                                 uint32_t stream, double threshold, ClockCandidate* out,
                                                 int64_t capacity) {
  return collect_loop(weights, begin, end, seed, stream, threshold, out, capacity);
}

void sort_candidates(ClockCandidate* data, int64_t n, ClockCandidate* buffer) {
  if (n < 2) return;
  ClockCandidate* from = data;
  ClockCandidate* to = buffer;
  auto key = [](const ClockCandidate& c) {
    uint64_t bits;
    std::memcpy(&bits, &c.clock, sizeof(bits));
    return bits;
  };
  for (int shift = 0; shift < 64; shift += 8) {
    int64_t counts[256] = {};
    for (int64_t i = 0; i < n; ++i) ++counts[(key(from[i]) >> shift) & 0xff];
    if (counts[(key(from[0]) >> shift) & 0xff] == n) continue;  // every item has this digit
    int64_t offset = 0;
    for (int64_t& count : counts) {
      const int64_t c = count;
      count = offset;
      offset += c;
    }
    for (int64_t i = 0; i < n; ++i) to[counts[(key(from[i]) >> shift) & 0xff]++] = from[i];
    std::swap(from, to);
  }
  if (from != data) std::memcpy(data, from, static_cast<size_t>(n) * sizeof(ClockCandidate));
}

void smallest_in_order(const ClockCandidate* data, int64_t n, int64_t k, int64_t* out) {
  if (k <= 0) return;
  // Buckets of equal clock width: the bucket is a non-decreasing function of the clock,
  // so ordering the buckets, then each bucket stably by clock, orders the whole.
  double max_clock = 0.0;
  for (int64_t i = 0; i < n; ++i) max_clock = std::max(max_clock, data[i].clock);
  const int64_t num_buckets = std::max<int64_t>(1, n / 2);
  double scale = static_cast<double>(num_buckets) / max_clock;
  if (!(scale < HUGE_VAL)) scale = 0.0;  // all clocks zero (or a subnormal maximum): one bucket
  std::vector<int32_t> bucket(static_cast<size_t>(n));
  std::vector<int64_t> start(static_cast<size_t>(num_buckets) + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    bucket[i] = static_cast<int32_t>(std::min<int64_t>(num_buckets - 1, static_cast<int64_t>(data[i].clock * scale)));
    ++start[bucket[i] + 1];
  }
  // Only the buckets up to the one holding the k-th smallest clock are needed.
  int64_t last = 0;
  for (int64_t b = 0; b < num_buckets; ++b) {
    start[b + 1] += start[b];
    if (start[b] < k) last = b;
  }
  std::vector<int64_t> next(start.begin(), start.begin() + last + 1);
  std::vector<ClockCandidate> sorted(static_cast<size_t>(start[last + 1]));
  for (int64_t i = 0; i < n; ++i) {
    if (bucket[i] <= last) sorted[next[bucket[i]]++] = data[i];  // stable: index order within a bucket
  }
  std::vector<ClockCandidate> buffer;
  for (int64_t b = 0; b <= last; ++b) {
    ClockCandidate* first = sorted.data() + start[b];
    const int64_t size = start[b + 1] - start[b];
    if (size <= 32) {
      for (int64_t i = 1; i < size; ++i) {  // stable insertion sort
        const ClockCandidate item = first[i];
        int64_t j = i;
        for (; j > 0 && first[j - 1].clock > item.clock; --j) first[j] = first[j - 1];
        first[j] = item;
      }
    } else if (size <= 4096) {  // indices are distinct: ordering by (clock, index) is the stable order
      std::sort(first, first + size, [](const ClockCandidate& a, const ClockCandidate& b) {
        return a.clock < b.clock || (a.clock == b.clock && a.index < b.index);
      });
    } else {
      buffer.resize(static_cast<size_t>(size));
      sort_candidates(first, size, buffer.data());
    }
  }
  for (int64_t j = 0; j < k; ++j) out[j] = sorted[j].index;
}

}  // namespace cpu
}  // namespace proxyfast
