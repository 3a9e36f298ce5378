// FMA-only sigmoid: no MUFU (SFU) instruction, so a kernel can move part of its sigmoids off
// the 16-ops-per-clock MUFU pipe onto the FMA/ALU pipes (the sm90 family's FMA-sigmoid fraction,
// TileConfig::fma_quarters).
//
// What: sigmoid_poly<PRECISE>(t) = 1 / (1 + 2^t), where the caller has folded the sigmoid's
// argument x into t = -x * log2(e) (the same fold as the exact MUFU mode, SigmoidFold<true>).
//   1. t is clamped to [-125, 125] (2^t stays a normal float; see below for what that costs).
//   2. Cody-Waite range reduction: j = t + 1.5*2^23 rounds t to the nearest integer n in j's low
//      mantissa bits; f = t - (j - 1.5*2^23) = t - n lies in [-0.5, 0.5], exactly.
//   3. 2^f by a minimax polynomial (relative error, Remez, coefficients rounded to float),
//      evaluated by Horner with explicit FMAs:
//        fast    (PRECISE=false): degree 3, max relative error 7.5e-5 on [-0.5, 0.5];
//        precise (PRECISE=true) : degree 5, max relative error 7.5e-8 on [-0.5, 0.5].
//   4. 2^t = 2^f * 2^n by adding n to the exponent field: (bits(j) << 23) == (n << 23) mod 2^32
//      because the low 9 bits of bits(1.5*2^23) = 0x4B400000 are zero. 2^f is in
//      [0.707, 1.415] (biased exponent 126 or 127) and |n| <= 125, so the result is normal.
//   5. r = 1 / d, d = 1 + 2^t in [1, 2^125 + 1]: seed r0 = float(0x7EF311C0 - bits(d)) (the
//      exponent-negation trick; max relative error 0.0505 over all d), then Newton steps
//      r <- r + r * (1 - d * r), each squaring the relative error: 2 steps (fast, 6.5e-6) or
//      3 steps (precise, 4e-11), two FMAs each.
// Error bound (tests/cpu/test_sigmoid_poly.cpp evaluates this very code on the host over a
// dense range of t against a long double reference and asserts these bounds):
//   fast   : relative error < 1e-4 wherever 1/(1+2^t) >= 2^-125 (t <= 125); measured 7.9e-5;
//   precise: relative error < 1e-6 there (the exact sigmoid mode's bound is 2e-6); measured 2.8e-7;
//   t > 125: the result is 1/(1 + 2^125) (about 2.4e-38) instead of something smaller: an
//   absolute error below 2.4e-38 (the MUFU exact mode returns 0 there, ftz).
// Cost per score: fast 12 FMA-pipe ops (Horner 3, Newton 4, reduction 3, 1 + 2^t, the fold)
// + 4 ALU ops (2 clamps, the exponent add, the seed); precise 16 + 4. Versus the MUFU modes:
// fast (tanh) 2 FMA-pipe + 1 MUFU, exact (ex2 + rcp) 2 + 2 MUFU. MUFU issues 16 per clock per
// SM, the FMA pipes 128 (ALU 64), so moving a quarter of the scores to this path shortens the
// MUFU-bound part of the sigmoid by a quarter while the FMA pipes still have room.
// Shared by host and device: every multiply-add is an explicit fused FMA (no contraction
// differences) and the bit casts are exact, so the host test sees the device's results bit
// for bit (the device compiles without fast-math; nothing here is subnormal).
#pragma once

#include "sigjit/common/host_device.h"

#if !defined(__CUDACC__)
#include <cmath>
#include <cstring>
#endif

namespace sigjit {
namespace poly {

SIGJIT_HD_INLINE float fma32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

SIGJIT_HD_INLINE unsigned bits_of(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  unsigned u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

SIGJIT_HD_INLINE float float_of(unsigned u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

SIGJIT_HD_INLINE float clamp_exponent(float t) {
#if defined(__CUDA_ARCH__)
  return fmaxf(fminf(t, 125.0f), -125.0f);
#else
  return std::fmax(std::fmin(t, 125.0f), -125.0f);
#endif
}

// 2^t for t in [-125, 125] (clamped by the caller).
template <bool PRECISE>
SIGJIT_HD_INLINE float exp2_poly(float t) {
  const float kRound = 12582912.0f;  // 1.5 * 2^23
  const float j = t + kRound;
  const float f = t - (j - kRound);
  float p;
  if (PRECISE) {
    p = 0.0013276472631950327f;
    p = fma32(p, f, 0.0096755413431213404f);
    p = fma32(p, f, 0.055507132718556447f);
    p = fma32(p, f, 0.24022119723710719f);
    p = fma32(p, f, 0.69314696706503522f);
    p = fma32(p, f, 1.0000000716547141f);
  } else {
    p = 0.055171672325748833f;
    p = fma32(p, f, 0.2426111223509835f);
    p = fma32(p, f, 0.69326098469204046f);
    p = fma32(p, f, 0.99992807357247062f);
  }
  return float_of(bits_of(p) + (bits_of(j) << 23));
}

// 1 / d for d in [1, 2^126): integer-trick seed and Newton steps.
template <bool PRECISE>
SIGJIT_HD_INLINE float reciprocal_newton(float d) {
  float r = float_of(0x7EF311C0u - bits_of(d));
  const int steps = PRECISE ? 3 : 2;
  for (int i = 0; i < steps; ++i) {
    const float e = fma32(-d, r, 1.0f);
    r = fma32(r, e, r);
  }
  return r;
}

// 1 / (1 + 2^t): the sigmoid of x with t = -x log2(e).
template <bool PRECISE>
SIGJIT_HD_INLINE float sigmoid_poly(float t) {
  const float e = exp2_poly<PRECISE>(clamp_exponent(t));
  return reciprocal_newton<PRECISE>(1.0f + e);
}

}  // namespace poly
}  // namespace sigjit
