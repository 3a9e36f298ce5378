// The tuner's output check (compare_with_baseline): every candidate must match the default
// config's output before it may win, on every element, including ones far into a large output
// (the check runs in parallel chunks).
#include "tune/gpu.hpp"
#include "tune/verify.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace {

using sigjit::tuner::compare_with_baseline;
using sigjit::tuner::kPoisonBits;
using ::testing::HasSubstr;

std::uint16_t bf16_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<std::uint16_t>(u >> 16);
}

// Random bf16 values in [-2, 2), with every 7th element "padding" (poison in the baseline).
std::vector<std::uint16_t> baseline_output(std::size_t n) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<std::uint16_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = i % 7 == 3 ? kPoisonBits : bf16_bits(u(rng));
  return out;
}

constexpr std::size_t kLarge = 3u << 20;  // three of the check's chunks and then some
constexpr std::size_t kLast = kLarge - 1;  // not padding (kLast % 7 != 3)

TEST(TuneCheck, IdenticalOutputPasses) {
  const auto base = baseline_output(kLarge);
  const auto v = compare_with_baseline(base, base, true);
  EXPECT_TRUE(v.ok) << v.reason;
}

TEST(TuneCheck, RoundingDifferencesPass) {
  const auto base = baseline_output(kLarge);
  auto out = base;
  for (std::size_t i = 0; i < out.size(); i += 5)
    if (out[i] != kPoisonBits) out[i] ^= 1;  // one bf16 ulp
  const auto v = compare_with_baseline(base, out, true);
  EXPECT_TRUE(v.ok) << v.reason;
}

TEST(TuneCheck, WrongValuesAreRejected) {
  const auto base = baseline_output(kLarge);
  auto out = base;
  for (std::size_t i = kLarge / 2; i < kLarge; ++i)
    if (out[i] != kPoisonBits) out[i] = bf16_bits(0.f);  // the second half zeroed
  const auto v = compare_with_baseline(base, out, true);
  EXPECT_FALSE(v.ok);
  EXPECT_THAT(v.reason, HasSubstr("rel error"));
}

TEST(TuneCheck, OneUnwrittenElementInTheLastChunkIsRejected) {
  const auto base = baseline_output(kLarge);
  ASSERT_NE(base[kLast], kPoisonBits);
  auto out = base;
  out[kLast] = kPoisonBits;
  const auto v = compare_with_baseline(base, out, true);
  EXPECT_FALSE(v.ok);
  EXPECT_THAT(v.reason, HasSubstr("1 elements written differently"));
}

TEST(TuneCheck, WritingWhatTheBaselineLeavesAloneIsRejected) {
  const auto base = baseline_output(64);
  ASSERT_EQ(base[3], kPoisonBits);
  auto out = base;
  out[3] = bf16_bits(0.f);  // e.g. a padded row the default config leaves unwritten
  EXPECT_FALSE(compare_with_baseline(base, out, true).ok);
}

TEST(TuneCheck, NanThatIsNotPoisonIsRejected) {
  const auto base = baseline_output(64);
  auto out = base;
  out[5] = 0x7FC0;  // a computed NaN where the baseline has a value
  const auto v = compare_with_baseline(base, out, true);
  EXPECT_FALSE(v.ok);
  EXPECT_THAT(v.reason, HasSubstr("rel error"));
}

TEST(TuneCheck, SizeMismatchIsRejected) {
  const auto base = baseline_output(64);
  const auto v = compare_with_baseline(base, baseline_output(63), true);
  EXPECT_FALSE(v.ok);
  EXPECT_THAT(v.reason, HasSubstr("63 elements, the baseline has 64"));
}

}  // namespace
