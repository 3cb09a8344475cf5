// Softmax entropy of one row of logits, accurate to full relative precision for any
// finite margin (docs/design.md, "Data entropy").
//
// Let m1 be the largest logit, m2 the largest of the others (m2 = m1 on a tie), and
// g = m2 - m1 <= 0. Scale every non-argmax term by the second largest logit:
//   delta2 = sum_{i != argmax} exp(z_i - m2)               in [1, C - 1]
//   u2     = sum_{i != argmax} exp(z_i - m2) * (m2 - z_i)  >= 0
// With delta = exp(g) * delta2 (the usual sum of the non-max softmax numerators),
//   H = log1p(delta) + exp(g) * (u2 - g * delta2) / (1 + delta)
//     = exp(g) * [delta2 * log1p(delta) / delta + (u2 - g * delta2) / (1 + delta)].
// Every term is non-negative (no cancellation) and the bracket is O(C * (1 + |g|)),
// so log H = g + log(bracket) is finite for every finite row even when H itself
// underflows. Terms with z_i - m2 < -87 are evaluated at -87 (exp stays a normal fp32):
// each is below 2^-125 of delta2 >= 1, so the change is far below rounding.
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"

namespace proxyfast {

constexpr float kEntropyExpFloor = -87.0f;

// Running top-2 of a stream of logits; m2 counts a second copy of the maximum.
struct Top2 {
  float m1;
  float m2;
};

PF_HOST_DEVICE PF_FORCE_INLINE Top2 top2_push(Top2 t, float x) {
  return Top2{fmaxf(t.m1, x), fmaxf(t.m2, fminf(t.m1, x))};
}

PF_HOST_DEVICE PF_FORCE_INLINE Top2 top2_merge(Top2 a, Top2 b) {
  return Top2{fmaxf(a.m1, b.m1), fmaxf(fminf(a.m1, b.m1), fmaxf(a.m2, b.m2))};
}

// Entropy (nats) and log10 entropy from the row statistics. `ties` counts the logits
// equal to m1; the sums cover only logits strictly below m1.
struct EntropyResult {
  float entropy;
  float log10_entropy;
};

PF_HOST_DEVICE inline EntropyResult entropy_from_sums(float m1, float m2, double delta2_below_max,
                                                      double u2, int64_t ties) {
  // A tie at the top means m2 == m1 and each extra copy adds exp(0) = 1 to delta2.
  const double delta2 = delta2_below_max + static_cast<double>(ties > 1 ? ties - 1 : 0);
  const double g = static_cast<double>(m2) - static_cast<double>(m1);
  const double scale = exp(g);
  const double delta = scale * delta2;
  const double log1p_ratio = delta > 0.0 ? log1p(delta) / delta : 1.0;
  const double bracket = delta2 * log1p_ratio + (u2 - g * delta2) / (1.0 + delta);
  const double log_entropy = g + log(bracket);
  constexpr double kInvLn10 = 0.43429448190325182765;
  return EntropyResult{static_cast<float>(scale * bracket), static_cast<float>(log_entropy * kInvLn10)};
}

PF_HOST_DEVICE PF_FORCE_INLINE EntropyResult entropy_nan() {
  return EntropyResult{NAN, NAN};
}

}  // namespace proxyfast
