#include "tests/common/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

namespace sigjit::testing {

double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }

Strides effective_strides(Strides s, int tokens, int heads, int head_dim) {
  if (s.head == 0) s.head = head_dim;
  if (s.token == 0) s.token = static_cast<std::int64_t>(heads) * s.head;
  if (s.batch == 0) s.batch = static_cast<std::int64_t>(tokens) * s.token;
  return s;
}

std::vector<double> reference_forward(const RefInputs& in, std::size_t o_elements) {
  return reference_forward_sampled(in, o_elements, 1).values;
}

namespace {

struct Geometry {
  int len_q, len_k;
  std::int64_t q_row0, k_row0;
};

Geometry sequence_geometry(const RefInputs& in, int b) {
  const AttentionArgs& a = in.args;
  if (a.layout == Layout::padded) return {in.seq_lens_q[b], in.seq_lens_k[b], 0, 0};
  if (a.layout == Layout::varlen) {
    return {in.cu_seqlens_q[b + 1] - in.cu_seqlens_q[b], in.cu_seqlens_k[b + 1] - in.cu_seqlens_k[b], in.cu_seqlens_q[b], in.cu_seqlens_k[b]};
  }
  return {a.seqlen_q, a.seqlen_k, 0, 0};
}

// Shapes and effective strides of a call, shared by the forward and backward references.
struct Problem {
  explicit Problem(const AttentionArgs& a)
      : heads_kv(a.heads_kv ? a.heads_kv : a.heads_q),
        group(a.heads_q / heads_kv),
        varlen(a.layout == Layout::varlen),
        qs(effective_strides(a.q_strides, varlen ? a.total_q : a.seqlen_q, a.heads_q, a.head_dim)),
        os(effective_strides(a.o_strides, varlen ? a.total_q : a.seqlen_q, a.heads_q, a.head_dim)),
        ks(effective_strides(a.k_strides, varlen ? a.total_k : a.seqlen_k, heads_kv, a.head_dim)),
        vs(effective_strides(a.v_strides, varlen ? a.total_k : a.seqlen_k, heads_kv, a.head_dim)),
        scale(a.scale ? static_cast<double>(*a.scale) : 1.0 / std::sqrt(static_cast<double>(a.head_dim))),
        score_bias_stride(a.score_bias_stride ? a.score_bias_stride : a.seqlen_k) {}
  int heads_kv, group;
  bool varlen;
  Strides qs, os, ks, vs;
  double scale;
  std::int64_t score_bias_stride;
};

}  // namespace

RefOutput reference_forward_sampled(const RefInputs& in, std::size_t o_elements, int row_step) {
  const AttentionArgs& a = in.args;
  const Problem pr(a);
  const int heads_kv = pr.heads_kv, group = pr.group;
  const bool varlen = pr.varlen;
  const Strides &qs = pr.qs, &os = pr.os, &ks = pr.ks, &vs = pr.vs;
  const double scale = pr.scale;
  const std::int64_t sb_stride = pr.score_bias_stride;

  RefOutput out{std::vector<double>(o_elements, std::numeric_limits<double>::quiet_NaN()), std::vector<OutState>(o_elements, OutState::untouched)};
  auto work = [&](int b, int h) {
    const Geometry g = sequence_geometry(in, b);
    const std::int64_t qb = varlen ? 0 : b * qs.batch, ob = varlen ? 0 : b * os.batch;
    const std::int64_t kb = varlen ? 0 : b * ks.batch, vb = varlen ? 0 : b * vs.batch;
    const double bias = a.bias_mode == BiasMode::log_n ? -std::log(static_cast<double>(g.len_k > 1 ? g.len_k : 1)) : a.bias;
    const int rows_out = a.layout == Layout::padded ? a.seqlen_q : g.len_q;
    const int hk = h / group;
    std::vector<double> acc(a.head_dim);
    for (int i = 0; i < rows_out; ++i) {
      const bool sampled = i % row_step == 0 || i < 8 || i >= g.len_q - 8;
      const std::int64_t orow = ob + (g.q_row0 + i) * os.token + h * os.head;
      std::fill(acc.begin(), acc.end(), 0.0);
      if (i < g.len_q && sampled) {
        const float* qrow = in.q + qb + (g.q_row0 + i) * qs.token + h * qs.head;
        for (int j = 0; j < g.len_k; ++j) {
          if (a.causal && j > i + (g.len_k - g.len_q)) break;
          const float* krow = in.k + kb + (g.k_row0 + j) * ks.token + hk * ks.head;
          double dot = 0;
          for (int d = 0; d < a.head_dim; ++d) dot += static_cast<double>(qrow[d]) * krow[d];
          double x = scale * dot + bias;
          if (in.score_bias) x += in.score_bias[varlen ? g.k_row0 + j : b * sb_stride + j];
          const double p = sigmoid(x);
          const float* vrow = in.v + vb + (g.k_row0 + j) * vs.token + hk * vs.head;
          for (int d = 0; d < a.head_dim; ++d) acc[d] += p * vrow[d];
        }
      }
      const bool computed = i >= g.len_q || sampled;
      for (int d = 0; d < a.head_dim; ++d) {
        if (computed) out.values[orow + d] = acc[d];
        out.state[orow + d] = computed ? OutState::checked : OutState::written;
      }
    }
  };
  const int pairs = a.batch * a.heads_q;
  const int workers = std::max(1, std::min<int>(pairs, static_cast<int>(std::thread::hardware_concurrency())));
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (int pair = w; pair < pairs; pair += workers) work(pair / a.heads_q, pair % a.heads_q);
    });
  }
  for (auto& t : pool) t.join();
  return out;
}

RefGrads reference_backward(const RefInputs& in, const float* dout, std::size_t q_elements, std::size_t k_elements) {
  const AttentionArgs& a = in.args;
  const Problem pr(a);
  const int heads_kv = pr.heads_kv, group = pr.group;
  const bool varlen = pr.varlen;
  const Strides &qs = pr.qs, &os = pr.os, &ks = pr.ks, &vs = pr.vs;
  const double scale = pr.scale;
  const std::int64_t sb_stride = pr.score_bias_stride;
  RefGrads g{std::vector<double>(q_elements, 0.0), std::vector<double>(k_elements, 0.0), std::vector<double>(k_elements, 0.0)};
  // One worker per (sequence, kv head): the query heads of a group add into the same dK/dV rows.
  auto work = [&](int b, int hk) {
    const Geometry geo = sequence_geometry(in, b);
    const std::int64_t qb = varlen ? 0 : b * qs.batch, ob = varlen ? 0 : b * os.batch;
    const std::int64_t kb = varlen ? 0 : b * ks.batch, vb = varlen ? 0 : b * vs.batch;
    const double bias = a.bias_mode == BiasMode::log_n ? -std::log(static_cast<double>(geo.len_k > 1 ? geo.len_k : 1)) : a.bias;
    for (int h = hk * group; h < (hk + 1) * group; ++h) {
      for (int i = 0; i < geo.len_q; ++i) {
        const std::int64_t qoff = qb + (geo.q_row0 + i) * qs.token + h * qs.head;
        const std::int64_t ooff = ob + (geo.q_row0 + i) * os.token + h * os.head;
        for (int j = 0; j < geo.len_k; ++j) {
          if (a.causal && j > i + (geo.len_k - geo.len_q)) break;
          const std::int64_t koff = kb + (geo.k_row0 + j) * ks.token + hk * ks.head;
          const std::int64_t voff = vb + (geo.k_row0 + j) * vs.token + hk * vs.head;
          double dot = 0, dp = 0;
          for (int d = 0; d < a.head_dim; ++d) {
            dot += static_cast<double>(in.q[qoff + d]) * in.k[koff + d];
            dp += static_cast<double>(dout[ooff + d]) * in.v[voff + d];
          }
          double x = scale * dot + bias;
          if (in.score_bias) x += in.score_bias[varlen ? geo.k_row0 + j : b * sb_stride + j];
          const double p = sigmoid(x), ds = dp * p * (1.0 - p);
          for (int d = 0; d < a.head_dim; ++d) {
            g.dv[voff + d] += p * dout[ooff + d];
            g.dq[qoff + d] += scale * ds * in.k[koff + d];
            g.dk[koff + d] += scale * ds * in.q[qoff + d];
          }
        }
      }
    }
  };
  const int pairs = a.batch * heads_kv;
  const int workers = std::max(1, std::min<int>(pairs, static_cast<int>(std::thread::hardware_concurrency())));
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (int pair = w; pair < pairs; pair += workers) work(pair / heads_kv, pair % heads_kv);
    });
  }
  for (auto& t : pool) t.join();
  return g;
}

}  // namespace sigjit::testing
