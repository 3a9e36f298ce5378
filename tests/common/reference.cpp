#include "tests/common/reference.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>

namespace sigjit::testing {

int causal_offset(const AttentionArgs& a, int len_q, int len_k) { return a.causal_align == CausalAlign::top_left ? 0 : len_k - len_q; }

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
          if (a.causal && j > i + causal_offset(a, g.len_q, g.len_k)) break;
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
  return reference_backward_sampled(in, dout, q_elements, k_elements, 1, 1);
}

namespace {

bool is_sampled(int i, int len, int step) { return i % step == 0 || i < 8 || i >= len - 8; }

// a.b and c.e over n elements in fp64, four partial sums each. The order is fixed and products
// commute exactly, so dQ's pass (Q and dO rows held in double) and dK/dV's (K and V rows held in
// double) get the same bits for the same (i, j).
template <class A, class B>
void dot2(const A* a, const B* b, const A* c, const B* e, int n, double& ab, double& ce) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
  int d = 0;
  for (; d + 4 <= n; d += 4) {
    s0 += static_cast<double>(a[d]) * b[d], t0 += static_cast<double>(c[d]) * e[d];
    s1 += static_cast<double>(a[d + 1]) * b[d + 1], t1 += static_cast<double>(c[d + 1]) * e[d + 1];
    s2 += static_cast<double>(a[d + 2]) * b[d + 2], t2 += static_cast<double>(c[d + 2]) * e[d + 2];
    s3 += static_cast<double>(a[d + 3]) * b[d + 3], t3 += static_cast<double>(c[d + 3]) * e[d + 3];
  }
  for (; d < n; ++d) s0 += static_cast<double>(a[d]) * b[d], t0 += static_cast<double>(c[d]) * e[d];
  ab = (s0 + s1) + (s2 + s3);
  ce = (t0 + t1) + (t2 + t3);
}

}  // namespace

// Work items are blocks of sampled query rows (their dQ: O(Lk D) a row) and blocks of sampled
// keys of a kv head (their dK and dV over the group's query heads: O(group Lq D) a key); items go
// to all hardware threads, so a single long sequence keeps them all busy. P_ij and dS_ij come from the same dot products and
// the same function in both passes, and the full reference (steps 1) is this code too.
RefGrads reference_backward_sampled(const RefInputs& in, const float* dout, std::size_t q_elements, std::size_t k_elements, int row_step,
                                    int key_step) {
  const AttentionArgs& a = in.args;
  const Problem pr(a);
  const int D = a.head_dim, group = pr.group;
  const bool varlen = pr.varlen;
  const Strides &qs = pr.qs, &os = pr.os, &ks = pr.ks, &vs = pr.vs;
  const double scale = pr.scale;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  row_step = std::max(row_step, 1), key_step = std::max(key_step, 1);
  RefGrads g{std::vector<double>(q_elements, 0.0), std::vector<double>(k_elements, 0.0), std::vector<double>(k_elements, 0.0)};

  struct Seq {
    Geometry geo;
    std::int64_t qb, ob, kb, vb;
    double bias;
    const float* score_bias;  // this sequence's key 0, or null
  };
  std::vector<Seq> seqs(a.batch);
  for (int b = 0; b < a.batch; ++b) {
    Seq& s = seqs[b];
    s.geo = sequence_geometry(in, b);
    s.qb = varlen ? 0 : b * qs.batch, s.ob = varlen ? 0 : b * os.batch;
    s.kb = varlen ? 0 : b * ks.batch, s.vb = varlen ? 0 : b * vs.batch;
    s.bias = a.bias_mode == BiasMode::log_n ? -std::log(static_cast<double>(s.geo.len_k > 1 ? s.geo.len_k : 1)) : a.bias;
    s.score_bias = in.score_bias ? in.score_bias + (varlen ? s.geo.k_row0 : b * pr.score_bias_stride) : nullptr;
  }
  const auto q_row = [&](const Seq& s, int h, int i) { return s.qb + (s.geo.q_row0 + i) * qs.token + h * qs.head; };
  const auto o_row = [&](const Seq& s, int h, int i) { return s.ob + (s.geo.q_row0 + i) * os.token + h * os.head; };
  const auto k_row = [&](const Seq& s, int hk, int j) { return s.kb + (s.geo.k_row0 + j) * ks.token + hk * ks.head; };
  const auto v_row = [&](const Seq& s, int hk, int j) { return s.vb + (s.geo.k_row0 + j) * vs.token + hk * vs.head; };
  // Causal: query i sees keys j <= i + causal_offset (Lk - Lq bottom-right, 0 top-left).
  const auto offset = [&](const Seq& s) { return causal_offset(a, s.geo.len_q, s.geo.len_k); };
  const auto last_key = [&](const Seq& s, int i) { return a.causal ? std::min(s.geo.len_k - 1, i + offset(s)) : s.geo.len_k - 1; };
  const auto first_query = [&](const Seq& s, int j) { return a.causal ? std::max(0, j - offset(s)) : 0; };
  // P_ij and dS_ij = dP_ij P_ij (1 - P_ij) from the dot products Q_i.K_j and dO_i.V_j.
  const auto score = [&](const Seq& s, int j, double dot, double dp, double& p, double& ds) {
    double x = scale * dot + s.bias;
    if (s.score_bias) x += s.score_bias[j];
    p = sigmoid(x);
    ds = dp * p * (1.0 - p);
  };

  // Work items: up to kBlock sampled rows (or keys) of one (sequence, head), so the K/V (or Q/dO)
  // rows they all stream through are read once per block.
  constexpr int kBlock = 8;
  struct Item {
    int b, head;  // query head, or kv head for a block of keys
    std::size_t first, count;  // into index
    bool key;
  };
  std::vector<int> index;
  std::vector<Item> items;
  const auto add_block = [&](int b, int head, bool key, std::size_t from) {
    for (std::size_t f = from; f < index.size(); f += kBlock) items.push_back({b, head, f, std::min<std::size_t>(kBlock, index.size() - f), key});
  };
  for (int b = 0; b < a.batch; ++b) {
    const Seq& s = seqs[b];
    for (int h = 0; h < a.heads_q; ++h) {
      const std::size_t from = index.size();
      for (int i = 0; i < s.geo.len_q; ++i) {
        if (is_sampled(i, s.geo.len_q, row_step)) index.push_back(i);
        else std::fill_n(g.dq.begin() + q_row(s, h, i), D, nan);
      }
      add_block(b, h, false, from);
    }
    for (int hk = 0; hk < pr.heads_kv; ++hk) {
      const std::size_t from = index.size();
      for (int j = 0; j < s.geo.len_k; ++j) {
        if (is_sampled(j, s.geo.len_k, key_step)) index.push_back(j);
        else std::fill_n(g.dk.begin() + k_row(s, hk, j), D, nan), std::fill_n(g.dv.begin() + v_row(s, hk, j), D, nan);
      }
      add_block(b, hk, true, from);
    }
  }

  // fixed_a/fixed_b: the block's own two input rows each, in double; acc_a/acc_b: its gradient rows.
  struct Scratch {
    std::vector<double> fixed_a, fixed_b, acc_a, acc_b;
  };
  const auto run = [&](const Item& it, Scratch& w) {
    const Seq& s = seqs[it.b];
    const int* rows = index.data() + it.first;
    const int n = static_cast<int>(it.count);
    std::fill(w.acc_a.begin(), w.acc_a.end(), 0.0);
    std::fill(w.acc_b.begin(), w.acc_b.end(), 0.0);
    double dot, dp, p, ds;
    if (!it.key) {  // dQ_i = scale sum_j dS_ij K_j, j ascending for each row i
      const int h = it.head, hk = h / group;
      for (int r = 0; r < n; ++r) {
        std::copy_n(in.q + q_row(s, h, rows[r]), D, w.fixed_a.begin() + r * D);
        std::copy_n(dout + o_row(s, h, rows[r]), D, w.fixed_b.begin() + r * D);
      }
      for (int j = 0, end = last_key(s, rows[n - 1]); j <= end; ++j) {
        const float* k = in.k + k_row(s, hk, j);
        const float* v = in.v + v_row(s, hk, j);
        for (int r = 0; r < n; ++r) {
          if (j > last_key(s, rows[r])) continue;
          dot2(w.fixed_a.data() + r * D, k, w.fixed_b.data() + r * D, v, D, dot, dp);
          score(s, j, dot, dp, p, ds);
          const double c = scale * ds;
          double* acc = w.acc_a.data() + r * D;
          for (int d = 0; d < D; ++d) acc[d] += c * k[d];
        }
      }
      for (int r = 0; r < n; ++r) std::copy_n(w.acc_a.begin() + r * D, D, g.dq.begin() + q_row(s, h, rows[r]));
      return;
    }
    // dK_j = scale sum_{h in group, i} dS_ij Q_i, dV_j = sum_{h in group, i} P_ij dO_i, (h, i)
    // ascending for each key j
    const int hk = it.head;
    for (int r = 0; r < n; ++r) {
      std::copy_n(in.k + k_row(s, hk, rows[r]), D, w.fixed_a.begin() + r * D);
      std::copy_n(in.v + v_row(s, hk, rows[r]), D, w.fixed_b.begin() + r * D);
    }
    for (int h = hk * group; h < (hk + 1) * group; ++h)
      for (int i = first_query(s, rows[0]); i < s.geo.len_q; ++i) {
        const float* q = in.q + q_row(s, h, i);
        const float* o = dout + o_row(s, h, i);
        for (int r = 0; r < n; ++r) {
          if (i < first_query(s, rows[r])) continue;
          dot2(w.fixed_a.data() + r * D, q, w.fixed_b.data() + r * D, o, D, dot, dp);
          score(s, rows[r], dot, dp, p, ds);
          const double c = scale * ds;
          double *acc_k = w.acc_a.data() + r * D, *acc_v = w.acc_b.data() + r * D;
          for (int d = 0; d < D; ++d) {
            acc_k[d] += c * q[d];
            acc_v[d] += p * o[d];
          }
        }
      }
    for (int r = 0; r < n; ++r) {
      std::copy_n(w.acc_a.begin() + r * D, D, g.dk.begin() + k_row(s, hk, rows[r]));
      std::copy_n(w.acc_b.begin() + r * D, D, g.dv.begin() + v_row(s, hk, rows[r]));
    }
  };

  const std::size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const int workers = static_cast<int>(std::max<std::size_t>(1, std::min(items.size(), hw)));
  std::atomic<std::size_t> next{0};
  const auto worker = [&] {
    const std::size_t size = static_cast<std::size_t>(kBlock) * D;
    Scratch w{std::vector<double>(size), std::vector<double>(size), std::vector<double>(size), std::vector<double>(size)};
    for (std::size_t n; (n = next.fetch_add(1, std::memory_order_relaxed)) < items.size();) run(items[n], w);
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  return g;
}

}  // namespace sigjit::testing
