// The fp64 CPU reference (tests/common/reference.hpp) against hand-computed cases. Every GPU
// accuracy test trusts this reference, so its index rules (bias, causal alignment, GQA head
// mapping, padded and varlen layouts, strides) are pinned down here on tiny problems.
#include "tests/common/reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

using sigjit::AttentionArgs;
using sigjit::BiasMode;
using sigjit::CausalAlign;
using sigjit::Layout;
using sigjit::testing::reference_forward;
using sigjit::testing::RefInputs;
using sigjit::testing::sigmoid;

// Exact logistic function for the hand computations (independent of the reference's own).
double logistic(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Small deterministic values in [-1, 1] that are exact in float.
std::vector<float> pattern(std::size_t n, int seed) {
  std::vector<float> out(n);
  std::uint32_t state = 2654435761u * static_cast<std::uint32_t>(seed + 1);
  for (auto& x : out) {
    state = state * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int>(state >> 24) - 128) / 128.0f;
  }
  return out;
}

double dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

AttentionArgs shape(int batch, int seqlen_q, int seqlen_k, int heads_q, int heads_kv, int head_dim) {
  AttentionArgs a;
  a.batch = batch;
  a.seqlen_q = seqlen_q;
  a.seqlen_k = seqlen_k;
  a.heads_q = heads_q;
  a.heads_kv = heads_kv;
  a.head_dim = head_dim;
  return a;
}

constexpr double kTol = 1e-12;

TEST(Reference, SigmoidIsAccurateForLargeMagnitudes) {
  // Values from 40-digit arithmetic.
  EXPECT_DOUBLE_EQ(sigmoid(0.0), 0.5);
  EXPECT_NEAR(sigmoid(5.0), 0.99330714907571514444, 4e-16);  // a few ulp
  EXPECT_NEAR(sigmoid(-5.0) / 0.0066928509242848555594, 1.0, 1e-15);
  EXPECT_NEAR(sigmoid(-20.0) / 2.0611536181902035814e-9, 1.0, 1e-15);
  EXPECT_NEAR(sigmoid(-40.0) / 4.2483542552915889773e-18, 1.0, 1e-15);
  EXPECT_NEAR(sigmoid(-100.0) / 3.720075976020835963e-44, 1.0, 1e-14);
  EXPECT_NEAR(sigmoid(-700.0) / 9.8596765437597708567e-305, 1.0, 1e-13);
  EXPECT_NEAR(sigmoid(30.0), 0.99999999999990642377, 4e-16);
  // Saturation without overflow to NaN.
  EXPECT_EQ(sigmoid(1000.0), 1.0);
  EXPECT_EQ(sigmoid(-1000.0), 0.0);
  EXPECT_EQ(sigmoid(std::numeric_limits<double>::infinity()), 1.0);
  EXPECT_EQ(sigmoid(-std::numeric_limits<double>::infinity()), 0.0);
  EXPECT_GT(sigmoid(-740.0), 0.0);  // still a (subnormal) positive number
  // Symmetry.
  for (double x : {0.1, 1.0, 3.7, 12.0, 35.0}) EXPECT_NEAR(sigmoid(x) + sigmoid(-x), 1.0, 1e-16) << x;
}

TEST(Reference, EffectiveStridesFillContiguousDefaults) {
  const sigjit::Strides s = sigjit::testing::effective_strides({}, 10, 4, 64);
  EXPECT_EQ(s.head, 64);
  EXPECT_EQ(s.token, 256);
  EXPECT_EQ(s.batch, 2560);
  const sigjit::Strides custom = sigjit::testing::effective_strides({0, 0, 72}, 10, 4, 64);
  EXPECT_EQ(custom.head, 72);
  EXPECT_EQ(custom.token, 288);
  EXPECT_EQ(custom.batch, 2880);
  const sigjit::Strides kept = sigjit::testing::effective_strides({5000, 300, 72}, 10, 4, 64);
  EXPECT_EQ(kept.batch, 5000);
  EXPECT_EQ(kept.token, 300);
}

TEST(Reference, SingleQuerySingleKey) {
  const int d = 32;
  const auto q = pattern(d, 1), k = pattern(d, 2), v = pattern(d, 3);
  RefInputs in;
  in.args = shape(1, 1, 1, 1, 1, d);
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  // Default scale 1/sqrt(D); bias -log(1) = 0.
  auto o = reference_forward(in, d);
  const double p = logistic(dot(q.data(), k.data(), d) / std::sqrt(32.0));
  for (int i = 0; i < d; ++i) EXPECT_NEAR(o[i], p * v[i], kTol) << i;
  // Explicit scale and scalar bias.
  in.args.scale = 0.75f;
  in.args.bias_mode = BiasMode::scalar;
  in.args.bias = -1.5f;
  o = reference_forward(in, d);
  const double p2 = logistic(0.75 * dot(q.data(), k.data(), d) - 1.5);
  for (int i = 0; i < d; ++i) EXPECT_NEAR(o[i], p2 * v[i], kTol) << i;
  EXPECT_NE(p, p2);
}

TEST(Reference, LogNBiasEqualsScalarMinusLogN) {
  // Four identical keys with V = 1: every output element is 4 * sigmoid(scale * q.k + bias).
  const int d = 32, n = 4;
  const auto q = pattern(d, 4);
  const auto k1 = pattern(d, 5);
  std::vector<float> k, v(n * d, 1.0f);
  for (int j = 0; j < n; ++j) k.insert(k.end(), k1.begin(), k1.end());
  RefInputs in;
  in.args = shape(1, 1, n, 1, 1, d);
  in.args.scale = 0.5f;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  const double s = 0.5 * dot(q.data(), k1.data(), d);

  const auto log_n = reference_forward(in, d);
  for (int i = 0; i < d; ++i) EXPECT_NEAR(log_n[i], n * logistic(s - std::log(4.0)), kTol);

  in.args.bias_mode = BiasMode::scalar;
  in.args.bias = static_cast<float>(-std::log(4.0));
  const auto scalar = reference_forward(in, d);
  for (int i = 0; i < d; ++i) EXPECT_NEAR(scalar[i], log_n[i], 1e-7);  // bias rounded to float

  in.args.bias = 2.0f;
  const auto plus2 = reference_forward(in, d);
  for (int i = 0; i < d; ++i) EXPECT_NEAR(plus2[i], n * logistic(s + 2.0), kTol);
}

TEST(Reference, LogNBiasUsesTheValidKeyCountOfEachSequence) {
  // Padded: sequence 0 has 3 valid keys, sequence 1 has 1 (-log(1) = 0).
  const int d = 32, lk = 4;
  std::vector<float> q(2 * d, 0.0f), k(2 * lk * d, 0.0f), v(2 * lk * d, 1.0f);  // q.k = 0
  const std::int32_t lens_q[2] = {1, 1}, lens_k[2] = {3, 1};
  RefInputs in;
  in.args = shape(2, 1, lk, 1, 1, d);
  in.args.layout = Layout::padded;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.seq_lens_q = lens_q, in.seq_lens_k = lens_k;
  const auto o = reference_forward(in, 2 * d);
  EXPECT_NEAR(o[0], 3 * logistic(-std::log(3.0)), kTol);
  EXPECT_NEAR(o[d], 1 * logistic(0.0), kTol);
}

TEST(Reference, ScoreBiasIsAddedPerKeyWithItsBatchStride) {
  const int d = 32, lk = 3, stride = 8;
  std::vector<float> q(2 * d, 0.0f), k(2 * lk * d, 0.0f), v(2 * lk * d, 0.0f);
  // V row j of batch b is e_j (one-hot), so O[b, 0, j] = p_j.
  for (int b = 0; b < 2; ++b)
    for (int j = 0; j < lk; ++j) v[(b * lk + j) * d + j] = 1.0f;
  std::vector<float> sb(2 * stride, std::numeric_limits<float>::quiet_NaN());  // gaps must not be read
  const float bias_b0[lk] = {0.5f, -1.0f, 3.0f}, bias_b1[lk] = {-2.0f, 0.0f, 0.25f};
  for (int j = 0; j < lk; ++j) sb[j] = bias_b0[j], sb[stride + j] = bias_b1[j];
  RefInputs in;
  in.args = shape(2, 1, lk, 1, 1, d);
  in.args.bias_mode = BiasMode::scalar;
  in.args.bias = 0.125f;
  in.args.score_bias_stride = stride;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.score_bias = sb.data();
  const auto o = reference_forward(in, 2 * d);
  for (int j = 0; j < lk; ++j) {
    EXPECT_NEAR(o[j], logistic(0.125 + bias_b0[j]), kTol) << j;
    EXPECT_NEAR(o[d + j], logistic(0.125 + bias_b1[j]), kTol) << j;
  }
  EXPECT_EQ(o[lk], 0.0);
}

// Causal fixture: V row j = e_j, so O[i, j] is key j's weight for row i (0 when masked).
struct CausalCase {
  int lq, lk;
  CausalAlign align = CausalAlign::bottom_right;
  std::vector<double> run() const {
    const int d = 32;
    const auto q = pattern(lq * d, 11), k = pattern(lk * d, 12);
    std::vector<float> v(lk * d, 0.0f);
    for (int j = 0; j < lk; ++j) v[j * d + j] = 1.0f;
    RefInputs in;
    in.args = shape(1, lq, lk, 1, 1, d);
    in.args.causal = true;
    in.args.causal_align = align;
    in.args.scale = 1.0f;
    in.args.bias_mode = BiasMode::scalar;
    in.q = q.data(), in.k = k.data(), in.v = v.data();
    auto o = reference_forward(in, lq * d);
    // Check the visible weights against the hand formula here, the mask in the tests.
    for (int i = 0; i < lq; ++i)
      for (int j = 0; j < lk; ++j)
        if (o[i * d + j] != 0.0) EXPECT_NEAR(o[i * d + j], logistic(dot(&q[i * d], &k[j * d], d)), kTol);
    return o;
  }
};

TEST(Reference, CausalSquareIsLowerTriangular) {
  const auto o = CausalCase{4, 4}.run();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      if (j <= i) EXPECT_GT(o[i * 32 + j], 0.0) << i << "," << j;
      else EXPECT_EQ(o[i * 32 + j], 0.0) << i << "," << j;
    }
}

TEST(Reference, CausalIsBottomRightAlignedWithMoreKeys) {
  // Lq = 2, Lk = 5: row i sees keys j <= i + 3.
  const auto o = CausalCase{2, 5}.run();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 5; ++j) {
      if (j <= i + 3) EXPECT_GT(o[i * 32 + j], 0.0) << i << "," << j;
      else EXPECT_EQ(o[i * 32 + j], 0.0) << i << "," << j;
    }
}

TEST(Reference, CausalRowsWithoutVisibleKeysAreZero) {
  // Lq = 5, Lk = 2: row i sees keys j <= i - 3; rows 0..2 see none and are exactly 0.
  const auto o = CausalCase{5, 2}.run();
  for (int i = 0; i < 3; ++i)
    for (int x = 0; x < 32; ++x) EXPECT_EQ(o[i * 32 + x], 0.0) << i;
  EXPECT_GT(o[3 * 32 + 0], 0.0);
  EXPECT_EQ(o[3 * 32 + 1], 0.0);
  EXPECT_GT(o[4 * 32 + 0], 0.0);
  EXPECT_GT(o[4 * 32 + 1], 0.0);
}

TEST(Reference, CausalTopLeftWithMoreKeysIgnoresTheLengths) {
  // Lq = 2, Lk = 5, top-left: row i sees keys j <= i (bottom-right would give j <= i + 3).
  const auto o = CausalCase{2, 5, CausalAlign::top_left}.run();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 5; ++j) {
      if (j <= i)
        EXPECT_GT(o[i * 32 + j], 0.0) << i << "," << j;
      else
        EXPECT_EQ(o[i * 32 + j], 0.0) << i << "," << j;
    }
}

TEST(Reference, CausalTopLeftWithMoreQueriesGivesEveryRowAKey) {
  // Lq = 5, Lk = 2, top-left: row i sees keys j <= min(i, 1), so no row is empty (bottom-right:
  // rows 0..2 see nothing, CausalRowsWithoutVisibleKeysAreZero).
  const auto o = CausalCase{5, 2, CausalAlign::top_left}.run();
  EXPECT_GT(o[0 * 32 + 0], 0.0);
  EXPECT_EQ(o[0 * 32 + 1], 0.0);
  for (int i = 1; i < 5; ++i) {
    EXPECT_GT(o[i * 32 + 0], 0.0) << i;
    EXPECT_GT(o[i * 32 + 1], 0.0) << i;
  }
}

TEST(Reference, CausalAlignmentsAgreeWhenTheLengthsAreEqual) {
  const auto br = CausalCase{4, 4}.run(), tl = CausalCase{4, 4, CausalAlign::top_left}.run();
  EXPECT_EQ(br, tl);
}

TEST(Reference, CausalTopLeftUsesPerSequenceLengthsInPaddedLayout) {
  // Buffer 4 x 4; sequence 0: 2 queries, 4 keys (more keys); sequence 1: 4 queries, 2 keys (more
  // queries); sequence 2: 3 queries, no key (its rows see no key: zeros). Top-left: row i sees
  // keys j <= i, j < len_k.
  const int d = 32, l = 4;
  std::vector<float> q(3 * l * d, 0.0f), k(3 * l * d, 0.0f), v(3 * l * d, 0.0f);
  for (int b = 0; b < 3; ++b)
    for (int j = 0; j < l; ++j) v[(b * l + j) * d + j] = 1.0f;
  const std::int32_t lens_q[3] = {2, 4, 3}, lens_k[3] = {4, 2, 0};
  RefInputs in;
  in.args = shape(3, l, l, 1, 1, d);
  in.args.layout = Layout::padded;
  in.args.causal = true;
  in.args.causal_align = CausalAlign::top_left;
  in.args.bias_mode = BiasMode::scalar;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.seq_lens_q = lens_q, in.seq_lens_k = lens_k;
  const auto o = reference_forward(in, 3 * l * d);
  const double h = 0.5;                                                                       // sigmoid(0)
  const double expect[3][4][4] = {{{h, 0, 0, 0}, {h, h, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}},   // rows 2, 3: padding
                                  {{h, 0, 0, 0}, {h, h, 0, 0}, {h, h, 0, 0}, {h, h, 0, 0}},   // keys 2, 3: padding
                                  {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}};  // no key at all
  for (int b = 0; b < 3; ++b)
    for (int i = 0; i < l; ++i)
      for (int j = 0; j < d; ++j) EXPECT_EQ(o[(b * l + i) * d + j], j < 4 ? expect[b][i][j] : 0.0) << b << "," << i << "," << j;
}

TEST(Reference, CausalOffsetOfEachAlignment) {
  AttentionArgs a;
  EXPECT_EQ(sigjit::testing::causal_offset(a, 2, 5), 3);
  EXPECT_EQ(sigjit::testing::causal_offset(a, 5, 2), -3);
  a.causal_align = CausalAlign::top_left;
  EXPECT_EQ(sigjit::testing::causal_offset(a, 2, 5), 0);
  EXPECT_EQ(sigjit::testing::causal_offset(a, 5, 2), 0);
}

TEST(Reference, CausalAlignmentUsesPerSequenceLengthsInPaddedLayout) {
  // Buffer 4 x 4, but sequence 0 has 2 queries and 4 keys: row i sees j <= i + 2.
  const int d = 32, l = 4;
  std::vector<float> q(l * d, 0.0f), k(l * d, 0.0f), v(l * d, 0.0f);
  for (int j = 0; j < l; ++j) v[j * d + j] = 1.0f;
  const std::int32_t lens_q[1] = {2}, lens_k[1] = {4};
  RefInputs in;
  in.args = shape(1, l, l, 1, 1, d);
  in.args.layout = Layout::padded;
  in.args.causal = true;
  in.args.bias_mode = BiasMode::scalar;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.seq_lens_q = lens_q, in.seq_lens_k = lens_k;
  const auto o = reference_forward(in, l * d);
  const double half = 0.5;  // sigmoid(0)
  const double expect[2][4] = {{half, half, half, 0.0}, {half, half, half, half}};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(o[i * d + j], expect[i][j]) << i << "," << j;
}

TEST(Reference, GqaMapsQueryHeadToKvHeadByGroup) {
  // Hq = 6, Hkv = 2: query heads 0..2 use kv head 0, 3..5 use kv head 1. K = 0 so every weight
  // is sigmoid(bias); V of kv head g is the constant g + 1.
  const int d = 32, hq = 6, hkv = 2, lk = 3;
  const auto q = pattern(hq * d, 21);
  std::vector<float> k(lk * hkv * d, 0.0f), v(lk * hkv * d);
  for (int j = 0; j < lk; ++j)
    for (int g = 0; g < hkv; ++g)
      for (int x = 0; x < d; ++x) v[(j * hkv + g) * d + x] = static_cast<float>(g + 1);
  RefInputs in;
  in.args = shape(1, 1, lk, hq, hkv, d);
  in.args.bias_mode = BiasMode::scalar;
  in.args.bias = 0.5f;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  const auto o = reference_forward(in, hq * d);
  for (int h = 0; h < hq; ++h) {
    const int g = h / (hq / hkv);
    EXPECT_NEAR(o[h * d], lk * logistic(0.5) * (g + 1), kTol) << "query head " << h;
  }
}

TEST(Reference, GqaUsesTheMatchingKeys) {
  // Hq = 4, Hkv = 2 with random K: head 3 must match a hand computation on kv head 1.
  const int d = 32, hq = 4, hkv = 2, lk = 2;
  const auto q = pattern(hq * d, 31), k = pattern(lk * hkv * d, 32), v = pattern(lk * hkv * d, 33);
  RefInputs in;
  in.args = shape(1, 1, lk, hq, hkv, d);
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  const auto o = reference_forward(in, hq * d);
  const double scale = 1.0 / std::sqrt(32.0), bias = -std::log(2.0);
  for (int h : {0, 3}) {
    const int g = h / 2;
    for (int x = 0; x < d; ++x) {
      double expect = 0;
      for (int j = 0; j < lk; ++j) {
        const double p = logistic(scale * dot(&q[h * d], &k[(j * hkv + g) * d], d) + bias);
        expect += p * v[(j * hkv + g) * d + x];
      }
      EXPECT_NEAR(o[h * d + x], expect, kTol) << h << "," << x;
    }
  }
}

TEST(Reference, PaddedRowsAreZeroAndPaddedKeysAreNotRead) {
  const int d = 32, l = 4;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto q = pattern(l * d, 41), k = pattern(l * d, 42), v = pattern(l * d, 43);
  // Padding holds NaN: reading any of it would poison the output.
  for (int i = 2; i < l; ++i)
    for (int x = 0; x < d; ++x) q[i * d + x] = nan;
  for (int j = 3; j < l; ++j)
    for (int x = 0; x < d; ++x) k[j * d + x] = v[j * d + x] = nan;
  const std::int32_t lens_q[1] = {2}, lens_k[1] = {3};
  RefInputs in;
  in.args = shape(1, l, l, 1, 1, d);
  in.args.layout = Layout::padded;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.seq_lens_q = lens_q, in.seq_lens_k = lens_k;
  const auto o = reference_forward(in, l * d);
  for (int i = 0; i < 2; ++i)
    for (int x = 0; x < d; ++x) {
      double expect = 0;
      for (int j = 0; j < 3; ++j) expect += logistic(dot(&q[i * d], &k[j * d], d) / std::sqrt(32.0) - std::log(3.0)) * v[j * d + x];
      EXPECT_NEAR(o[i * d + x], expect, kTol);
    }
  for (int i = 2; i < l; ++i)
    for (int x = 0; x < d; ++x) EXPECT_EQ(o[i * d + x], 0.0) << "padded row " << i;
}

TEST(Reference, PaddedEmptySequenceIsAllZero) {
  const int d = 32, l = 2;
  std::vector<float> q(l * d, 1.0f), k(l * d, 1.0f), v(l * d, 1.0f);
  const std::int32_t lens_q[1] = {0}, lens_k[1] = {0};
  RefInputs in;
  in.args = shape(1, l, l, 1, 1, d);
  in.args.layout = Layout::padded;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.seq_lens_q = lens_q, in.seq_lens_k = lens_k;
  for (double x : reference_forward(in, l * d)) EXPECT_EQ(x, 0.0);
}

TEST(Reference, VarlenSequencesAreIndependentAndAtTheirOffsets) {
  // Two packed sequences (3 and 2 queries, 2 and 4 keys), 2 heads, packed buffers one row
  // longer than needed: the trailing row is not part of any sequence and stays NaN.
  const int d = 32, h = 2;
  const std::int32_t cu_q[3] = {0, 3, 5}, cu_k[3] = {0, 2, 6};
  const int total_q = 6, total_k = 7;
  const auto q = pattern(total_q * h * d, 51), k = pattern(total_k * h * d, 52), v = pattern(total_k * h * d, 53);
  RefInputs in;
  in.args = shape(2, 3, 4, h, h, d);
  in.args.layout = Layout::varlen;
  in.args.total_q = total_q;
  in.args.total_k = total_k;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.cu_seqlens_q = cu_q, in.cu_seqlens_k = cu_k;
  const auto o = reference_forward(in, total_q * h * d);

  for (int b = 0; b < 2; ++b) {
    // Each sequence alone as a dense problem.
    const int lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
    RefInputs one;
    one.args = shape(1, lq, lk, h, h, d);
    one.q = &q[cu_q[b] * h * d], one.k = &k[cu_k[b] * h * d], one.v = &v[cu_k[b] * h * d];
    const auto alone = reference_forward(one, lq * h * d);
    for (int i = 0; i < lq * h * d; ++i) EXPECT_NEAR(o[cu_q[b] * h * d + i], alone[i], kTol) << "sequence " << b << " element " << i;
  }
  // One element by hand: sequence 1, row 1 (packed row 4), head 1, dim 5.
  double expect = 0;
  for (int j = 2; j < 6; ++j) {
    const double p = logistic(dot(&q[(4 * h + 1) * d], &k[(j * h + 1) * d], d) / std::sqrt(32.0) - std::log(4.0));
    expect += p * v[(j * h + 1) * d + 5];
  }
  EXPECT_NEAR(o[(4 * h + 1) * d + 5], expect, kTol);
  for (int x = 0; x < h * d; ++x) EXPECT_TRUE(std::isnan(o[5 * h * d + x])) << "row past cu_seqlens_q[2] was written";
}

TEST(Reference, VarlenScoreBiasIsIndexedByPackedKeyRow) {
  const int d = 32;
  const std::int32_t cu_q[3] = {0, 1, 2}, cu_k[3] = {0, 1, 3};
  std::vector<float> q(2 * d, 0.0f), k(3 * d, 0.0f), v(3 * d, 1.0f);
  const float sb[3] = {1.0f, -2.0f, 0.5f};
  RefInputs in;
  in.args = shape(2, 1, 2, 1, 1, d);
  in.args.layout = Layout::varlen;
  in.args.total_q = 2;
  in.args.total_k = 3;
  in.args.bias_mode = BiasMode::scalar;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.cu_seqlens_q = cu_q, in.cu_seqlens_k = cu_k;
  in.score_bias = sb;
  const auto o = reference_forward(in, 2 * d);
  EXPECT_NEAR(o[0], logistic(1.0), kTol);
  EXPECT_NEAR(o[d], logistic(-2.0) + logistic(0.5), kTol);
}

TEST(Reference, StrideGapsStayNaN) {
  // O with head stride 40 (8-element gap after each head) and batch stride with a 16-element
  // tail gap; everything inside the heads is written, nothing in the gaps.
  const int d = 32, hq = 2, l = 3, b = 2;
  const sigjit::Strides os{/*batch*/ l * hq * 40 + 16, /*token*/ hq * 40, /*head*/ 40};
  const auto q = pattern(b * l * hq * d, 61), k = pattern(b * l * hq * d, 62), v = pattern(b * l * hq * d, 63);
  RefInputs in;
  in.args = shape(b, l, l, hq, hq, d);
  in.args.o_strides = os;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  const std::size_t n = static_cast<std::size_t>(b * os.batch);
  const auto o = reference_forward(in, n);
  std::vector<bool> written(n, false);
  for (int bb = 0; bb < b; ++bb)
    for (int i = 0; i < l; ++i)
      for (int hh = 0; hh < hq; ++hh)
        for (int x = 0; x < d; ++x) written[bb * os.batch + i * os.token + hh * os.head + x] = true;
  for (std::size_t e = 0; e < n; ++e) {
    if (written[e]) EXPECT_FALSE(std::isnan(o[e])) << e;
    else EXPECT_TRUE(std::isnan(o[e])) << e;
  }
  // The strided result equals the contiguous one.
  RefInputs dense = in;
  dense.args.o_strides = {};
  const auto c = reference_forward(dense, b * l * hq * d);
  for (int bb = 0; bb < b; ++bb)
    for (int i = 0; i < l; ++i)
      for (int hh = 0; hh < hq; ++hh)
        for (int x = 0; x < d; ++x)
          EXPECT_EQ(o[bb * os.batch + i * os.token + hh * os.head + x], c[((bb * l + i) * hq + hh) * d + x]);
}

TEST(Reference, InputStridesAreHonoured) {
  // Q/K/V as [B, H, L, D] (heads outer) must give the same result as the contiguous layout.
  const int d = 32, h = 2, l = 3;
  const auto q = pattern(l * h * d, 71), k = pattern(l * h * d, 72), v = pattern(l * h * d, 73);
  auto to_heads_outer = [&](const std::vector<float>& x) {
    std::vector<float> y(x.size());
    for (int i = 0; i < l; ++i)
      for (int hh = 0; hh < h; ++hh)
        for (int e = 0; e < d; ++e) y[(hh * l + i) * d + e] = x[(i * h + hh) * d + e];
    return y;
  };
  const auto qt = to_heads_outer(q), kt = to_heads_outer(k), vt = to_heads_outer(v);
  RefInputs a;
  a.args = shape(1, l, l, h, h, d);
  a.q = q.data(), a.k = k.data(), a.v = v.data();
  RefInputs t = a;
  t.args.q_strides = t.args.k_strides = t.args.v_strides = {0, d, l * d};
  t.q = qt.data(), t.k = kt.data(), t.v = vt.data();
  const auto oa = reference_forward(a, l * h * d), ot = reference_forward(t, l * h * d);
  for (std::size_t i = 0; i < oa.size(); ++i) EXPECT_EQ(oa[i], ot[i]) << i;
}

TEST(Reference, SampledRowsMatchTheFullReferenceAndMarkEveryElement) {
  // One padded sequence of 20 valid rows in a 22-row buffer, O with a head-stride gap. With
  // row_step 4, rows 0..7 and 12..19 (first and last 8) and row 8 are computed; rows 9..11 are
  // "written" (must be written, not compared); padded rows 20..21 are computed zeros; the gaps
  // are untouched.
  const int d = 32, l = 22, h = 2;
  const sigjit::Strides os{0, h * 40, 40};
  const std::size_t n = static_cast<std::size_t>(l * h * 40);
  const auto q = pattern(l * h * d, 81), k = pattern(l * h * d, 82), v = pattern(l * h * d, 83);
  const std::int32_t lens_q[1] = {20}, lens_k[1] = {22};
  RefInputs in;
  in.args = shape(1, l, l, h, h, d);
  in.args.layout = Layout::padded;
  in.args.causal = true;
  in.args.o_strides = os;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.seq_lens_q = lens_q, in.seq_lens_k = lens_k;
  const auto full = reference_forward(in, n);
  const auto sampled = sigjit::testing::reference_forward_sampled(in, n, 4);
  ASSERT_EQ(sampled.values.size(), n);
  ASSERT_EQ(sampled.state.size(), n);
  using sigjit::testing::OutState;
  for (int i = 0; i < l; ++i)
    for (int hh = 0; hh < h; ++hh)
      for (int x = 0; x < 40; ++x) {
        const std::size_t e = static_cast<std::size_t>(i * os.token + hh * os.head + x);
        if (x >= d) {
          EXPECT_EQ(sampled.state[e], OutState::untouched) << "gap " << e;
          EXPECT_TRUE(std::isnan(sampled.values[e])) << e;
          continue;
        }
        const bool computed = i < 9 || i >= 12;
        if (computed) {
          EXPECT_EQ(sampled.state[e], OutState::checked) << "row " << i;
          EXPECT_EQ(sampled.values[e], full[e]) << "row " << i;
        } else {
          EXPECT_EQ(sampled.state[e], OutState::written) << "row " << i;
          EXPECT_TRUE(std::isnan(sampled.values[e])) << "row " << i;
        }
        if (i >= 20) EXPECT_EQ(sampled.values[e], 0.0) << "padded row " << i;
      }
  // row_step 1 is the full reference.
  const auto every = sigjit::testing::reference_forward_sampled(in, n, 1);
  for (std::size_t e = 0; e < n; ++e) {
    if (std::isnan(full[e])) EXPECT_TRUE(std::isnan(every.values[e])) << e;
    else EXPECT_EQ(every.values[e], full[e]) << e;
  }
}

}  // namespace
