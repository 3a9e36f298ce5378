// What storing P in e4m3 costs O, on the host, before any GPU run (bench/MODEL-fp8.md point 4):
// the FP8 forward stores P as e4m3(P * 2^kFp8PScaleLog2); with the default bias -log(n) a typical
// P at n keys is about e^x / n, so at n = 16384 much of P * 2^8 falls below e4m3's smallest normal
// (2^-6), where it keeps fewer than three mantissa bits. This test computes O = P V exactly and
// with P quantized as the kernel quantizes it, for inputs drawn as the GPU tests draw them
// (N(0, 1), quantized to e4m3 with descale 1/64), and checks that the error stays inside the GPU
// tests' bound (tests/gpu/forward_problem.cpp's FP8 error_bound) at every length up to 16384,
// and that the 2^8 scale is what keeps it there (without it, P below 2^-10 flushes to zero). The
// figures it prints are the prediction the device measurement is compared against.
#include "sigjit/sm90/fp8_layout.h"
#include "tests/common/gpu_env.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

using sigjit::testing::e4m3_to_float;
using sigjit::testing::float_to_e4m3;

constexpr double kGpuTestBound = 0.05;  // tests/gpu/forward_problem.cpp, error_bound for FP8

// Norm-wise relative error of O = P V over `rows` query rows when P is stored as
// e4m3(P * 2^scale_log2) / 2^scale_log2, n keys, head dim d, the -log(n) bias.
double p_quantization_error(int n, int d, int rows, int scale_log2, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const float descale = 1.f / 64;
  const auto draw = [&](std::vector<double>& out, std::size_t count) {
    out.resize(count);
    for (auto& x : out) x = e4m3_to_float(float_to_e4m3(normal(rng) / descale)) * descale;
  };
  std::vector<double> q, k, v;
  draw(q, static_cast<std::size_t>(rows) * d);
  draw(k, static_cast<std::size_t>(n) * d);
  draw(v, static_cast<std::size_t>(n) * d);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d)), bias = -std::log(static_cast<double>(n));
  const double up = std::ldexp(1.0, scale_log2);
  double err2 = 0, ref2 = 0;
  std::vector<double> exact(d), quantized(d);
  for (int r = 0; r < rows; ++r) {
    std::fill(exact.begin(), exact.end(), 0.0);
    std::fill(quantized.begin(), quantized.end(), 0.0);
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int i = 0; i < d; ++i) s += q[static_cast<std::size_t>(r) * d + i] * k[static_cast<std::size_t>(j) * d + i];
      const double p = 1.0 / (1.0 + std::exp(-(s * scale + bias)));
      const double p8 = e4m3_to_float(float_to_e4m3(static_cast<float>(p * up))) / up;
      for (int i = 0; i < d; ++i) {
        exact[i] += p * v[static_cast<std::size_t>(j) * d + i];
        quantized[i] += p8 * v[static_cast<std::size_t>(j) * d + i];
      }
    }
    for (int i = 0; i < d; ++i) {
      err2 += (quantized[i] - exact[i]) * (quantized[i] - exact[i]);
      ref2 += exact[i] * exact[i];
    }
  }
  return std::sqrt(err2 / ref2);
}

TEST(Fp8AccuracyModel, StoringPInE4m3StaysInsideTheGpuTestsBoundAtEveryLength) {
  const int scale_log2 = sigjit::kern::sm90::kFp8PScaleLog2;
  for (int d : {64, 128})
    for (int n : {256, 1024, 4096, 16384}) {
      const double err = p_quantization_error(n, d, 8, scale_log2, 11 + n + d);
      std::printf("[fp8 model] hd %d, n %5d: P as e4m3 x 2^%d: O rel. error %.4f\n", d, n, scale_log2, err);
      EXPECT_LT(err, kGpuTestBound) << "hd " << d << " n " << n;
    }
}

TEST(Fp8AccuracyModel, TheScaleIsWhatKeepsLongSequencesAccurate) {
  // Without the scale (P stored as is) the typical P of a long sequence is below e4m3's smallest
  // subnormal: the error at 16384 keys is several times the scaled one and past the bound.
  const double scaled = p_quantization_error(16384, 128, 4, sigjit::kern::sm90::kFp8PScaleLog2, 3);
  const double unscaled = p_quantization_error(16384, 128, 4, 0, 3);
  std::printf("[fp8 model] hd 128, n 16384: O rel. error %.4f with the scale, %.4f without\n", scaled, unscaled);
  EXPECT_GT(unscaled, 3 * scaled);
  EXPECT_GT(unscaled, kGpuTestBound);
}

}  // namespace
