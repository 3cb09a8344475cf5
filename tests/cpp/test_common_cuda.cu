// The shared host/device helpers must give bit-identical results on the GPU and the
// CPU: the sampler's CPU-vs-CUDA equality rests on it. Exit code 77 (skipped) when no
// CUDA device is present.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/half.h"
#include "common/histogram_rule.h"
#include "common/sampling_keys.h"

using namespace proxyfast;

namespace {

constexpr int kItems = 1 << 20;

__global__ void device_values(double* clocks, int32_t* bins, float* halves) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= kItems) return;
  const double weight = 1.0 + (i % 977) * 0.125;
  clocks[i] = exponential_clock(weight, 0x1234567890ull, static_cast<uint64_t>(i), kStreamSelection);
  const double value = -30.0 + 31.0 * philox_uniform_open01(99, static_cast<uint64_t>(i), kStreamShuffle);
  bins[i] = bin_index(value, -30.2, 0.2, 156, bin_edge(-30.2, 0.2, 156));
  halves[i] = to_float(Half16{static_cast<uint16_t>(i & 0xffff)});
}

bool ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(status));
  return status == cudaSuccess;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  double* d_clocks;
  int32_t* d_bins;
  float* d_halves;
  if (!ok(cudaMalloc(&d_clocks, kItems * sizeof(double)), "malloc") ||
      !ok(cudaMalloc(&d_bins, kItems * sizeof(int32_t)), "malloc") ||
      !ok(cudaMalloc(&d_halves, kItems * sizeof(float)), "malloc")) {
    return 1;
  }
  device_values<<<(kItems + 255) / 256, 256>>>(d_clocks, d_bins, d_halves);
  if (!ok(cudaGetLastError(), "launch") || !ok(cudaDeviceSynchronize(), "kernel")) return 1;
  std::vector<double> clocks(kItems);
  std::vector<int32_t> bins(kItems);
  std::vector<float> halves(kItems);
  cudaMemcpy(clocks.data(), d_clocks, kItems * sizeof(double), cudaMemcpyDeviceToHost);
  cudaMemcpy(bins.data(), d_bins, kItems * sizeof(int32_t), cudaMemcpyDeviceToHost);
  cudaMemcpy(halves.data(), d_halves, kItems * sizeof(float), cudaMemcpyDeviceToHost);

  int mismatches = 0;
  for (int i = 0; i < kItems; ++i) {
    const double weight = 1.0 + (i % 977) * 0.125;
    const double clock = exponential_clock(weight, 0x1234567890ull, static_cast<uint64_t>(i), kStreamSelection);
    const double value = -30.0 + 31.0 * philox_uniform_open01(99, static_cast<uint64_t>(i), kStreamShuffle);
    const int32_t bin = bin_index(value, -30.2, 0.2, 156, bin_edge(-30.2, 0.2, 156));
    const float half = to_float(Half16{static_cast<uint16_t>(i & 0xffff)});
    const bool same_half = std::memcmp(&half, &halves[i], sizeof(float)) == 0;
    if (std::memcmp(&clock, &clocks[i], sizeof(double)) != 0 || bin != bins[i] || !same_half) {
      if (++mismatches <= 5) std::fprintf(stderr, "item %d: clock %.17g vs %.17g, bin %d vs %d\n", i, clock, clocks[i], bin, bins[i]);
    }
  }
  cudaFree(d_clocks);
  cudaFree(d_bins);
  cudaFree(d_halves);
  if (mismatches != 0) {
    std::fprintf(stderr, "%d of %d items differ between device and host\n", mismatches, kItems);
    return 1;
  }
  std::printf("device and host agree on %d items\n", kItems);
  return 0;
}
