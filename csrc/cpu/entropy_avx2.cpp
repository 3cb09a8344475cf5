// The entropy fast path compiled for AVX2 with FMA and F16C (x86-64-v3), chosen at run
// time by entropy_kernel.cpp on processors without AVX-512 or when asked for.
#include "cpu_dispatch.h"

#if PF_X86_KERNELS
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "../common/entropy_math.h"
#include "../common/half.h"
#include "entropy_kernel.h"

PF_BEGIN_TARGET_AVX2

namespace proxyfast {
namespace cpu {
namespace {

struct Avx2 {
  using F = __m256;
  using D = __m256d;
  using M = __m256;  // all-ones lanes where true
  static constexpr int kWidth = 8;

  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load(const Half16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static F load(const BFloat16* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static F load_tail(const float* p, int64_t n, float fill) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lanes);
    return _mm256_blendv_ps(set1(fill), _mm256_maskload_ps(p, mask), _mm256_castsi256_ps(mask));
  }
  template <typename T>  // fp16, bf16: through a buffer (no 16-bit masked loads in AVX2)
  static F load_tail(const T* p, int64_t n, float fill) {
    float buffer[kWidth];
    for (int l = 0; l < kWidth; ++l) buffer[l] = l < n ? to_float(p[l]) : fill;
    return load(buffer);
  }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static D dzero() { return _mm256_setzero_pd(); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static M less(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static F add_where(F acc, M mask, F v) { return _mm256_add_ps(acc, _mm256_and_ps(mask, v)); }

  // As Avx512::exp_clamped; 2^n from the low bits of the rounded sum, placed in the
  // exponent field (n >= -126 for d >= kEntropyExpFloor).
  static F exp_clamped(F d) {
    const F magic = set1(12582912.0f);
    const F shifted = _mm256_fmadd_ps(d, set1(1.44269504088896341f), magic);
    const F n = _mm256_sub_ps(shifted, magic);
    F r = _mm256_fnmadd_ps(n, set1(0.693145751953125f), d);
    r = _mm256_fnmadd_ps(n, set1(1.428606820309417232e-6f), r);
    F p = set1(kExpC5);
    p = _mm256_fmadd_ps(p, r, set1(kExpC4));
    p = _mm256_fmadd_ps(p, r, set1(kExpC3));
    p = _mm256_fmadd_ps(p, r, set1(kExpC2));
    p = _mm256_fmadd_ps(p, r, set1(kExpC1));
    p = _mm256_fmadd_ps(p, r, set1(1.0f));
    // The low mantissa bits of `shifted` hold n + 2^22 (two's complement): adding 127 - 2^22
    // and shifting by 23 leaves the biased exponent n + 127.
    const __m256i biased = _mm256_add_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(127 - (1 << 22)));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23)));
  }
  static D widen_add(D acc, F v) {
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  static float hmax(F v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  static float hsum(F v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  static double hsum(D v) {
    __m128d x = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    x = _mm_add_sd(x, _mm_unpackhi_pd(x, x));
    return _mm_cvtsd_f64(x);
  }
};

#include "entropy_simd.h"

}  // namespace

template <typename T>
void entropy_rows_avx2(const T* logits, int64_t num_classes, int64_t row_stride, int64_t row_begin,
                       int64_t row_end, float* entropy, float* log10_entropy, float* scratch) {
  entropy_rows_simd<Avx2>(logits, num_classes, row_stride, row_begin, row_end, entropy, log10_entropy, scratch);
}

template void entropy_rows_avx2<float>(const float*, int64_t, int64_t, int64_t, int64_t, float*, float*, float*);
template void entropy_rows_avx2<Half16>(const Half16*, int64_t, int64_t, int64_t, int64_t, float*, float*, float*);
template void entropy_rows_avx2<BFloat16>(const BFloat16*, int64_t, int64_t, int64_t, int64_t, float*, float*,
                                          float*);

}  // namespace cpu
}  // namespace proxyfast

PF_END_TARGET

#endif  // PF_X86_KERNELS
