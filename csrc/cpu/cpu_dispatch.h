// Load-time dispatch of hot CPU loops to the widest vector unit the processor has.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// One clone each for AVX-512 (x86-64-v4), AVX2 and baseline x86-64, chosen by an ifunc
// resolver when the library loads. The loops are written branch-free so that the
// compiler vectorizes every clone.
#define PF_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define PF_CPU_CLONES
#endif

// For the loops that the cloned functions call: inlined, they are compiled once per
// clone; called, they would run the baseline code.
#if defined(__GNUC__)
#define PF_CLONE_INLINE inline __attribute__((always_inline))
#else
#define PF_CLONE_INLINE inline
#endif

// Kernels written with intrinsics for one instruction set each (the entropy fast path):
// every function between PF_BEGIN_TARGET_* and PF_END_TARGET is compiled for that set,
// and the caller picks one at run time (entropy_kernel.cpp). Headers must be included
// before the region, so that no inline function they define is compiled for the wider
// set and then shared, through the linker, with code that runs on any processor.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define PF_X86_KERNELS 1
#if defined(__clang__)
#define PF_BEGIN_TARGET_AVX512                                                                              \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512dq,avx512vl,fma,f16c\"))), \
apply_to = function)")
#define PF_BEGIN_TARGET_AVX2 \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c\"))), apply_to = function)")
#define PF_END_TARGET _Pragma("clang attribute pop")
#else
#define PF_BEGIN_TARGET_AVX512 \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512dq,avx512vl,fma,f16c\")")
#define PF_BEGIN_TARGET_AVX2 _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define PF_END_TARGET _Pragma("GCC pop_options")
#endif
#else
#define PF_X86_KERNELS 0
#endif
