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
constexpr int64_t kMinChunksPerThread = 4;

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
template <typename Weights>
Candidates gather_candidates(Weights weights, int64_t n, uint64_t seed, uint32_t stream, ClockThreshold threshold) {
  const int64_t num_chunks = (n + kChunk - 1) / kChunk;
  const int64_t capacity = std::min<int64_t>(
      kChunk, static_cast<int64_t>(std::ceil(static_cast<double>(kChunk) * threshold.fraction * 1.25)) + 256);
  Candidates result{std::unique_ptr<ClockCandidate[]>(new ClockCandidate[static_cast<size_t>(num_chunks * capacity)]),
                    0, 0, 0, false};
  std::unique_ptr<CandidateCounts[]> counts(new CandidateCounts[static_cast<size_t>(num_chunks)]);
  // Threads only from a few chunks on: for less work, starting them costs more than it saves.
  at::parallel_for(0, num_chunks, kMinChunksPerThread, [&](int64_t first, int64_t last) {
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

template <typename Weights>
void sample_into(Weights weights, int64_t n, int64_t k, uint64_t seed, uint32_t stream, int64_t* out) {
  Candidates candidates = gather_candidates(weights, n, seed, stream, clock_threshold(weights, n, k, seed, stream));
  check_sample_counts(candidates.invalid, candidates.positive, k);
  if (candidates.overflowed || candidates.size < k) {  // the threshold missed: keep every positive weight
    candidates = gather_candidates(weights, n, seed, stream, ClockThreshold{HUGE_VAL, 1.0});
  }
  smallest_in_order(candidates.data.get(), candidates.size, k, out);
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

// weighted_sample(bin_weights[bin_ids], k, seed, stream) without the N weights.
at::Tensor weighted_sample_by_bin_cpu(const at::Tensor& bin_ids, const at::Tensor& bin_weights, int64_t k,
                                      int64_t seed, int64_t stream) {
  TORCH_CHECK(bin_ids.dim() == 1 && bin_ids.scalar_type() == at::kInt, "proxyfast: bin_ids must be 1-D int32");
  TORCH_CHECK(bin_weights.dim() == 1 && bin_weights.scalar_type() == at::kDouble,
              "proxyfast: bin_weights must be 1-D float64");
  TORCH_CHECK(seed >= 0, "proxyfast: seed must be non-negative, got ", seed);
  TORCH_CHECK(stream >= 0 && stream <= 0xFFFFFFFFll, "proxyfast: stream must fit in 32 bits, got ", stream);
  const at::Tensor ids = bin_ids.contiguous();
  const at::Tensor table = bin_weights.contiguous();
  const int64_t n = ids.numel();
  TORCH_CHECK(n < (int64_t{1} << 31), "proxyfast: at most 2^31 - 1 items, got ", n);
  TORCH_CHECK(k >= 0 && k <= n, "proxyfast: k must be in [0, ", n, "], got ", k);
  const int32_t* id_data = ids.const_data_ptr<int32_t>();
  const int64_t n_bins = table.numel();
  const bool in_range = at::parallel_reduce(0, n, int64_t{1} << 16, true, [&](int64_t begin, int64_t end, bool ok) {
    for (int64_t i = begin; i < end; ++i) ok &= id_data[i] >= 0 && id_data[i] < n_bins;
    return ok;
  }, [](bool a, bool b) { return a && b; });
  TORCH_CHECK(in_range, "proxyfast: bin_ids must lie in [0, ", n_bins, ")");
  at::Tensor out = at::empty({k}, ids.options().dtype(at::kLong));
  sample_into(BinWeights{id_data, table.const_data_ptr<double>()}, n, k, static_cast<uint64_t>(seed),
              static_cast<uint32_t>(stream), out.mutable_data_ptr<int64_t>());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(proxyfast, CPU, m) {
  m.impl("weighted_sample", &weighted_sample_cpu);
  m.impl("weighted_sample_by_bin", &weighted_sample_by_bin_cpu);
}

}  // namespace cpu
}  // namespace proxyfast
