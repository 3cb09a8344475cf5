// CPU kernel half of weighted sampling without replacement: torch-free.
//
// The k smallest exponential clocks (common/sampling_keys.h) are found without an
// N-sized array: a deterministic sample of the clocks gives a threshold that a little
// more than k clocks fall under; only those are kept (in index order), then the k
// smallest are ordered stably by clock. A cheap lower bound on each clock rejects most
// items before their exact clock (a logarithm and a division) is computed. If fewer than
// k fall under the threshold, the caller repeats with an infinite one, so the result is
// always the exact k smallest: the threshold and the bound change the work, never the indices.
#pragma once

#include <cstdint>

namespace proxyfast {
namespace cpu {

// The weight of item i is bin_weights[bin_ids[i]]: items share the weight of their bin.
struct BinWeights {
  const int32_t* bin_ids;
  const double* bin_weights;
  double operator[](int64_t i) const { return bin_weights[bin_ids[i]]; }
};

struct ClockCandidate {
  double clock;
  int64_t index;
};

// clocks[i - begin] = the clock of item i, for i in [begin, end).
void exponential_clocks(const float* weights, int64_t begin, int64_t end, uint64_t seed, uint32_t stream,
                        double* clocks);
void exponential_clocks(const double* weights, int64_t begin, int64_t end, uint64_t seed, uint32_t stream,
                        double* clocks);

// A clock value that about k of the n items fall under, with a margin of 6 standard
// deviations, and the expected fraction of items under it; +inf (and fraction 1) when
// the sample cannot tell (small n, or k close to the number of positive weights).
struct ClockThreshold {
  double clock;
  double fraction;
};
// Weights: const float*, const double* or BinWeights.
template <typename Weights>
ClockThreshold clock_threshold(Weights weights, int64_t n, int64_t k, uint64_t seed, uint32_t stream);

struct CandidateCounts {
  int64_t kept;      // candidates written, or -1 when they did not fit in the capacity
  int64_t positive;  // items with a positive, finite weight
  int64_t invalid;   // items with a negative, infinite or NaN weight
};

// Writes (clock, i) for every item i in [begin, end) whose clock is finite and
// <= threshold, in increasing i, to out[0, capacity), and counts the weights by kind.
CandidateCounts collect_candidates(const float* weights, int64_t begin, int64_t end, uint64_t seed, uint32_t stream,
                                   double threshold, ClockCandidate* out, int64_t capacity);
CandidateCounts collect_candidates(const double* weights, int64_t begin, int64_t end, uint64_t seed, uint32_t stream,
                                   double threshold, ClockCandidate* out, int64_t capacity);
CandidateCounts collect_candidates(BinWeights weights, int64_t begin, int64_t end, uint64_t seed, uint32_t stream,
                                   double threshold, ClockCandidate* out, int64_t capacity);

// Sorts data[0, n) by clock, keeping the given order among equal clocks (stable LSD radix
// sort on the clock's bits, which order like the values for non-negative doubles).
// `buffer` must hold n items.
void sort_candidates(ClockCandidate* data, int64_t n, ClockCandidate* buffer);

// out[0, k) = the indices of the k smallest of data[0, n) (k <= n) by clock, earlier
// items first among equal clocks: the first k of sort_candidates, without sorting the rest.
void smallest_in_order(const ClockCandidate* data, int64_t n, int64_t k, int64_t* out);

}  // namespace cpu
}  // namespace proxyfast
