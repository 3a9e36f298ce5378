// The FMA-only sigmoid of templates/sigjit/common/sigmoid_poly.h, evaluated on the host by the same
// code the sm90 kernels compile (explicit FMAs and exact bit casts: the host sees the device's
// results bit for bit), over a dense range against a long double reference: the error bounds its
// comment states hold.
#include "sigjit/common/sigmoid_poly.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>

namespace {

struct Worst {
  double rel = 0, abs_tail = 0;
  float at = 0;
};

template <bool PRECISE>
void accumulate(Worst& w, float t) {
  const float got = sigjit::poly::sigmoid_poly<PRECISE>(t);
  const long double want = 1.0L / (1.0L + std::exp2l(static_cast<long double>(t)));
  ASSERT_TRUE(std::isfinite(got)) << "t=" << t;
  if (t <= 125.0f) {
    const double rel = static_cast<double>(std::fabs((static_cast<long double>(got) - want) / want));
    if (rel > w.rel) {
      w.rel = rel;
      w.at = t;
    }
  } else {
    w.abs_tail = std::max(w.abs_tail, static_cast<double>(std::fabs(static_cast<long double>(got) - want)));
  }
}

template <bool PRECISE>
Worst sweep() {
  Worst w;
  // Dense: every 2^-14 over [-140, 140] (4.6 million points), covering every reduction interval
  // many times and both clamps.
  for (std::int64_t i = -140 * 16384; i <= 140 * 16384; ++i) accumulate<PRECISE>(w, static_cast<float>(i) / 16384.0f);
  // Random floats in the interesting range, and the extremes.
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-130.0f, 130.0f);
  for (int i = 0; i < 1000000; ++i) accumulate<PRECISE>(w, u(rng));
  for (float t : {0.0f, -0.0f, 1e-30f, -1e-30f, 0.5f, -0.5f, 124.99f, 125.0f, 125.01f, -125.0f, -126.0f, 1e30f, -1e30f, 3.4e38f, -3.4e38f})
    accumulate<PRECISE>(w, t);
  return w;
}

TEST(SigmoidPoly, FastModeRelativeErrorBelow1e4) {
  const Worst w = sweep<false>();
  std::printf("fast: max relative error %.3g at t=%.6g; tail (t > 125) max abs error %.3g\n", w.rel, w.at, w.abs_tail);
  EXPECT_LT(w.rel, 1e-4);
  EXPECT_LT(w.abs_tail, 2.4e-38);
}

TEST(SigmoidPoly, PreciseModeMeetsTheExactSigmoidBound) {
  const Worst w = sweep<true>();
  std::printf("precise: max relative error %.3g at t=%.6g; tail (t > 125) max abs error %.3g\n", w.rel, w.at, w.abs_tail);
  EXPECT_LT(w.rel, 1e-6);  // the exact mode promises < 2e-6
  EXPECT_LT(w.abs_tail, 2.4e-38);
}

TEST(SigmoidPoly, Exp2PolynomialAndReciprocalPieces) {
  // 2^t itself: integer t exact up to the polynomial's value at 0.
  for (int n = -125; n <= 125; ++n) {
    const float e = sigjit::poly::exp2_poly<true>(static_cast<float>(n));
    EXPECT_NEAR(e / std::ldexp(1.0f, n), 1.0, 2e-7) << n;
  }
  // The reciprocal alone, over every exponent.
  double worst = 0;
  for (int k = 0; k < 126; ++k)
    for (int m = 0; m < 4096; ++m) {
      const float d = std::ldexp(1.0f + m / 4096.0f, k);
      worst = std::max(worst, std::fabs(static_cast<double>(sigjit::poly::reciprocal_newton<true>(d)) * d - 1.0));
    }
  EXPECT_LT(worst, 3e-7);
}

}  // namespace
