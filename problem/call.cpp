#include "problem/call.hpp"

#include "problem/spec.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace sigjit::detail {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(message); }

void check_tensor_pointer(const char* name, const void* ptr) {
  if (ptr == nullptr) fail(fmt::format("{}: null pointer; pass a device pointer to the tensor's first element", name));
  if (reinterpret_cast<std::uintptr_t>(ptr) % 16 != 0) {
    fail(fmt::format("{}: pointer {} is not 16-byte aligned; sigjit loads 16-byte vectors (slice tensors at multiples of 8 elements)", name, ptr));
  }
}

// Fills zero strides with the contiguous layout and checks the rest: multiples of 8 elements
// (16 bytes), no two (token, head) positions sharing memory, and every element's offset
// representable (in bytes) as an int64. Products and sums are taken in 128 bits: no stride a
// caller passes can overflow the checks themselves.
Strides check_strides(const char* name, Strides s, bool varlen, int tokens, int heads, int head_dim, int batch = 1) {
  using i128 = __int128;
  constexpr i128 kMax = std::numeric_limits<std::int64_t>::max();
  // Innermost first, each checked before the next is derived from it: a bad head stride is
  // reported as such, not as the token stride derived from it.
  auto check = [&](const char* dim, std::int64_t stride) {
    if (stride < 0) fail(fmt::format("{}_strides.{}={}: strides must be positive", name, dim, stride));
    if (stride % 8 != 0) fail(fmt::format("{}_strides.{}={}: strides must be multiples of 8 elements (16 bytes)", name, dim, stride));
  };
  auto derive = [&](const char* dim, const char* count_name, int count, const char* inner_dim, std::int64_t inner) {
    const i128 v = static_cast<i128>(count) * inner;
    if (v > kMax)
      fail(fmt::format("{}_strides.{} (0: contiguous) would be {} x {}_strides.{}={}, which overflows int64; pass smaller strides", name,
                       dim, count_name, name, inner_dim, inner));
    return static_cast<std::int64_t>(v);
  };
  if (s.head == 0) s.head = head_dim;
  check("head", s.head);
  if (s.token == 0) s.token = derive("token", "heads", heads, "head", s.head);
  check("token", s.token);
  if (!varlen) {
    if (s.batch == 0) s.batch = derive("batch", "seqlen", tokens, "token", s.token);
    check("batch", s.batch);
  } else if (s.batch == 0) {
    s.batch = static_cast<i128>(tokens) * s.token <= kMax ? static_cast<std::int64_t>(tokens) * s.token : 0;  // unused for varlen
  }
  // The last element's offset in bytes (2-byte elements) must fit an int64 (the kernels' offsets).
  const i128 last = static_cast<i128>(std::max(tokens, 1) - 1) * s.token + static_cast<i128>(std::max(heads, 1) - 1) * s.head + head_dim +
                    (varlen ? 0 : static_cast<i128>(std::max(batch, 1) - 1) * s.batch);
  if (2 * last > kMax)
    fail(fmt::format("{}_strides (batch {}, token {}, head {}): the tensor would span {} elements, beyond the address space", name, s.batch,
                     s.token, s.head, static_cast<long double>(last)));
  if (heads > 1 && s.head < head_dim) fail(fmt::format("{}_strides.head={} is smaller than head_dim={}: heads would overlap", name, s.head, head_dim));
  if (tokens > 1 && s.token < head_dim) fail(fmt::format("{}_strides.token={} is smaller than head_dim={}: tokens would overlap", name, s.token, head_dim));
  if (tokens > 1 && heads > 1) {
    const bool heads_inner = s.head <= s.token;
    const std::int64_t inner = heads_inner ? s.head : s.token, outer = heads_inner ? s.token : s.head;
    const int inner_count = heads_inner ? heads : tokens;
    // The outer stride must step past the inner dimension's whole extent: (count - 1) strides
    // plus one head_dim run.
    if (static_cast<i128>(outer) < static_cast<i128>(inner) * (inner_count - 1) + head_dim) {
      fail(fmt::format("{}_strides: token stride {} and head stride {} make different (token, head) positions overlap", name, s.token, s.head));
    }
  }
  return s;
}

// True when no two positions of a grid of (stride, count) dimensions, each position a run of
// `run` contiguous elements, share memory: sorted by stride, every dimension that steps must
// step past the whole extent of the dimensions inside it.
bool disjoint(std::vector<std::pair<std::int64_t, std::int64_t>> dims, std::int64_t run) {
  std::sort(dims.begin(), dims.end());
  __int128 extent = run;  // 128 bits: no overflow for any int64 strides and counts
  for (const auto& [stride, count] : dims) {
    if (count <= 1) continue;
    if (stride < extent) return false;
    extent += static_cast<__int128>(count - 1) * stride;
  }
  return true;
}

void check_positive(const char* name, int value, int limit = 1 << 30) {
  if (value < 0 || value > limit) fail(fmt::format("{}={}: must be in [0, {}]", name, value, limit));
}

}  // namespace

Resolved resolve(const AttentionArgs& in) {
  Resolved r{in, 0.0f};
  AttentionArgs& a = r.args;
  if (a.dtype != DType::bf16 && a.dtype != DType::fp16 && a.dtype != DType::fp8_e4m3)
    fail(fmt::format("dtype={}: must be bf16, fp16 or fp8_e4m3 (0, 1 or 2)", static_cast<int>(a.dtype)));
  const bool fp8 = a.dtype == DType::fp8_e4m3;
  if (fp8 && a.head_dim != 64 && a.head_dim != 128) {
    fail(fmt::format("head_dim={}: dtype fp8_e4m3 supports head dims 64 and 128; use bf16 or fp16 for head_dim {}", a.head_dim, a.head_dim));
  }
  if (!fp8 && (a.q_descale || a.k_descale || a.v_descale)) {
    fail("q_descale/k_descale/v_descale: descale factors belong to dtype fp8_e4m3; pass nullptr for bf16 and fp16");
  }
  for (const auto& [name, ptr] : {std::pair<const char*, const float*>{"q_descale", a.q_descale}, {"k_descale", a.k_descale}, {"v_descale", a.v_descale}}) {
    if (reinterpret_cast<std::uintptr_t>(ptr) % 4 != 0) fail(fmt::format("{}: pointer is not 4-byte aligned (fp32 array expected)", name));
  }
  if (a.descale_stride_batch < 0 || a.descale_stride_head < 0) {
    fail(fmt::format("descale_stride_batch={}, descale_stride_head={}: must be >= 0 (0: the same factor for every batch or head)",
                     a.descale_stride_batch, a.descale_stride_head));
  }
  if (a.layout != Layout::dense && a.layout != Layout::padded && a.layout != Layout::varlen)
    fail(fmt::format("layout={}: must be dense, padded or varlen (0, 1 or 2)", static_cast<int>(a.layout)));
  const auto& dims = supported_head_dims();
  if (std::find(dims.begin(), dims.end(), a.head_dim) == dims.end()) {
    fail(fmt::format("head_dim={}: unsupported; supported head dims are {}", a.head_dim, fmt::join(dims, ", ")));
  }
  check_positive("batch", a.batch, 65535);
  check_positive("seqlen_q", a.seqlen_q);
  check_positive("seqlen_k", a.seqlen_k);
  if (a.heads_q < 1 || a.heads_q > 65535) fail(fmt::format("heads_q={}: must be in [1, 65535]", a.heads_q));
  if (a.heads_kv == 0) a.heads_kv = a.heads_q;
  if (a.heads_kv < 1 || a.heads_q % a.heads_kv != 0) {
    fail(fmt::format("heads_kv={}: heads_q={} must be a positive multiple of heads_kv (GQA/MQA)", a.heads_kv, a.heads_q));
  }
  const bool varlen = a.layout == Layout::varlen;
  if (varlen) {
    check_positive("total_q", a.total_q);
    check_positive("total_k", a.total_k);
    if (!a.cu_seqlens_q || !a.cu_seqlens_k) fail("cu_seqlens_q/cu_seqlens_k: the varlen layout needs both [batch + 1] device arrays");
  } else if (a.cu_seqlens_q || a.cu_seqlens_k) {
    fail("cu_seqlens_q/cu_seqlens_k: only used by layout varlen; set layout = Layout::varlen or pass nullptr");
  }
  if (a.layout == Layout::padded) {
    if (!a.seq_lens_q || !a.seq_lens_k) fail("seq_lens_q/seq_lens_k: the padded layout needs both [batch] device arrays");
  } else if (a.seq_lens_q || a.seq_lens_k) {
    fail("seq_lens_q/seq_lens_k: only used by layout padded; set layout = Layout::padded or pass nullptr");
  }
  check_tensor_pointer("q", a.q);
  check_tensor_pointer("k", a.k);
  check_tensor_pointer("v", a.v);
  check_tensor_pointer("o", a.o);
  const int rows_q = varlen ? a.total_q : a.seqlen_q, rows_k = varlen ? a.total_k : a.seqlen_k;
  a.q_strides = check_strides("q", a.q_strides, varlen, rows_q, a.heads_q, a.head_dim, a.batch);
  a.o_strides = check_strides("o", a.o_strides, varlen, rows_q, a.heads_q, a.head_dim, a.batch);
  a.k_strides = check_strides("k", a.k_strides, varlen, rows_k, a.heads_kv, a.head_dim, a.batch);
  a.v_strides = check_strides("v", a.v_strides, varlen, rows_k, a.heads_kv, a.head_dim, a.batch);
  if (fp8) {  // one-byte elements: 16-byte vectors and TMA strides take multiples of 16 elements
    for (const auto& [name, st] : {std::pair<const char*, const Strides*>{"q", &a.q_strides}, {"k", &a.k_strides}, {"v", &a.v_strides}}) {
      for (const auto& [dim, value] : {std::pair<const char*, std::int64_t>{"batch", st->batch}, {"token", st->token}, {"head", st->head}}) {
        if (value % 16 != 0) fail(fmt::format("{}_strides.{}={}: dtype fp8_e4m3 needs strides that are multiples of 16 elements (16 bytes)", name, dim, value));
      }
    }
  }
  if (!varlen && a.batch > 1 && a.seqlen_q > 0 && !disjoint({{a.o_strides.batch, a.batch}, {a.o_strides.token, a.seqlen_q}, {a.o_strides.head, a.heads_q}}, a.head_dim)) {
    // The batch need not be the outermost dimension (e.g. O as [L, B, H, D]); (token, head) were
    // checked above, so the batch stride is what makes positions collide.
    const std::int64_t footprint = (a.seqlen_q - 1) * a.o_strides.token + (a.heads_q - 1) * a.o_strides.head + a.head_dim;
    fail(fmt::format("o_strides.batch={}: output batches would overlap (token stride {}, head stride {}; as the outermost dimension it must be at least one batch entry's extent {})",
                     a.o_strides.batch, a.o_strides.token, a.o_strides.head, footprint));
  }
  if (a.score_bias) {
    if (reinterpret_cast<std::uintptr_t>(a.score_bias) % 4 != 0) fail("score_bias: pointer is not 4-byte aligned (fp32 array expected)");
    if (a.score_bias_stride == 0) a.score_bias_stride = a.seqlen_k;
    if (!varlen && a.score_bias_stride < a.seqlen_k) {
      fail(fmt::format("score_bias_stride={}: must be at least seqlen_k={} (score_bias is [batch, seqlen_k])", a.score_bias_stride, a.seqlen_k));
    }
  }
  r.scale = a.scale.value_or(1.0f / std::sqrt(static_cast<float>(a.head_dim)));
  if (!std::isfinite(r.scale)) fail(fmt::format("scale={}: must be finite", r.scale));
  if (a.bias_mode == BiasMode::scalar && !std::isfinite(a.bias)) fail(fmt::format("bias={}: must be finite", a.bias));
  if (a.bias_mode != BiasMode::scalar && a.bias_mode != BiasMode::log_n)
    fail(fmt::format("bias_mode={}: must be log_n or scalar (0 or 1)", static_cast<int>(a.bias_mode)));
  if (a.sigmoid != SigmoidMode::fast && a.sigmoid != SigmoidMode::exact)
    fail(fmt::format("sigmoid={}: must be fast or exact (0 or 1)", static_cast<int>(a.sigmoid)));
  if (a.causal_align != CausalAlign::bottom_right && a.causal_align != CausalAlign::top_left) {
    fail(fmt::format("causal_align={}: must be bottom_right (0) or top_left (1)", static_cast<int>(a.causal_align)));
  }
  return r;
}

Gradients resolve_gradients(const Resolved& r, const Gradients& in) {
  const AttentionArgs& a = r.args;
  Gradients g = in;
  const bool varlen = a.layout == Layout::varlen;
  const int rows_q = varlen ? a.total_q : a.seqlen_q, rows_k = varlen ? a.total_k : a.seqlen_k;
  check_tensor_pointer("dout", g.dout);
  check_tensor_pointer("dq", g.dq);
  check_tensor_pointer("dk", g.dk);
  check_tensor_pointer("dv", g.dv);
  g.dout_strides = check_strides("dout", g.dout_strides, varlen, rows_q, a.heads_q, a.head_dim, a.batch);
  g.dq_strides = check_strides("dq", g.dq_strides, varlen, rows_q, a.heads_q, a.head_dim, a.batch);
  g.dk_strides = check_strides("dk", g.dk_strides, varlen, rows_k, a.heads_kv, a.head_dim, a.batch);
  g.dv_strides = check_strides("dv", g.dv_strides, varlen, rows_k, a.heads_kv, a.head_dim, a.batch);
  return g;
}

void check_lengths(const Resolved& r, const std::int32_t* q, const std::int32_t* k) {
  const AttentionArgs& a = r.args;
  if (a.layout == Layout::padded) {
    for (int b = 0; b < a.batch; ++b) {
      if (q[b] < 0 || q[b] > a.seqlen_q) fail(fmt::format("seq_lens_q[{}]={}: must be in [0, seqlen_q={}]", b, q[b], a.seqlen_q));
      if (k[b] < 0 || k[b] > a.seqlen_k) fail(fmt::format("seq_lens_k[{}]={}: must be in [0, seqlen_k={}]", b, k[b], a.seqlen_k));
    }
    return;
  }
  if (a.layout != Layout::varlen) return;
  // By side, not by pointer: self-attention often passes one array as both q and k.
  for (const bool is_q : {true, false}) {
    const char* name = is_q ? "cu_seqlens_q" : "cu_seqlens_k";
    const std::int32_t* cu = is_q ? q : k;
    const int total = is_q ? a.total_q : a.total_k, max_len = is_q ? a.seqlen_q : a.seqlen_k;
    if (cu[0] != 0) fail(fmt::format("{}[0]={}: must be 0", name, cu[0]));
    for (int b = 0; b < a.batch; ++b) {
      const std::int64_t len = static_cast<std::int64_t>(cu[b + 1]) - cu[b];  // no int overflow on garbage
      if (len < 0) fail(fmt::format("{}: not monotonic, [{}]={} > [{}]={}", name, b, cu[b], b + 1, cu[b + 1]));
      if (len > max_len) fail(fmt::format("{}: sequence {} has {} tokens, more than max_seqlen_{}={}", name, b, len, is_q ? "q" : "k", max_len));
    }
    if (cu[a.batch] > total) fail(fmt::format("{}[{}]={}: beyond the buffer, total_{}={}", name, a.batch, cu[a.batch], is_q ? "q" : "k", total));
  }
}

void check_host_lengths(const Resolved& r) {
  const AttentionArgs& a = r.args;
  const bool varlen = a.layout == Layout::varlen;
  const std::int32_t* host_q = varlen ? a.host_cu_seqlens_q : a.host_seq_lens_q;
  const std::int32_t* host_k = varlen ? a.host_cu_seqlens_k : a.host_seq_lens_k;
  if (a.layout != Layout::dense && host_q && host_k) check_lengths(r, host_q, host_k);
}

}  // namespace sigjit::detail
