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
