// The fp64 reference backward checked against central finite differences of the fp64
// reference forward on tiny problems (the loss is sum(O * dO)), plus its GQA and padding rules.
#include "tests/common/reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
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

}  // namespace
}  // namespace sigjit::testing
