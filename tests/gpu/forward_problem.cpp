#include "tests/gpu/forward_problem.hpp"

#include <fmt/format.h>

#include <cmath>
#include <numeric>
#include <stdexcept>

namespace sigjit::testing {

namespace {
const char* layout_name(Layout l) { return l == Layout::dense ? "dense" : l == Layout::padded ? "padded" : "varlen"; }
}  // namespace

std::string CaseSpec::name() const {
  const char* type = dtype == DType::bf16 ? "bf16" : dtype == DType::fp16 ? "fp16" : fp8_per_tensor ? "fp8t" : "fp8";
  return fmt::format("{}_d{}_{}_{}_{}{}{}_{}_q{}_k{}{}{}{}", layout_name(layout), head_dim, type,
                     !causal                                 ? "full"
                     : causal_align == CausalAlign::top_left ? "causaltl"
                                                             : "causal",
                     bias_mode == BiasMode::log_n ? "logn" : "scalar", score_bias ? "_sb" : "", gqa ? "_gqa" : "",
                     sigmoid == SigmoidMode::fast ? "fast" : "exact", fmt::join(lens_q, "-"), fmt::join(lens_k, "-"),
                     strided ? "_strided" : "", varlen_tail ? fmt::format("_tail{}", varlen_tail) : "", head_scales ? "_scaled" : "");
}

// Bounds on ||out - ref|| / ||ref||. Exact sigmoid: output rounding dominates (bf16 has 8
// significant bits, fp16 11). Fast sigmoid adds tanh.approx's error, which is largest exactly
// where -log(n) puts typical scores (see SigmoidMode::fast), but averages out over many keys.
// Measured on H100 2026-11-23 (bench/results/2026-11-23-h100-gpu-tests.log), max over the
// matrix: bf16 exact 2.5e-3, bf16 fast 3.3e-3, fp16 exact 3.1e-4, fp16 fast 3.7e-4.
double error_bound(const CaseSpec& spec) {
  // FP8 (not yet measured on a GPU): P is stored in e4m3, whose relative rounding error is
  // uniform in +-2^-4 (RMS 3.6 %), and O sums many such terms with random signs of V, so the
  // norm-wise error of O is about that RMS; the bound leaves room for the fast sigmoid and for
  // the subnormal P values of long sequences (bench/MODEL-fp8.md, point 4).
  if (spec.dtype == DType::fp8_e4m3) return 0.05;
  const double base = spec.dtype == DType::bf16 ? 6e-3 : 8e-4;
  return spec.sigmoid == SigmoidMode::exact ? base : base + 1.5e-3;
}

std::vector<float> ForwardProblem::random_tensor(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> out(n);
  for (auto& x : out) {
    const float r = dist(rng);
    x = spec_.dtype == DType::bf16 ? bf16_to_float(float_to_bf16(r)) : spec_.dtype == DType::fp16 ? fp16_to_float(float_to_fp16(r)) : r;
  }
  return out;
}

void ForwardProblem::upload_u16(DeviceBuffer& dst, const std::vector<float>& values) {
  std::vector<std::uint16_t> bits(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) bits[i] = spec_.dtype == DType::bf16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
  dst = DeviceBuffer(bits.size() * 2);
  dst.upload(bits.data(), bits.size() * 2);
}

std::vector<float> ForwardProblem::fp8_descale(int tensor) const {
  // Non-powers of two, different per tensor, sequence and head (unless per tensor), sized so
  // that N(0, 1) inputs fill e4m3's range without saturating: |x| < 7 gives |x / s| < 448.
  std::vector<float> out(static_cast<std::size_t>(args_.batch) * args_.heads_kv);
  for (int b = 0; b < args_.batch; ++b)
    for (int h = 0; h < args_.heads_kv; ++h) {
      const int k = spec_.fp8_per_tensor ? tensor : b + 2 * h + tensor;
      out[static_cast<std::size_t>(b) * args_.heads_kv + h] = (1.0f + 0.5f * static_cast<float>(k % 3)) / 64.0f;
    }
  return out;
}

void ForwardProblem::quantize_fp8(DeviceBuffer& dst, std::vector<float>& values, const Strides& s, int rows, int heads,
                                  const std::vector<float>& descale) {
  std::vector<std::uint8_t> bytes(values.size(), 0);
  const bool varlen = spec_.layout == Layout::varlen;
  const int group = heads / args_.heads_kv;  // Q heads per kv head (1 for K and V)
  const auto quantize_row = [&](int b, std::size_t offset) {
    for (int h = 0; h < heads; ++h) {
      const float d = descale[static_cast<std::size_t>(b) * args_.heads_kv + h / group];
      for (int i = 0; i < args_.head_dim; ++i) {
        const std::size_t at = offset + static_cast<std::size_t>(h) * s.head + i;
        bytes[at] = float_to_e4m3(values[at] / d);
        values[at] = e4m3_to_float(bytes[at]) * d;
      }
    }
  };
  if (varlen) {
    const std::vector<int>& cu = &values == &q_ ? cu_q_ : cu_k_;
    for (int b = 0; b < args_.batch; ++b)
      for (int r = cu[b]; r < cu[b + 1]; ++r) quantize_row(b, static_cast<std::size_t>(r) * s.token);
  } else {
    for (int b = 0; b < args_.batch; ++b)
      for (int r = 0; r < rows; ++r) quantize_row(b, static_cast<std::size_t>(b) * s.batch + static_cast<std::size_t>(r) * s.token);
  }
  dst = DeviceBuffer(bytes.size());
  dst.upload(bytes.data(), bytes.size());
}

ForwardProblem::ForwardProblem(const CaseSpec& spec, std::mt19937& rng) : spec_(spec) {
  AttentionArgs& a = args_;
  a.dtype = spec.dtype;
  a.layout = spec.layout;
  a.head_dim = spec.head_dim;
  a.batch = static_cast<int>(spec.lens_q.size());
  a.heads_q = spec.gqa ? 4 : 2;
  a.heads_kv = 2;
  a.causal = spec.causal;
  a.causal_align = spec.causal_align;
  a.bias_mode = spec.bias_mode;
  a.bias = -3.5f;
  a.sigmoid = spec.sigmoid;
  const int D = spec.head_dim;
  const bool varlen = spec.layout == Layout::varlen;
  seq_q_ = spec.lens_q;
  seq_k_ = spec.lens_k;
  if (varlen) {
    cu_q_.assign(1, 0);
    cu_k_.assign(1, 0);
    for (int l : seq_q_) cu_q_.push_back(cu_q_.back() + l);
    for (int l : seq_k_) cu_k_.push_back(cu_k_.back() + l);
    a.total_q = cu_q_.back() + spec.varlen_tail;
    a.total_k = cu_k_.back() + spec.varlen_tail;
  }
  a.seqlen_q = *std::max_element(seq_q_.begin(), seq_q_.end());
  a.seqlen_k = *std::max_element(seq_k_.begin(), seq_k_.end());
  const int rows_q = varlen ? a.total_q : a.seqlen_q, rows_k = varlen ? a.total_k : a.seqlen_k;
  const int batches = varlen ? 1 : a.batch;
  if (spec.strided) {
    // Q/O: a gap after every head (8 elements, 16 bytes; FP8: 16 elements, as its strides must be
    // multiples of 16); K: head-major [B, H, L, D]; V: contiguous.
    const int gap = spec.dtype == DType::fp8_e4m3 ? 16 : 8;
    a.q_strides = {0, static_cast<std::int64_t>(a.heads_q) * (D + gap), D + gap};
    a.q_strides.batch = rows_q * a.q_strides.token;
    a.o_strides = a.q_strides;
    a.k_strides = {static_cast<std::int64_t>(a.heads_kv) * rows_k * D, D, static_cast<std::int64_t>(rows_k) * D};
  }
  const Strides qs = effective_strides(a.q_strides, rows_q, a.heads_q, D), os = effective_strides(a.o_strides, rows_q, a.heads_q, D);
  const Strides ks = effective_strides(a.k_strides, rows_k, a.heads_kv, D), vs = effective_strides(a.v_strides, rows_k, a.heads_kv, D);
  const auto span = [&](const Strides& s, int rows, int heads) {
    return static_cast<std::size_t>((batches - 1) * s.batch + (rows - 1) * s.token + (heads - 1) * s.head + D);
  };
  k_elems_ = span(ks, rows_k, a.heads_kv);
  q_ = random_tensor(span(qs, rows_q, a.heads_q), rng);
  k_ = random_tensor(span(ks, rows_k, a.heads_kv), rng);
  v_ = random_tensor(span(vs, rows_k, a.heads_kv), rng);
  o_elems_ = span(os, rows_q, a.heads_q);
  if (spec.head_scales) {  // powers of two: the bf16/fp16 values stay exact
    const int group = a.heads_q / a.heads_kv;
    for (int t = 0; t < 3; ++t) {
      std::vector<float>& x = t == 0 ? q_ : t == 1 ? k_ : v_;
      const Strides& s = t == 0 ? qs : t == 1 ? ks : vs;
      const int heads = t == 0 ? a.heads_q : a.heads_kv;
      for (int b = 0; b < a.batch; ++b) {
        const int first = varlen ? (t == 0 ? cu_q_[b] : cu_k_[b]) : 0;
        const int end = varlen ? (t == 0 ? cu_q_[b + 1] : cu_k_[b + 1]) : (t == 0 ? rows_q : rows_k);
        const std::int64_t base = varlen ? 0 : b * s.batch;
        for (int row = first; row < end; ++row)
          for (int h = 0; h < heads; ++h) {
            const float f = std::ldexp(1.0f, (b + (t == 0 ? h / group : h) + t) % 5 - 2);
            for (int d = 0; d < D; ++d) x[static_cast<std::size_t>(base + row * s.token + h * s.head + d)] *= f;
          }
      }
    }
  }
  if (spec.dtype == DType::fp8_e4m3) {
    const float* descale[3] = {};
    for (int t = 0; t < 3; ++t) {
      const std::vector<float> factors = fp8_descale(t);
      ddescale_[t] = DeviceBuffer(factors.size() * 4);
      ddescale_[t].upload(factors.data(), factors.size() * 4);
      descale[t] = ddescale_[t].as<float>();
    }
    quantize_fp8(dq_, q_, qs, rows_q, a.heads_q, fp8_descale(0));
    quantize_fp8(dk_, k_, ks, rows_k, a.heads_kv, fp8_descale(1));
    quantize_fp8(dv_, v_, vs, rows_k, a.heads_kv, fp8_descale(2));
    a.q_descale = descale[0], a.k_descale = descale[1], a.v_descale = descale[2];
    a.descale_stride_batch = spec.fp8_per_tensor ? 0 : a.heads_kv;
    a.descale_stride_head = spec.fp8_per_tensor ? 0 : 1;
  } else {
    upload_u16(dq_, q_);
    upload_u16(dk_, k_);
    upload_u16(dv_, v_);
  }
  do_ = DeviceBuffer(o_elems_ * 2);
  a.q = dq_.get(), a.k = dk_.get(), a.v = dv_.get(), a.o = do_.get();
  if (spec.score_bias) {
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    score_bias_.resize(varlen ? a.total_k : static_cast<std::size_t>(a.batch) * a.seqlen_k);
    for (auto& x : score_bias_) x = u(rng);
    dsb_ = DeviceBuffer(score_bias_.size() * 4);
    dsb_.upload(score_bias_.data(), score_bias_.size() * 4);
    a.score_bias = dsb_.as<float>();
  }
  if (spec.layout == Layout::padded) {
    dlq_ = DeviceBuffer(seq_q_.size() * 4);
    dlk_ = DeviceBuffer(seq_k_.size() * 4);
    dlq_.upload(seq_q_.data(), seq_q_.size() * 4);
    dlk_.upload(seq_k_.data(), seq_k_.size() * 4);
    a.seq_lens_q = dlq_.as<std::int32_t>();
    a.seq_lens_k = dlk_.as<std::int32_t>();
  } else if (varlen) {
    dlq_ = DeviceBuffer(cu_q_.size() * 4);
    dlk_ = DeviceBuffer(cu_k_.size() * 4);
    dlq_.upload(cu_q_.data(), cu_q_.size() * 4);
    dlk_.upload(cu_k_.data(), cu_k_.size() * 4);
    a.cu_seqlens_q = dlq_.as<std::int32_t>();
    a.cu_seqlens_k = dlk_.as<std::int32_t>();
  }
}

std::vector<std::size_t> ForwardProblem::tail_elements(const Strides& s, int first_row, int rows, int heads) const {
  std::vector<std::size_t> out;
  if (spec_.layout != Layout::varlen) return out;
  for (int row = first_row; row < first_row + rows; ++row)
    for (int h = 0; h < heads; ++h)
      for (int d = 0; d < args_.head_dim; ++d) out.push_back(static_cast<std::size_t>(row * s.token + h * s.head + d));
  return out;
}

void ForwardProblem::poison_output() { do_.fill_byte(0xFF); }  // 0xFFFF is NaN in bf16 and fp16

std::vector<std::uint16_t> ForwardProblem::output_bits() const {
  std::vector<std::uint16_t> bits(o_elems_);
  do_.download(bits.data(), bits.size() * 2);
  return bits;
}

CaseResult ForwardProblem::check(bool compute_reference) const {
  CaseResult r;
  std::vector<std::uint16_t> bits(o_elems_);
  do_.download(bits.data(), bits.size() * 2);
  if (!compute_reference) return r;
  RefInputs in;
  in.args = args_;
  in.q = q_.data(), in.k = k_.data(), in.v = v_.data();
  in.score_bias = score_bias_.empty() ? nullptr : score_bias_.data();
  in.seq_lens_q = seq_q_.data(), in.seq_lens_k = seq_k_.data();
  in.cu_seqlens_q = cu_q_.data(), in.cu_seqlens_k = cu_k_.data();
  const RefOutput ref = reference_forward_sampled(in, o_elems_, spec_.row_step);
  double err2 = 0, ref2 = 0;
  const bool padded = spec_.layout == Layout::padded;
  std::vector<bool> tail(o_elems_, false);  // varlen rows no sequence owns: exact zeros
  const int D = args_.head_dim;
  for (std::size_t i : tail_elements(effective_strides(args_.o_strides, args_.total_q, args_.heads_q, D), cu_q_.empty() ? 0 : cu_q_.back(),
                                     spec_.varlen_tail, args_.heads_q)) {
    tail[i] = true;
    r.unwritten += bits[i] == 0xFFFF;
    r.nonzero_padding += bits[i] != 0xFFFF && bits[i] != 0;
  }
  for (std::size_t i = 0; i < o_elems_; ++i) {
    if (tail[i]) continue;
    const float got = spec_.dtype == DType::fp16 ? fp16_to_float(bits[i]) : bf16_to_float(bits[i]);  // FP8 writes bf16 O
    switch (ref.state[i]) {
      case OutState::untouched:
        r.clobbered += bits[i] != 0xFFFF;
        break;
      case OutState::written:
        r.unwritten += bits[i] == 0xFFFF;
        break;
      case OutState::checked: {
        ++r.checked;
        if (bits[i] == 0xFFFF || !std::isfinite(got)) {
          ++r.unwritten;
          break;
        }
        const double diff = got - ref.values[i];
        err2 += diff * diff;
        ref2 += ref.values[i] * ref.values[i];
        r.max_abs_error = std::max(r.max_abs_error, std::fabs(diff));
        if (padded && ref.values[i] == 0.0 && got != 0.0f) ++r.nonzero_padding;
        break;
      }
    }
  }
  r.rel_error = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  return r;
}

// Not yet measured on a GPU (the backward has not run on one): gradients go through two more
// bf16/fp16 roundings (P and dS) than the forward's output, so the bounds are 3x the forward's.
double backward_error_bound(const CaseSpec& spec) { return 3 * error_bound(spec); }

void ForwardProblem::enable_backward(std::mt19937& rng) {
  // dO shares O's layout; dK/dV share K's (so V and K must be laid out alike in these cases).
  dout_ = random_tensor(o_elems_, rng);
  upload_u16(g_dout_, dout_);
  g_dq_ = DeviceBuffer(q_.size() * 2);
  g_dk_ = DeviceBuffer(k_elems_ * 2);
  g_dv_ = DeviceBuffer(k_elems_ * 2);
  grads_.dout = g_dout_.get();
  grads_.dq = g_dq_.get();
  grads_.dk = g_dk_.get();
  grads_.dv = g_dv_.get();
  grads_.dout_strides = args_.o_strides;
  grads_.dq_strides = args_.q_strides;
  grads_.dk_strides = args_.k_strides;
  grads_.dv_strides = args_.k_strides;
}

void ForwardProblem::poison_gradients() {
  g_dq_.fill_byte(0xFF);
  g_dk_.fill_byte(0xFF);
  g_dv_.fill_byte(0xFF);
}

std::vector<std::uint16_t> ForwardProblem::gradient_bits() const {
  std::vector<std::uint16_t> out(q_.size() + 2 * k_elems_);
  g_dq_.download(out.data(), q_.size() * 2);
  g_dk_.download(out.data() + q_.size(), k_elems_ * 2);
  g_dv_.download(out.data() + q_.size() + k_elems_, k_elems_ * 2);
  return out;
}

std::vector<std::uint16_t> ForwardProblem::gradient_bits(cudaStream_t stream) const {
  std::vector<std::uint16_t> out(q_.size() + 2 * k_elems_);
  // dK and dV first: the fused kernel's last writes, which nothing but stream order waits for.
  const struct {
    const DeviceBuffer& buffer;
    std::size_t offset, elems;
  } parts[] = {{g_dk_, q_.size(), k_elems_}, {g_dv_, q_.size() + k_elems_, k_elems_}, {g_dq_, 0, q_.size()}};
  for (const auto& part : parts) {
    if (cudaMemcpyAsync(out.data() + part.offset, part.buffer.get(), part.elems * 2, cudaMemcpyDeviceToHost, stream) != cudaSuccess)
      throw std::runtime_error("cudaMemcpyAsync of a gradient failed");
  }
  if (cudaStreamSynchronize(stream) != cudaSuccess) throw std::runtime_error("cudaStreamSynchronize failed");
  return out;
}

CaseResult ForwardProblem::check_backward() const {
  if (!backward_ref_) {
    RefInputs in;
    in.args = args_;
    in.args.v_strides = args_.k_strides;
    in.q = q_.data(), in.k = k_.data(), in.v = v_.data();
    in.score_bias = score_bias_.empty() ? nullptr : score_bias_.data();
    in.seq_lens_q = seq_q_.data(), in.seq_lens_k = seq_k_.data();
    in.cu_seqlens_q = cu_q_.data(), in.cu_seqlens_k = cu_k_.data();
    // row_step > 1 samples query rows and keys alike (NaN where not sampled).
    backward_ref_ = std::make_shared<const RefGrads>(reference_backward_sampled(in, dout_.data(), q_.size(), k_elems_, spec_.row_step, spec_.row_step));
  }
  const RefGrads& ref = *backward_ref_;
  const std::vector<std::uint16_t> bits = gradient_bits();
  CaseResult r;
  const std::vector<double>* parts[] = {&ref.dq, &ref.dk, &ref.dv};
  std::size_t offset = 0;
  for (const std::vector<double>* part : parts) {
    double err2 = 0, ref2 = 0;
    for (std::size_t i = 0; i < part->size(); ++i) {
      // Every element must be written and finite, sampled or not; values are compared where the
      // reference computed them (padded rows and keys always: exactly 0).
      const std::uint16_t b = bits[offset + i];
      const float got = spec_.dtype == DType::bf16 ? bf16_to_float(b) : fp16_to_float(b);
      const double want = (*part)[i];
      const bool sampled = !std::isnan(want);
      r.checked += sampled;
      if (b == 0xFFFF || !std::isfinite(got)) {
        ++r.unwritten;
        continue;
      }
      if (!sampled) continue;
      const double diff = got - want;
      err2 += diff * diff;
      ref2 += want * want;
      r.max_abs_error = std::max(r.max_abs_error, std::fabs(diff));
      if (want == 0.0 && got != 0.0f && spec_.layout == Layout::padded) ++r.nonzero_padding;
    }
    r.rel_error = std::max(r.rel_error, ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2));
    offset += part->size();
  }
  // The varlen tail rows (the reference leaves them 0, compared above): exact zeros.
  if (spec_.layout != Layout::varlen) return r;
  const int D = args_.head_dim;
  const std::size_t q_size = q_.size();
  for (std::size_t i :
       tail_elements(effective_strides(grads_.dq_strides, args_.total_q, args_.heads_q, D), cu_q_.back(), spec_.varlen_tail, args_.heads_q))
    r.nonzero_padding += bits[i] != 0 && bits[i] != 0xFFFF;
  for (const std::size_t base : {q_size, q_size + k_elems_})
    for (std::size_t i : tail_elements(effective_strides(grads_.dk_strides, args_.total_k, args_.heads_kv, D), cu_k_.back(),
                                       spec_.varlen_tail, args_.heads_kv))
      r.nonzero_padding += bits[base + i] != 0 && bits[base + i] != 0xFFFF;
  return r;
}

}  // namespace sigjit::testing
