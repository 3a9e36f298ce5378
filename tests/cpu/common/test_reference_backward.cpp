// The fp64 reference backward checked against central finite differences of the fp64
// reference forward on tiny problems (the loss is sum(O * dO)), plus its GQA and padding rules,
// and the sampled reference backward against the full one.
#include "tests/common/reference.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace sigjit::testing {
namespace {

struct Tiny {
  AttentionArgs args;
  std::vector<float> q, k, v, dout, score_bias;
  std::vector<int> lens_q, lens_k;
  RefInputs inputs() const {
    RefInputs in;
    in.args = args;
    in.q = q.data(), in.k = k.data(), in.v = v.data();
    in.seq_lens_q = lens_q.data(), in.seq_lens_k = lens_k.data();
    in.score_bias = score_bias.empty() ? nullptr : score_bias.data();
    return in;
  }
};

Tiny make(bool causal, bool gqa, bool padded, bool score_bias, std::mt19937& rng) {
  Tiny t;
  AttentionArgs& a = t.args;
  a.layout = padded ? Layout::padded : Layout::dense;
  a.batch = 2, a.seqlen_q = 5, a.seqlen_k = 4, a.heads_q = gqa ? 4 : 2, a.heads_kv = 2, a.head_dim = 4;
  a.causal = causal;
  t.lens_q = padded ? std::vector<int>{5, 3} : std::vector<int>{5, 5};
  t.lens_k = padded ? std::vector<int>{4, 2} : std::vector<int>{4, 4};
  std::normal_distribution<float> n(0.f, 1.f);
  auto fill = [&](std::vector<float>& x, std::size_t count) {
    x.resize(count);
    for (auto& e : x) e = n(rng);
  };
  fill(t.q, 2 * 5 * a.heads_q * 4);
  fill(t.dout, 2 * 5 * a.heads_q * 4);
  fill(t.k, 2 * 4 * 2 * 4);
  fill(t.v, 2 * 4 * 2 * 4);
  if (score_bias) fill(t.score_bias, 2 * 4);
  return t;
}

double loss(const Tiny& t) {
  const std::vector<double> o = reference_forward(t.inputs(), t.q.size());
  double l = 0;
  for (std::size_t i = 0; i < o.size(); ++i) l += o[i] * t.dout[i];
  return l;
}

// Central difference of the loss with respect to one input element.
double numeric(Tiny& t, std::vector<float>& x, std::size_t i) {
  const float h = 1.0f / 512, saved = x[i];
  x[i] = saved + h;
  const double up = loss(t);
  x[i] = saved - h;
  const double down = loss(t);
  x[i] = saved;
  return (up - down) / (2.0 * h);
}

class ReferenceBackward : public ::testing::TestWithParam<std::tuple<bool, bool, bool, bool>> {};

TEST_P(ReferenceBackward, MatchesFiniteDifferencesOfTheForward) {
  const auto [causal, gqa, padded, sb] = GetParam();
  std::mt19937 rng(std::random_device{}());
  Tiny t = make(causal, gqa, padded, sb, rng);
  const RefGrads g = reference_backward(t.inputs(), t.dout.data(), t.q.size(), t.k.size());
  double max_err = 0, max_grad = 0;
  for (std::size_t i = 0; i < t.q.size(); ++i) {
    max_err = std::max(max_err, std::fabs(numeric(t, t.q, i) - g.dq[i]));
    max_grad = std::max(max_grad, std::fabs(g.dq[i]));
  }
  for (std::size_t i = 0; i < t.k.size(); ++i) {
    max_err = std::max(max_err, std::fabs(numeric(t, t.k, i) - g.dk[i]));
    max_err = std::max(max_err, std::fabs(numeric(t, t.v, i) - g.dv[i]));
    max_grad = std::max({max_grad, std::fabs(g.dk[i]), std::fabs(g.dv[i])});
  }
  EXPECT_GT(max_grad, 1e-3) << "gradients vanished: the check would be vacuous";
  EXPECT_LT(max_err, 2e-3 * std::max(1.0, max_grad));
}

INSTANTIATE_TEST_SUITE_P(Variants, ReferenceBackward, ::testing::Combine(::testing::Bool(), ::testing::Bool(), ::testing::Bool(), ::testing::Bool()));

// Top-left causal alignment on a padded batch whose sequences have more keys than queries (0) and
// more queries than keys (1): the gradients match finite differences, keys no query sees (past
// the last query of sequence 0) get exactly zero dK and dV, and they differ from bottom-right's.
TEST(ReferenceBackwardRules, CausalTopLeftMatchesFiniteDifferences) {
  for (const bool gqa : {false, true})
    for (const bool sb : {false, true}) {
      std::mt19937 rng(11 + 2 * gqa + sb);
      Tiny t = make(true, gqa, true, sb, rng);
      t.args.seqlen_q = t.args.seqlen_k = 5;  // buffers of 5 rows on both sides
      t.lens_q = {2, 5};
      t.lens_k = {5, 3};
      t.args.causal_align = CausalAlign::top_left;
      std::normal_distribution<float> n(0.f, 1.f);
      for (std::vector<float>* x : {&t.k, &t.v}) {
        x->resize(2 * 5 * 2 * 4);
        for (auto& e : *x) e = n(rng);
      }
      if (sb) {
        t.score_bias.resize(2 * 5);
        for (auto& e : t.score_bias) e = n(rng);
      }
      const RefGrads g = reference_backward(t.inputs(), t.dout.data(), t.q.size(), t.k.size());
      double max_err = 0, max_grad = 0;
      for (std::size_t i = 0; i < t.q.size(); ++i) {
        max_err = std::max(max_err, std::fabs(numeric(t, t.q, i) - g.dq[i]));
        max_grad = std::max(max_grad, std::fabs(g.dq[i]));
      }
      for (std::size_t i = 0; i < t.k.size(); ++i) {
        max_err = std::max(max_err, std::fabs(numeric(t, t.k, i) - g.dk[i]));
        max_err = std::max(max_err, std::fabs(numeric(t, t.v, i) - g.dv[i]));
        max_grad = std::max({max_grad, std::fabs(g.dk[i]), std::fabs(g.dv[i])});
      }
      EXPECT_GT(max_grad, 1e-3) << "gradients vanished: the check would be vacuous";
      EXPECT_LT(max_err, 2e-3 * std::max(1.0, max_grad)) << "gqa " << gqa << " score bias " << sb;
      for (int j = 2; j < 5; ++j)  // sequence 0: 2 queries see keys 0 and 1 only
        for (int h = 0; h < 2; ++h)
          for (int d = 0; d < 4; ++d) {
            EXPECT_EQ(g.dk[((0 * 5 + j) * 2 + h) * 4 + d], 0.0) << j;
            EXPECT_EQ(g.dv[((0 * 5 + j) * 2 + h) * 4 + d], 0.0) << j;
          }
      Tiny br = t;
      br.args.causal_align = CausalAlign::bottom_right;
      const RefGrads gb = reference_backward(br.inputs(), br.dout.data(), br.q.size(), br.k.size());
      EXPECT_NE(g.dk, gb.dk);
      EXPECT_NE(g.dq, gb.dq);
    }
}

TEST(ReferenceBackwardRules, PaddedRowsAndKeysGetExactlyZero) {
  std::mt19937 rng(7);
  const Tiny t = make(false, true, true, false, rng);
  const RefGrads g = reference_backward(t.inputs(), t.dout.data(), t.q.size(), t.k.size());
  const int hq = t.args.heads_q, D = 4;
  for (int i = 3; i < 5; ++i)  // sequence 1 has 3 valid queries
    for (int h = 0; h < hq; ++h)
      for (int d = 0; d < D; ++d) EXPECT_EQ(g.dq[((1 * 5 + i) * hq + h) * D + d], 0.0);
  for (int j = 2; j < 4; ++j)  // and 2 valid keys
    for (int h = 0; h < 2; ++h)
      for (int d = 0; d < D; ++d) {
        EXPECT_EQ(g.dk[((1 * 4 + j) * 2 + h) * D + d], 0.0);
        EXPECT_EQ(g.dv[((1 * 4 + j) * 2 + h) * D + d], 0.0);
      }
}


// The sampled reference backward equals the full one bit for bit on the rows and keys it samples,
// marks the others NaN, and leaves padded rows/keys and stride gaps 0, across layouts, causal
// with Lq < Lk and Lq > Lk, GQA, score bias, both bias modes and non-contiguous strides.
class ReferenceBackwardSampled : public ::testing::TestWithParam<std::tuple<Layout, bool, bool, bool, bool, int>> {};

TEST_P(ReferenceBackwardSampled, EqualsTheFullReferenceOnSampledRowsAndKeys) {
  // lens_kind 0: Lq == Lk, 1: Lq > Lk, 2: Lq < Lk
  const auto [layout, causal, gqa, sb, strided, lens_kind] = GetParam();
  const int D = 8, hq = gqa ? 4 : 2, hkv = 2, row_step = 5, key_step = 7;
  std::vector<int> lq, lk;
  if (layout == Layout::dense) {
    lq = {lens_kind == 2 ? 23 : 45, lens_kind == 2 ? 23 : 45};
    lk = {lens_kind == 1 ? 29 : lens_kind == 2 ? 50 : 45, lens_kind == 1 ? 29 : lens_kind == 2 ? 50 : 45};
  } else {
    lq = {lens_kind == 2 ? 23 : 41, 20, 1};
    lk = {lens_kind == 1 ? 29 : lens_kind == 2 ? 50 : 41, lens_kind == 2 ? 33 : 20, 1};
  }
  AttentionArgs a;
  a.layout = layout;
  a.batch = static_cast<int>(lq.size());
  a.heads_q = hq, a.heads_kv = hkv, a.head_dim = D;
  a.causal = causal;
  a.bias_mode = causal != sb ? BiasMode::scalar : BiasMode::log_n;  // both modes, with and without score bias and causal
  a.bias = -1.5f;
  const bool varlen = layout == Layout::varlen;
  std::vector<int> cu_q{0}, cu_k{0};
  for (int l : lq) cu_q.push_back(cu_q.back() + l);
  for (int l : lk) cu_k.push_back(cu_k.back() + l);
  a.seqlen_q = *std::max_element(lq.begin(), lq.end());
  a.seqlen_k = *std::max_element(lk.begin(), lk.end());
  a.total_q = cu_q.back(), a.total_k = cu_k.back();
  const int rows_q = varlen ? a.total_q : a.seqlen_q, rows_k = varlen ? a.total_k : a.seqlen_k, batches = varlen ? 1 : a.batch;
  if (strided) {  // Q/O: a 3-element gap after every head; K/V: head-major
    a.q_strides = {static_cast<std::int64_t>(rows_q) * hq * (D + 3), hq * (D + 3), D + 3};
    a.o_strides = a.q_strides;
    a.k_strides = {static_cast<std::int64_t>(hkv) * rows_k * D, D, static_cast<std::int64_t>(rows_k) * D};
    a.v_strides = a.k_strides;
  }
  const Strides qs = effective_strides(a.q_strides, rows_q, hq, D), ks = effective_strides(a.k_strides, rows_k, hkv, D);
  const std::size_t nq = static_cast<std::size_t>(batches * qs.batch), nk = static_cast<std::size_t>(batches * ks.batch);
  std::mt19937 rng(11);
  std::normal_distribution<float> n(0.f, 1.f);
  auto fill = [&](std::size_t count) {
    std::vector<float> x(count);
    for (auto& e : x) e = n(rng);
    return x;
  };
  const auto q = fill(nq), dout = fill(nq), k = fill(nk), v = fill(nk);
  const auto bias = fill(varlen ? a.total_k : a.batch * a.seqlen_k);
  RefInputs in;
  in.args = a;
  in.q = q.data(), in.k = k.data(), in.v = v.data();
  in.seq_lens_q = lq.data(), in.seq_lens_k = lk.data();
  in.cu_seqlens_q = cu_q.data(), in.cu_seqlens_k = cu_k.data();
  in.score_bias = sb ? bias.data() : nullptr;
  const RefGrads full = reference_backward(in, dout.data(), nq, nk);
  const RefGrads part = reference_backward_sampled(in, dout.data(), nq, nk, row_step, key_step);
  ASSERT_EQ(part.dq.size(), nq);
  ASSERT_EQ(part.dk.size(), nk);
  ASSERT_EQ(part.dv.size(), nk);
  // What each element must be: 0 (padding, gaps), sampled (equal to full), or not sampled (NaN).
  enum Kind : char { zero, sampled, skipped };
  std::vector<char> kq(nq, zero), kk(nk, zero);
  const auto pick = [](int i, int len, int step) { return i % step == 0 || i < 8 || i >= len - 8; };
  for (int b = 0; b < a.batch; ++b) {
    const std::int64_t q0 = varlen ? cu_q[b] * qs.token : b * qs.batch, k0 = varlen ? cu_k[b] * ks.token : b * ks.batch;
    for (int h = 0; h < hq; ++h)
      for (int i = 0; i < lq[b]; ++i) std::fill_n(kq.begin() + q0 + i * qs.token + h * qs.head, D, pick(i, lq[b], row_step) ? sampled : skipped);
    for (int h = 0; h < hkv; ++h)
      for (int j = 0; j < lk[b]; ++j) std::fill_n(kk.begin() + k0 + j * ks.token + h * ks.head, D, pick(j, lk[b], key_step) ? sampled : skipped);
  }
  long counts[3] = {0, 0, 0};
  double max_grad = 0;
  const auto check = [&](const std::vector<double>& f, const std::vector<double>& s, const std::vector<char>& kind, const char* what) {
    for (std::size_t e = 0; e < f.size(); ++e) {
      ++counts[static_cast<int>(kind[e])];
      ASSERT_FALSE(std::isnan(f[e])) << what << " full reference NaN at " << e;
      max_grad = std::max(max_grad, std::fabs(f[e]));
      if (kind[e] == zero) {
        EXPECT_EQ(f[e], 0.0) << what << " " << e;
        EXPECT_EQ(s[e], 0.0) << what << " " << e;
      } else if (kind[e] == sampled) {
        EXPECT_EQ(s[e], f[e]) << what << " " << e;
      } else {
        EXPECT_TRUE(std::isnan(s[e])) << what << " " << e;
      }
    }
  };
  check(full.dq, part.dq, kq, "dq");
  check(full.dk, part.dk, kk, "dk");
  check(full.dv, part.dv, kk, "dv");
  EXPECT_GT(counts[sampled], 0);
  EXPECT_GT(counts[skipped], 0) << "nothing left out: the sampling went untested";
  EXPECT_GT(max_grad, 1e-3);
  // The dQ and dK/dV passes agree on which (i, j) pairs count (causal alignment included): per
  // sequence and kv head, sum Q.dQ over the group's rows equals sum K.dK over the keys (both are
  // scale sum dS_ij Q_i.K_j), and sum V.dV equals sum dO.O with O from the forward reference
  // (both are sum P_ij dO_i.V_j).
  const std::vector<double> o = reference_forward(in, nq);
  for (int b = 0; b < a.batch; ++b) {
    const std::int64_t q0 = varlen ? cu_q[b] * qs.token : b * qs.batch, k0 = varlen ? cu_k[b] * ks.token : b * ks.batch;
    for (int hk = 0; hk < hkv; ++hk) {
      double qdq = 0, odo = 0, kdk = 0, vdv = 0;
      for (int h = hk * (hq / hkv); h < (hk + 1) * (hq / hkv); ++h)
        for (int i = 0; i < lq[b]; ++i)
          for (int d = 0; d < D; ++d) {
            const std::int64_t e = q0 + i * qs.token + h * qs.head + d;
            qdq += q[e] * full.dq[e], odo += dout[e] * o[e];
          }
      for (int j = 0; j < lk[b]; ++j)
        for (int d = 0; d < D; ++d) {
          const std::int64_t e = k0 + j * ks.token + hk * ks.head + d;
          kdk += k[e] * full.dk[e], vdv += v[e] * full.dv[e];
        }
      EXPECT_NEAR(qdq, kdk, 1e-9 * (1 + std::fabs(qdq))) << "sequence " << b << " kv head " << hk;
      EXPECT_NEAR(vdv, odo, 1e-9 * (1 + std::fabs(odo))) << "sequence " << b << " kv head " << hk;
    }
  }
  // Steps of 1 sample everything.
  const RefGrads every = reference_backward_sampled(in, dout.data(), nq, nk, 1, 1);
  EXPECT_TRUE(every.dq == full.dq && every.dk == full.dk && every.dv == full.dv);
}

INSTANTIATE_TEST_SUITE_P(Variants, ReferenceBackwardSampled,
                         ::testing::Combine(::testing::Values(Layout::dense, Layout::padded, Layout::varlen), ::testing::Bool(), ::testing::Bool(),
                                            ::testing::Bool(), ::testing::Bool(), ::testing::Values(0, 1, 2)));

}  // namespace
}  // namespace sigjit::testing
