// The entropy fast path compiled for AVX-512 (x86-64-v4: F, BW, DQ, VL), chosen at run
// time by entropy_kernel.cpp on processors that have it.
#include "cpu_dispatch.h"

#if PF_X86_KERNELS
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own AVX-512 intrinsics (the undefined vectors their masked
// forms start from), not about this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "../common/entropy_math.h"
#include "../common/half.h"
#include "entropy_kernel.h"

PF_BEGIN_TARGET_AVX512

namespace proxyfast {
namespace cpu {
namespace {

struct Avx512 {
  using F = __m512;
  using D = __m512d;
  using M = __mmask16;
  static constexpr int kWidth = 16;

  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load(const Half16* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load(const BFloat16* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  static F load_tail(const float* p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(set1(fill), tail_mask(n), p);
  }
  static F load_tail(const Half16* p, int64_t n, float fill) {
    const __mmask16 mask = tail_mask(n);
    const F x = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
    return _mm512_mask_blend_ps(mask, set1(fill), x);
  }
  static F load_tail(const BFloat16* p, int64_t n, float fill) {
    const __mmask16 mask = tail_mask(n);
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p));
    return _mm512_mask_blend_ps(mask, set1(fill), _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
  static __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static D dzero() { return _mm512_setzero_pd(); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static M less(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static F add_where(F acc, M mask, F v) { return _mm512_mask_add_ps(acc, mask, acc, v); }

  // exp(d) for d in [kEntropyExpFloor, 0], within 2 ulp: d = n ln2 + r with n rounded
  // by adding 1.5 * 2^23 inside an FMA, |r| <= ln2 / 2, exp(r) by the fitted polynomial
  // of degree 5 (entropy_kernel.h), times 2^n by scalef.
  static F exp_clamped(F d) {
    const F magic = set1(12582912.0f);
    const F n = _mm512_sub_ps(_mm512_fmadd_ps(d, set1(1.44269504088896341f), magic), magic);
    F r = _mm512_fnmadd_ps(n, set1(0.693145751953125f), d);  // ln 2, high bits: exact product
    r = _mm512_fnmadd_ps(n, set1(1.428606820309417232e-6f), r);
    F p = set1(kExpC5);
    p = _mm512_fmadd_ps(p, r, set1(kExpC4));
    p = _mm512_fmadd_ps(p, r, set1(kExpC3));
    p = _mm512_fmadd_ps(p, r, set1(kExpC2));
    p = _mm512_fmadd_ps(p, r, set1(kExpC1));
    p = _mm512_fmadd_ps(p, r, set1(1.0f));
    return _mm512_scalef_ps(p, n);
  }
  static D widen_add(D acc, F v) {
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  static float hmax(F v) { return _mm512_reduce_max_ps(v); }
  static float hsum(F v) { return _mm512_reduce_add_ps(v); }
  static double hsum(D v) { return _mm512_reduce_add_pd(v); }
};

#include "entropy_simd.h"

}  // namespace

template <typename T>
void entropy_rows_avx512(const T* logits, int64_t num_classes, int64_t row_stride, int64_t row_begin,
                         int64_t row_end, float* entropy, float* log10_entropy, float* scratch) {
  entropy_rows_simd<Avx512>(logits, num_classes, row_stride, row_begin, row_end, entropy, log10_entropy, scratch);
}

template void entropy_rows_avx512<float>(const float*, int64_t, int64_t, int64_t, int64_t, float*, float*, float*);
template void entropy_rows_avx512<Half16>(const Half16*, int64_t, int64_t, int64_t, int64_t, float*, float*, float*);
template void entropy_rows_avx512<BFloat16>(const BFloat16*, int64_t, int64_t, int64_t, int64_t, float*, float*,
                                            float*);

}  // namespace cpu
}  // namespace proxyfast

PF_END_TARGET

#endif  // PF_X86_KERNELS
