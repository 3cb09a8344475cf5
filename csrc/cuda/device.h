// What the CUDA sources take from CUDA and c10, in one place. Compiled by nvcc it is the
// real thing; with PF_HOST_MODEL defined the same sources compile as host C++ against
// host_model.h, which runs their kernels and glue on the CPU (docs/cuda.md).
#pragma once

#if defined(PF_HOST_MODEL)
#include "host_model.h"
#else
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif
#include <torch/library.h>

#include <cstddef>
#include <utility>

namespace proxyfast {
namespace cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
// The largest gridDim.y the kernels are launched with, beyond which they loop (the device
// allows 65,535). The host model takes a small one, so that the loops run in its tests.
#if defined(PF_HOST_MODEL)
constexpr unsigned int kMaxGridY = 3;
#else
constexpr unsigned int kMaxGridY = 65535;
#endif

// kernel<<<grid, block, shared_bytes, stream>>>(args...), in a form the host model can
// provide too.
#if defined(PF_HOST_MODEL)
using host_model::launch;
#else
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
            Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
}
#endif

// The block's dynamic shared memory (the launch's shared_bytes), as an array of T.
template <typename T>
__device__ __forceinline__ T* dynamic_shared() {
#if defined(PF_HOST_MODEL)
  return reinterpret_cast<T*>(host_model::active_block()->dynamic_shared);
#else
  extern __shared__ __align__(16) unsigned char dynamic_shared_bytes[];
  return reinterpret_cast<T*>(dynamic_shared_bytes);
#endif
}

}  // namespace cuda
}  // namespace proxyfast

#if defined(PF_HOST_MODEL)
#define PF_CUDA_LIBRARY_IMPL(m)                                                       \
  static void register_host_model(::proxyfast::host_model::Library& m);               \
  TORCH_LIBRARY_FRAGMENT(proxyfast_host_model, library) {                             \
    ::proxyfast::host_model::Library m{library};                                      \
    register_host_model(m);                                                           \
  }                                                                                   \
  static void register_host_model(::proxyfast::host_model::Library& m)
#else
#define PF_CUDA_LIBRARY_IMPL(m) TORCH_LIBRARY_IMPL(proxyfast, CUDA, m)
#endif
