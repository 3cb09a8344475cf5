// Unit tests of the torch-free kernel halves and the shared host/device helpers.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "check.h"
#include "common/det_math.h"
#include "common/fast_divmod.h"
#include "common/half.h"
#include "common/histogram_rule.h"
#include "common/philox.h"
#include "common/sampling_keys.h"
#include "cpu/entropy_kernel.h"
#include "cpu/histogram_kernel.h"
#include "cpu/sampling_kernel.h"

#include <algorithm>

using namespace proxyfast;

namespace {

// Random123's published known-answer vectors for Philox4x32-10.
void test_philox_known_answers() {
  struct Case {
    uint32_t ctr[4], key[2], out[4];
  };
  const Case cases[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Case& c : cases) {
    const Philox4x32Out r = philox4x32_10(c.ctr[0], c.ctr[1], c.ctr[2], c.ctr[3], c.key[0], c.key[1]);
    for (int i = 0; i < 4; ++i) CHECK(r.x[i] == c.out[i], "word %d: %08x != %08x", i, r.x[i], c.out[i]);
  }
}

void test_uniform_in_open_interval() {
  double sum = 0.0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = philox_uniform_open01(12345, static_cast<uint64_t>(i), 0);
    CHECK(u > 0.0 && u < 1.0, "u = %g", u);
    sum += u;
  }
  // Mean of n uniforms: standard error 1/sqrt(12 n) = 6.5e-4; allow 6 of them.
  CHECK(std::fabs(sum / n - 0.5) < 4e-3, "mean %g", sum / n);
}

void test_det_log_accuracy() {
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double worst = 0.0;
  for (int i = 0; i < 200000; ++i) {
    // Log-uniform over (2^-54, 1], the range of the sampler's uniforms.
    const double x = std::exp2(-54.0 * unit(gen));
    const double got = det_log(x);
    const double want = std::log(x);
    const double err = std::fabs(got - want) / std::max(std::fabs(want), 1e-300);
    worst = std::max(worst, err);
  }
  CHECK(worst < 4e-16, "worst relative error %g", worst);
  CHECK(det_log(1.0) == 0.0, "log(1) = %g", det_log(1.0));
}

// Reference binary16 decoding, written the long way.
float half_reference(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  float value;
  if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    value = mantissa == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else {
    value = std::ldexp(static_cast<float>(mantissa + 1024), exponent - 25);
  }
  return sign ? -value : value;
}

void test_half_conversion_exhaustive() {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const float got = to_float(Half16{static_cast<uint16_t>(bits)});
    const float want = half_reference(static_cast<uint16_t>(bits));
    if (std::isnan(want)) {
      CHECK(std::isnan(got), "bits %04x", bits);
    } else {
      CHECK(got == want && std::signbit(got) == std::signbit(want), "bits %04x: %g != %g", bits, got, want);
    }
  }
  CHECK(to_float(BFloat16{0x3f80}) == 1.0f, "bf16 1.0");
  CHECK(to_float(BFloat16{0xc2c8}) == -100.0f, "bf16 -100");
}

// Entropy of a row in long double straight from the definition (fine for small margins).
double entropy_reference(const std::vector<float>& z) {
  long double m = -INFINITY;
  for (float x : z) m = std::max<long double>(m, x);
  long double s = 0;
  for (float x : z) s += std::exp(static_cast<long double>(x) - m);
  long double h = 0;
  for (float x : z) {
    const long double p = std::exp(static_cast<long double>(x) - m) / s;
    if (p > 0) h -= p * std::log(p);
  }
  return static_cast<double>(h);
}

void test_entropy_row_against_definition() {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  for (int64_t c : {2, 3, 17, 31, 33, 255, 256, 257, 1000, 4099}) {
    for (float scale : {0.01f, 1.0f, 5.0f}) {
      std::vector<float> z(static_cast<size_t>(c));
      for (float& x : z) x = scale * normal(gen);
      float h, log10_h;
      cpu::entropy_row(z.data(), c, &h, &log10_h);
      const double want = entropy_reference(z);
      CHECK(std::fabs(h - want) <= 1e-5 * want, "C=%lld scale=%g: %.9g vs %.9g", static_cast<long long>(c), scale, h,
            want);
      CHECK(std::fabs(log10_h - std::log10(want)) <= 1e-5 * std::max(1.0, std::fabs(std::log10(want))), "log10");
    }
  }
}

void test_entropy_row_hard_cases() {
  float h, l;
  // Uniform row: log C, and the tie bookkeeping (all logits equal the maximum).
  std::vector<float> uniform(1000, 3.5f);
  cpu::entropy_row(uniform.data(), 1000, &h, &l);
  CHECK(std::fabs(h - std::log(1000.0)) < 1e-6, "uniform %g", h);
  // Two-way tie at the top with a far third: log 2.
  const float tie[3] = {10.0f, 10.0f, -500.0f};
  cpu::entropy_row(tie, 3, &h, &l);
  CHECK(std::fabs(h - std::log(2.0)) < 1e-7, "tie %g", h);
  // Margin 1000: the entropy underflows fp32 but its log10 is exact:
  // H = e^-1000 (1 + 1000) to first order, log10 H = (-1000 + ln 1001) / ln 10.
  const float far[2] = {1000.0f, 0.0f};
  cpu::entropy_row(far, 2, &h, &l);
  CHECK(h == 0.0f, "underflow %g", h);
  CHECK(std::fabs(l - (-1000.0 + std::log(1001.0)) / std::log(10.0)) < 1e-4, "log10 %g", l);
  // Non-finite logits give NaN.
  const float bad[3] = {0.0f, std::numeric_limits<float>::infinity(), 1.0f};
  cpu::entropy_row(bad, 3, &h, &l);
  CHECK(std::isnan(h) && std::isnan(l), "inf row");
  const float nan_row[2] = {std::numeric_limits<float>::quiet_NaN(), 1.0f};
  cpu::entropy_row(nan_row, 2, &h, &l);
  CHECK(std::isnan(h) && std::isnan(l), "nan row");
}

void test_bin_index_edges() {
  const double lo = -3.0, w = 0.25;
  const int32_t n = 12;
  const double top = lo + n * w;
  for (int32_t b = 0; b < n; ++b) {
    const double edge = bin_edge(lo, w, b);
    CHECK(bin_index(edge, lo, w, n, top) == b, "edge %d", b);
    CHECK(bin_index(std::nextafter(edge, -INFINITY), lo, w, n, top) == (b == 0 ? -1 : b - 1), "below edge %d", b);
  }
  CHECK(bin_index(top, lo, w, n, top) == n - 1, "top edge");
  CHECK(bin_index(std::nextafter(top, INFINITY), lo, w, n, top) == -1, "above top");
  CHECK(bin_index(NAN, lo, w, n, top) == -1, "nan");
  // A width that is not a binary fraction: the id always agrees with the edges.
  std::mt19937_64 gen(11);
  std::uniform_real_distribution<double> dist(-21.0, 1.0);
  const double lo2 = -21.2, w2 = 0.2;
  const int32_t n2 = 111;
  for (int i = 0; i < 100000; ++i) {
    const double v = static_cast<float>(dist(gen));
    const int32_t b = bin_index(v, lo2, w2, n2, bin_edge(lo2, w2, n2));
    if (b < 0) continue;
    CHECK(v >= bin_edge(lo2, w2, b) && (b == n2 - 1 || v < bin_edge(lo2, w2, b + 1)), "v=%.17g b=%d", v, b);
  }
}

void test_count_bins() {
  const int32_t ids[] = {0, 2, 2, -1, 1, 2};
  int64_t counts[3];
  cpu::count_bins(ids, 6, 3, counts);
  CHECK(counts[0] == 1 && counts[1] == 1 && counts[2] == 3, "counts %lld %lld %lld", static_cast<long long>(counts[0]),
        static_cast<long long>(counts[1]), static_cast<long long>(counts[2]));
}

void test_candidates_and_sort() {
  const int64_t n = 1000;
  std::vector<double> weights(n);
  for (int64_t i = 0; i < n; ++i) weights[i] = (i % 3 == 0) ? 0.0 : 1.0 + static_cast<double>(i % 7);
  std::vector<double> clocks(n);
  cpu::exponential_clocks(weights.data(), 0, n, 42, kStreamSelection, clocks.data());
  for (int64_t i = 0; i < n; ++i) {
    // The vectorized loop (items in pairs) equals the one-item definition bit for bit.
    const double one = exponential_clock(weights[i], 42, static_cast<uint64_t>(i), kStreamSelection);
    CHECK(std::memcmp(&one, &clocks[i], sizeof(double)) == 0, "item %lld", static_cast<long long>(i));
  }
  // An odd start exercises the unpaired first item.
  std::vector<double> tail(n - 1);
  cpu::exponential_clocks(weights.data(), 1, n, 42, kStreamSelection, tail.data());
  CHECK(std::memcmp(tail.data(), clocks.data() + 1, (n - 1) * sizeof(double)) == 0, "odd start");

  std::vector<cpu::ClockCandidate> kept(n);
  const double threshold = 0.5;
  const cpu::CandidateCounts counts = cpu::collect_candidates(weights.data(), 0, n, 42, kStreamSelection, threshold,
                                                              kept.data(), n);
  CHECK(counts.positive == 666 && counts.invalid == 0, "counts %lld %lld", static_cast<long long>(counts.positive),
        static_cast<long long>(counts.invalid));
  int64_t expected = 0;
  for (double c : clocks) expected += c <= threshold ? 1 : 0;
  CHECK(counts.kept == expected, "kept %lld of %lld", static_cast<long long>(counts.kept),
        static_cast<long long>(expected));
  for (int64_t j = 1; j < counts.kept; ++j) CHECK(kept[j - 1].index < kept[j].index, "index order at %lld", static_cast<long long>(j));
  const cpu::CandidateCounts tight = cpu::collect_candidates(weights.data(), 0, n, 42, kStreamSelection, threshold,
                                                             kept.data(), expected - 1);
  CHECK(tight.kept == -1, "overflow not reported");

  const double bad[3] = {1.0, -2.0, NAN};
  std::vector<cpu::ClockCandidate> three(3);
  const cpu::CandidateCounts invalid = cpu::collect_candidates(bad, 0, 3, 1, 0, HUGE_VAL, three.data(), 3);
  CHECK(invalid.invalid == 2 && invalid.positive == 1 && invalid.kept == 1, "invalid weights");

  // The radix sort orders by clock and keeps index order among equal clocks.
  std::vector<cpu::ClockCandidate> items;
  std::mt19937_64 gen(5);
  for (int64_t i = 0; i < 5000; ++i) items.push_back({std::ldexp(static_cast<double>(gen() % 50), -static_cast<int>(gen() % 40)), i});
  std::vector<cpu::ClockCandidate> buffer(items.size());
  cpu::sort_candidates(items.data(), static_cast<int64_t>(items.size()), buffer.data());
  for (size_t j = 1; j < items.size(); ++j) {
    const bool ordered = items[j - 1].clock < items[j].clock ||
                         (items[j - 1].clock == items[j].clock && items[j - 1].index < items[j].index);
    CHECK(ordered, "sort order at %zu", j);
  }
}

// FastDivmod against the division it replaces: small, power-of-two and odd divisors,
// numerators up to 2^64 - 1.
void test_fast_divmod() {
  std::mt19937_64 gen(11);
  std::vector<uint64_t> divisors;
  for (uint64_t d = 1; d <= 3000; ++d) divisors.push_back(d);
  for (int shift = 12; shift < 63; ++shift) {
    divisors.push_back(uint64_t{1} << shift);
    divisors.push_back((uint64_t{1} << shift) - 1);
    divisors.push_back((uint64_t{1} << shift) + 1);
  }
  for (int i = 0; i < 2000; ++i) divisors.push_back(1 + gen() % (uint64_t{1} << 40));
  divisors.push_back(uint64_t{1} << 63);
  for (uint64_t d : divisors) {
    const FastDivmod fast = FastDivmod::make(d);
    const uint64_t near[] = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, ~uint64_t{0}, ~uint64_t{0} - d};
    for (int j = 0; j < 64; ++j) {
      const uint64_t n = j < 9 ? near[j] : (j < 40 ? gen() : gen() >> (gen() % 64));
      uint64_t q, r;
      fast.divmod(n, q, r);
      CHECK(q == n / d && r == n % d, "%llu / %llu: %llu rem %llu", static_cast<unsigned long long>(n),
            static_cast<unsigned long long>(d), static_cast<unsigned long long>(q), static_cast<unsigned long long>(r));
    }
  }
}

}  // namespace

int main() {
  test_fast_divmod();
  test_philox_known_answers();
  test_uniform_in_open_interval();
  test_det_log_accuracy();
  test_half_conversion_exhaustive();
  test_entropy_row_against_definition();
  test_entropy_row_hard_cases();
  test_bin_index_edges();
  test_count_bins();
  test_candidates_and_sort();
  if (check_failures() != 0) {
    std::fprintf(stderr, "%d checks failed\n", check_failures());
    return 1;
  }
  std::printf("all kernel checks passed\n");
  return 0;
}
