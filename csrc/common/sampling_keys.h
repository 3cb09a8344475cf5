// Efraimidis-Spirakis keys for weighted sampling without replacement.
//
// Drawing k items one after another, each with probability proportional to the weights
// of the items not yet drawn, has the same distribution as taking the k smallest
// exponential clocks E_i / w_i (E_i ~ Exp(1)), in increasing order of the clock; this is
// the key log(u_i) / w_i of Efraimidis and Spirakis with the sign flipped. The clocks
// use only reproducible arithmetic, so every device ranks the items identically.
#pragma once

#include <cstdint>

#include "det_math.h"
#include "macros.h"
#include "philox.h"

namespace proxyfast {

// Philox counter word that separates independent uses of one seed.
enum SampleStream : uint32_t {
  kStreamSelection = 0,
  kStreamShuffle = 1,
};

// The clock of an item with uniform u: +inf for a zero weight (never drawn); negative
// or NaN for a negative or NaN weight, and +0 for an infinite one, so that callers can
// detect invalid weights. A positive weight so small (below ~1e-307) that E / w
// overflows gets the largest finite clock instead: it is drawn last, but it can be drawn.
PF_HOST_DEVICE PF_FORCE_INLINE double clock_from_uniform(double weight, double u) {
  const double clock = det_div(-det_log(u), weight);
  const double capped = clock > 1.7976931348623157e308 ? 1.7976931348623157e308 : clock;  // NaN stays NaN
  return weight == 0.0 ? bits_double(0x7FF0000000000000ull) : capped;
}

// The clock of item `index`.
PF_HOST_DEVICE inline double exponential_clock(double weight, uint64_t seed, uint64_t index, uint32_t stream) {
  return clock_from_uniform(weight, philox_uniform_open01(seed, index, stream));
}

}  // namespace proxyfast
