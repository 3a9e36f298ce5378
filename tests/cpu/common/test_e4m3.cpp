// The test harness's host float8_e4m3fn conversions (tests/common/gpu_env.hpp), which the FP8
// GPU tests quantize their inputs with and decode references from: they must be the format the
// device's cvt.rn.satfinite.e4m3x2.f32 and e4m3 wgmma use, or every FP8 accuracy figure is off.
#include "tests/common/gpu_env.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace {

using sigjit::testing::e4m3_to_float;
using sigjit::testing::float_to_e4m3;

TEST(E4m3, DecodesTheFormatsLandmarks) {
  EXPECT_EQ(e4m3_to_float(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_float(0xb8), -1.0f);
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_float(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(e4m3_to_float(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(e4m3_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_float(0xff)));
  EXPECT_EQ(e4m3_to_float(0x00), 0.0f);
}

TEST(E4m3, EveryFiniteCodeRoundTrips) {
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7f) == 0x7f) continue;  // NaN
    EXPECT_EQ(float_to_e4m3(e4m3_to_float(static_cast<std::uint8_t>(b))), b) << "code " << b;
  }
}

TEST(E4m3, RoundsToNearestEvenAndSaturates) {
  EXPECT_EQ(float_to_e4m3(1.0625f), 0x38);  // halfway between 1 and 1.125: the even mantissa
  EXPECT_EQ(float_to_e4m3(1.1875f), 0x3a);  // halfway between 1.125 and 1.25
  EXPECT_EQ(float_to_e4m3(1.07f), 0x39);
  EXPECT_EQ(float_to_e4m3(std::ldexp(1.5f, -9)), 0x02);   // subnormal tie: 1.5 -> 2
  EXPECT_EQ(float_to_e4m3(std::ldexp(7.5f, -9)), 0x08);   // rounds up into the smallest normal
  EXPECT_EQ(float_to_e4m3(std::ldexp(1.0f, -11)), 0x00);  // below half the smallest subnormal
  EXPECT_EQ(float_to_e4m3(464.0f), 0x7e);                 // satfinite, not NaN
  EXPECT_EQ(float_to_e4m3(-1e9f), 0xfe);
  EXPECT_EQ(float_to_e4m3(std::nanf("")), 0x7f);
}

TEST(E4m3, RandomValuesLandOnTheNearestCode) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> exponent(-12.0f, 9.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::exp2(exponent(rng)) * (i % 2 ? -1.0f : 1.0f);
    const float got = e4m3_to_float(float_to_e4m3(x));
    float best = 0;
    for (int b = 0; b < 256; ++b) {
      const float v = e4m3_to_float(static_cast<std::uint8_t>(b));
      if (!std::isnan(v) && std::fabs(v - x) < std::fabs(best - x)) best = v;
    }
    if (std::fabs(x) <= 448.0f) EXPECT_EQ(std::fabs(got - x), std::fabs(best - x)) << x;
  }
}

}  // namespace
