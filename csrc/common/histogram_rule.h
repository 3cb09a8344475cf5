// The bin of a log10 entropy (docs/design.md, "The histogram"): edges are lo + b * w, bin b holds
// lo + b*w <= l < lo + (b+1)*w, and the last bin also holds its top edge `top`.
#pragma once

#include <cmath>
#include <cstdint>

#include "det_math.h"
#include "macros.h"

namespace proxyfast {

// Edge b exactly as numpy computes lo + np.arange(n + 1) * w (one multiply, one add).
PF_HOST_DEVICE PF_FORCE_INLINE double bin_edge(double lo, double width, int64_t b) {
  return det_add(lo, det_mul(static_cast<double>(b), width));
}

// -1 when l is NaN or outside [lo, top].
PF_HOST_DEVICE inline int32_t bin_index(double l, double lo, double width, int32_t n_bins, double top) {
  if (!(l >= lo && l <= top)) return -1;
  double guess = floor((l - lo) / width);
  if (guess < 0.0) guess = 0.0;
  if (guess > static_cast<double>(n_bins - 1)) guess = static_cast<double>(n_bins - 1);
  int32_t b = static_cast<int32_t>(guess);
  // The quotient can be off by one either way; settle it against the edges themselves.
  while (b > 0 && l < bin_edge(lo, width, b)) --b;
  while (b < n_bins - 1 && l >= bin_edge(lo, width, b + 1)) ++b;
  return b;
}

}  // namespace proxyfast
