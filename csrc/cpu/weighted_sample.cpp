// CPU glue of the weighted_sample op.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "../checks.h"
#include "sampling_kernel.h"

namespace proxyfast {
namespace cpu {
namespace {

// Items per chunk; each chunk writes its candidates into its own slice of one buffer.
constexpr int64_t kChunk = int64_t{1} << 16;

struct Candidates {
  std::unique_ptr<ClockCandidate[]> data;  // uninitialised: pages are touched only once
  int64_t size;
  int64_t positive;
  int64_t invalid;
  bool overflowed;
};

// Candidates under `threshold` in index order, whatever the number of threads. Each
// chunk gets room for `fraction` of its items plus a margin; `overflowed` reports a
// chunk that needed more.
template <typename W>
Candidates gather_candidates(const W* weights, int64_t n, uint64_t seed, uint32_t stream, ClockThreshold threshold) {
  const int64_t num_chunks = (n + kChunk - 1) / kChunk;
  const int64_t capacity = std::min<int64_t>(
      kChunk, static_cast<int64_t>(std::ceil(static_cast<double>(kChunk) * threshold.fraction * 1.25)) + 256);
  Candidates result{std::unique_ptr<ClockCandidate[]>(new ClockCandidate[static_cast<size_t>(num_chunks * capacity)]),
                    0, 0, 0, false};
  std::unique_ptr<CandidateCounts[]> counts(new CandidateCounts[static_cast<size_t>(num_chunks)]);
  at::parallel_for(0, num_chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      counts[c] = collect_candidates(weights, c * kChunk, std::min(n, (c + 1) * kChunk), seed, stream,
                                     threshold.clock, result.data.get() + c * capacity, capacity);
    }
  });
  for (int64_t c = 0; c < num_chunks; ++c) {
    result.positive += counts[c].positive;
    result.invalid += counts[c].invalid;
    if (counts[c].kept < 0) {
      result.overflowed = true;
      continue;
    }
    std::memmove(result.data.get() + result.size, result.data.get() + c * capacity,
                 static_cast<size_t>(counts[c].kept) * sizeof(ClockCandidate));
    result.size += counts[c].kept;
  }
  return result;
}

template <typename W>
void sample_into(const W* weights, int64_t n, int64_t k, uint64_t seed, uint32_t stream, int64_t* out) {
  Candidates candidates = gather_candidates(weights, n, seed, stream, clock_threshold(weights, n, k, seed, stream));
  check_sample_counts(candidates.invalid, candidates.positive, k);
  if (candidates.overflowed || candidates.size < k) {  // the threshold missed: keep every positive weight
    candidates = gather_candidates(weights, n, seed, stream, ClockThreshold{HUGE_VAL, 1.0});
  }
  std::unique_ptr<ClockCandidate[]> buffer(new ClockCandidate[static_cast<size_t>(candidates.size)]);
  sort_candidates(candidates.data.get(), candidates.size, buffer.get());
  for (int64_t j = 0; j < k; ++j) out[j] = candidates.data[j].index;
}

at::Tensor weighted_sample_cpu(const at::Tensor& weights, int64_t k, int64_t seed, int64_t stream) {
  check_sample_args(weights, k, seed, stream);
  const at::Tensor contiguous = weights.contiguous();
  const int64_t n = contiguous.numel();
  at::Tensor out = at::empty({k}, weights.options().dtype(at::kLong));
  if (contiguous.scalar_type() == at::kFloat) {
    sample_into(contiguous.const_data_ptr<float>(), n, k, static_cast<uint64_t>(seed), static_cast<uint32_t>(stream),
                out.mutable_data_ptr<int64_t>());
  } else {
    sample_into(contiguous.const_data_ptr<double>(), n, k, static_cast<uint64_t>(seed),
                static_cast<uint32_t>(stream), out.mutable_data_ptr<int64_t>());
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(proxyfast, CPU, m) { m.impl("weighted_sample", &weighted_sample_cpu); }

}  // namespace cpu
}  // namespace proxyfast
