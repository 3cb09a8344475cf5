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

template <typename Weights>
PF_CLONE_INLINE CandidateCounts collect_loop(Weights weights, int64_t begin, int64_t end, uint64_t seed,
                                             uint32_t stream, double threshold, ClockCandidate* out,
                                             int64_t capacity) {
  CandidateCounts counts{0, 0, 0};
  double clocks[kBlock];
  ClockCandidate kept[kBlock];
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t stop = std::min(start + kBlock, end);
    clocks_loop(weights, start, stop, seed, stream, clocks);
    // Clocks are E / w with E > 0: +inf for w = 0, 0 for w = +inf, NaN or negative for
    // a NaN or negative w. Branch-free compaction: every clock is written, the slot
    // advances only for the kept ones (which are too random to predict).
    int64_t num_kept = 0;
    for (int64_t i = start; i < stop; ++i) {
      const double clock = clocks[i - start];
      const bool positive = clock > 0.0 && clock < HUGE_VAL;
      counts.positive += positive ? 1 : 0;
      counts.invalid += clock > 0.0 ? 0 : 1;
      kept[num_kept] = ClockCandidate{clock, i};
      num_kept += (positive && clock <= threshold) ? 1 : 0;
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

}  // namespace

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
  std::vector<double> sample;
  sample.reserve(kSampleSize);
  for (int64_t j = 0; j < kSampleSize; ++j) {
    const int64_t i = j * n / kSampleSize;
    const double clock = exponential_clock(static_cast<double>(weights[i]), seed, static_cast<uint64_t>(i), stream);
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

}  // namespace cpu
}  // namespace proxyfast
