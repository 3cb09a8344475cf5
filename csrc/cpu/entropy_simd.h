// The single-precision fast path of the entropy op, written once over a vector type V
// (entropy_avx512.cpp, entropy_avx2.cpp). Each of those files includes this header
// inside its target region, after everything it includes, so that only this code is
// compiled for that instruction set.
//
// Per row, two passes over the logits (the second from L1/L2):
//   1. the maximum m and a poison sum (x * 0: NaN once a logit is inf or NaN);
//   2. with d = x - m <= 0: delta = sum_{d < 0} exp(d), u = sum exp(d) * -d, and the
//      number of logits below m; ties = C - below.
// Then H = log1p(delta') + u / (1 + delta'), delta' = delta + ties - 1
// (common/entropy_math.h with m2 = m1): every term is non-negative, so fp32 terms with
// fp64 sums keep H to full relative precision. d is clamped at kEntropyExpFloor so exp
// stays a normal float; the clamped terms are below C * 2^-125 while delta' >=
// kFastPathMinDelta = 2^-64, so they do not show. Rows below that bound (margins above
// ~44) and rows with a non-finite logit take the exact path, entropy_row().
//
// V provides: F (vector of kWidth floats), M (lane mask), D (vector of doubles); load
// from float, Half16 and BFloat16, and load_tail (the last n < kWidth, other lanes set
// to a fill value); set1, max, sub, fnmadd, less, add_where, exp_clamped,
// widen_add (F into D), hmax, hsum (F and D).

template <class V, typename T>
void entropy_rows_simd(const T* logits, int64_t num_classes, int64_t row_stride, int64_t row_begin,
                       int64_t row_end, float* entropy, float* log10_entropy, float* scratch) {
  using F = typename V::F;
  using D = typename V::D;
  constexpr int64_t kWidth = V::kWidth;
  // Vectors summed in fp32 before they are added to the fp64 sums: at most 16 terms per
  // lane, relative rounding below 1e-6.
  constexpr int64_t kBlock = 16 * kWidth;
  const int64_t full = num_classes - num_classes % kWidth;
  const int64_t rest = num_classes - full;
  const F zero = V::set1(0.0f);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const T* row = logits + r * row_stride;

    F top = V::set1(-__builtin_inff());
    F poison = zero;
    for (int64_t i = 0; i < full; i += kWidth) {
      const F x = V::load(row + i);
      top = V::max(top, x);
      poison = V::fmadd(x, zero, poison);
    }
    if (rest > 0) {  // padded with the row's first logit, which changes neither result
      const F x = V::load_tail(row + full, rest, to_float(row[0]));
      top = V::max(top, x);
      poison = V::fmadd(x, zero, poison);
    }
    const float m = V::hmax(top);
    bool exact = V::hsum(poison) != 0.0f;  // NaN compares unequal to everything

    double delta = 0.0, u = 0.0, below = 0.0;
    if (!exact) {
      const F vm = V::set1(m);
      const F one = V::set1(1.0f);
      D delta_sum = V::dzero(), u_sum = V::dzero(), below_sum = V::dzero();
      for (int64_t start = 0; start < num_classes; start += kBlock) {
        const int64_t stop = start + kBlock < full ? start + kBlock : full;
        F block_delta = zero, block_u = zero, block_below = zero;
        auto accumulate = [&](F x) {
          const F d = V::sub(x, vm);
          const typename V::M lt = V::less(d, zero);
          const F dc = V::max(d, V::set1(kEntropyExpFloor));
          const F e = V::exp_clamped(dc);
          block_delta = V::add_where(block_delta, lt, e);
          block_u = V::fnmadd(e, dc, block_u);  // + e * -d; 0 at d = 0
          block_below = V::add_where(block_below, lt, one);
        };
        for (int64_t i = start; i < stop; i += kWidth) accumulate(V::load(row + i));
        if (stop == full && rest > 0) {  // padded with m: not below m, and no u
          accumulate(V::load_tail(row + full, rest, m));
        }
        delta_sum = V::widen_add(delta_sum, block_delta);
        u_sum = V::widen_add(u_sum, block_u);
        below_sum = V::widen_add(below_sum, block_below);
        if (stop == full) break;
      }
      delta = V::hsum(delta_sum);
      u = V::hsum(u_sum);
      below = V::hsum(below_sum);
      const int64_t ties = num_classes - static_cast<int64_t>(below);
      exact = delta + static_cast<double>(ties - 1) < kFastPathMinDelta;
      if (!exact) {  // entropy_from_sums() at m2 = m1, without its exp(0)
        const double delta_all = delta + static_cast<double>(ties - 1);
        const double h = log1p(delta_all) + u / (1.0 + delta_all);
        entropy[r] = static_cast<float>(h);
        log10_entropy[r] = static_cast<float>(log10(h));
      }
    }
    if (exact) {
      const float* z = reinterpret_cast<const float*>(row);
      if (!std::is_same<T, float>::value) {
        for (int64_t c = 0; c < num_classes; ++c) scratch[c] = to_float(row[c]);
        z = scratch;
      }
      entropy_row(z, num_classes, entropy + r, log10_entropy + r);
    }
  }
}
