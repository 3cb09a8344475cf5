// Portability macros for code shared by the CPU and CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define PF_HOST_DEVICE __host__ __device__
#define PF_FORCE_INLINE __forceinline__
#else
#define PF_HOST_DEVICE
#define PF_FORCE_INLINE inline
#endif
