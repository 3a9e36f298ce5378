// The forward entry point: validate, pick the kernel for the spec, fill the parameter block
// and launch on the caller's stream. Per call on the hot path: host validation (no device
// access unless lengths must be copied), one in-process table lookup, one cuLaunchKernel.
#include "runtime/attention.hpp"

#include "compiler/codegen.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "runtime/cuda_check.hpp"
#include "runtime/device.hpp"
#include "runtime/kernel_cache.hpp"
#include "runtime/resolve.hpp"
#include "sigjit/fwd_params.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace sigjit {

namespace detail {

KernelSpec forward_spec(const Resolved& r, const Arch& arch) {
  const AttentionArgs& a = r.args;
  KernelSpec s;
  s.direction = Direction::forward;
  s.dtype = a.dtype;
  s.head_dim = a.head_dim;
  s.layout = a.layout;
  s.causal = a.causal;
  s.bias_mode = a.bias_mode;
  s.score_bias = a.score_bias != nullptr;
  s.sigmoid = a.sigmoid;
  s.gqa_ratio = a.heads_q / a.heads_kv;
  s.bucket = seq_bucket_for(std::max(a.seqlen_q, a.seqlen_k));
  s.arch = arch;
  return s;
}

TileConfig choose_config(const KernelSpec& spec) {
  // SIGJIT_FORCE_TILE=mBMnBNwWsS pins the tile config (benchmark sweeps, debugging). The config
  // is part of the kernel name, so forced and default kernels never share a cache entry.
  const char* forced = std::getenv("SIGJIT_FORCE_TILE");
  if (!forced || !*forced) return default_config(spec);
  const TileConfig c = TileConfig::parse(forced, "SIGJIT_FORCE_TILE");
  if (const std::string why = check_config(spec, c); !why.empty()) throw Error(fmt::format("SIGJIT_FORCE_TILE={}: {}", forced, why));
  return c;
}

namespace {

void check_device_pointer(const char* name, const void* ptr) {
  CUmemorytype type{};
  const CUresult st = driver().cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, reinterpret_cast<CUdeviceptr>(ptr));
  if (st != CUDA_SUCCESS || type == CU_MEMORYTYPE_HOST) {
    throw Error(fmt::format("{}: {} is not device-accessible memory of the current context (allocate it with cudaMalloc/cuMemAlloc)", name, ptr));
  }
}

// Copies the two device length arrays to the host, ordered after the work already on the
// stream: two async copies, one synchronisation.
void fetch_lengths(const std::int32_t* q, const std::int32_t* k, int count, CUstream stream, std::vector<std::int32_t>& host_q,
                   std::vector<std::int32_t>& host_k) {
  check_device_pointer("seq_lens_q / cu_seqlens_q", q);
  check_device_pointer("seq_lens_k / cu_seqlens_k", k);
  host_q.resize(count);
  host_k.resize(count);
  SIGJIT_CHECK_CU(driver().cuMemcpyDtoHAsync(host_q.data(), reinterpret_cast<CUdeviceptr>(q), count * sizeof(std::int32_t), stream));
  SIGJIT_CHECK_CU(driver().cuMemcpyDtoHAsync(host_k.data(), reinterpret_cast<CUdeviceptr>(k), count * sizeof(std::int32_t), stream));
  SIGJIT_CHECK_CU(driver().cuStreamSynchronize(stream));
}

void validate_lengths(const Resolved& r, CUstream stream) {
  const AttentionArgs& a = r.args;
  const bool varlen = a.layout == Layout::varlen;
  if (a.layout == Layout::dense) return;
  const std::int32_t* host_q = varlen ? a.host_cu_seqlens_q : a.host_seq_lens_q;
  const std::int32_t* host_k = varlen ? a.host_cu_seqlens_k : a.host_seq_lens_k;
  if (host_q && host_k) return check_lengths(r, host_q, host_k);
  if (!a.validate_lengths) return;
  std::vector<std::int32_t> q, k;
  fetch_lengths(varlen ? a.cu_seqlens_q : a.seq_lens_q, varlen ? a.cu_seqlens_k : a.seq_lens_k, varlen ? a.batch + 1 : a.batch, stream, q, k);
  check_lengths(r, q.data(), k.data());
}

void set_strides(sigjit_i64& batch, sigjit_i64& token, sigjit_i64& head, const Strides& s) {
  batch = s.batch;
  token = s.token;
  head = s.head;
}

SigjitFwdParams make_params(const Resolved& r) {
  const AttentionArgs& a = r.args;
  SigjitFwdParams p{};
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.o = a.o;
  p.seq_lens_q = a.seq_lens_q;
  p.seq_lens_k = a.seq_lens_k;
  p.cu_seqlens_q = a.cu_seqlens_q;
  p.cu_seqlens_k = a.cu_seqlens_k;
  p.score_bias = a.score_bias;
  set_strides(p.q_stride_b, p.q_stride_l, p.q_stride_h, a.q_strides);
  set_strides(p.k_stride_b, p.k_stride_l, p.k_stride_h, a.k_strides);
  set_strides(p.v_stride_b, p.v_stride_l, p.v_stride_h, a.v_strides);
  set_strides(p.o_stride_b, p.o_stride_l, p.o_stride_h, a.o_strides);
  p.score_bias_stride_b = a.score_bias_stride;
  p.batch = a.batch;
  p.heads_q = a.heads_q;
  p.kv_group = a.heads_q / a.heads_kv;
  p.seqlen_q = a.seqlen_q;
  p.seqlen_k = a.seqlen_k;
  p.total_q = a.total_q;
  p.total_k = a.total_k;
  p.scale = r.scale;
  p.bias = a.bias;
  return p;
}

}  // namespace

void launch_forward(const Resolved& r, const LoadedKernel& kernel, const TileConfig& config, CUstream stream) {
  const AttentionArgs& a = r.args;
  SigjitFwdParams params = make_params(r);
  void* kernel_args[] = {&params};
  const unsigned grid_m = static_cast<unsigned>((a.seqlen_q + config.block_m - 1) / config.block_m);
  SIGJIT_CHECK_CU(driver().cuLaunchKernel(kernel.function, grid_m, a.heads_q, a.batch, kernel.threads, 1, 1, kernel.smem_bytes, stream, kernel_args, nullptr));
}

}  // namespace detail

void validate(const AttentionArgs& args) {
  const detail::Resolved r = detail::resolve(args);
  const bool varlen = r.args.layout == Layout::varlen;
  const std::int32_t* host_q = varlen ? r.args.host_cu_seqlens_q : r.args.host_seq_lens_q;
  const std::int32_t* host_k = varlen ? r.args.host_cu_seqlens_k : r.args.host_seq_lens_k;
  if (r.args.layout != Layout::dense && host_q && host_k) detail::check_lengths(r, host_q, host_k);
}

void forward(const AttentionArgs& args, Stream stream) {
  const detail::Resolved r = detail::resolve(args);
  const detail::DeviceInfo dev = detail::current_device();
  const AttentionArgs& a = r.args;
  for (const auto& [name, ptr] : {std::pair<const char*, const void*>{"q", a.q}, {"k", a.k}, {"v", a.v}, {"o", a.o}}) {
    detail::check_device_pointer(name, ptr);
  }
  CUstream cu_stream = reinterpret_cast<CUstream>(stream);
  detail::validate_lengths(r, cu_stream);
  if (a.batch == 0 || a.seqlen_q == 0 || (a.layout == Layout::varlen && a.total_q == 0)) return;  // nothing to write

  const KernelSpec spec = detail::forward_spec(r, dev.arch());
  const detail::ResolvedKernel k = detail::resolve_kernel(dev, spec);
  detail::launch_forward(r, k.kernel, k.config, cu_stream);
}

namespace {

SigjitBwdParams make_bwd_params(const detail::Resolved& r, const Gradients& g) {
  SigjitBwdParams bp{};
  bp.fwd = detail::make_params(r);
  bp.dout = g.dout;
  bp.dq = g.dq;
  bp.dk = g.dk;
  bp.dv = g.dv;
  detail::set_strides(bp.do_stride_b, bp.do_stride_l, bp.do_stride_h, g.dout_strides);
  detail::set_strides(bp.dq_stride_b, bp.dq_stride_l, bp.dq_stride_h, g.dq_strides);
  detail::set_strides(bp.dk_stride_b, bp.dk_stride_l, bp.dk_stride_h, g.dk_strides);
  detail::set_strides(bp.dv_stride_b, bp.dv_stride_l, bp.dv_stride_h, g.dv_strides);
  return bp;
}

bool experimental_backward_enabled() {
  const char* v = std::getenv("SIGJIT_EXPERIMENTAL_BACKWARD");
  return v && *v && std::string(v) != "0";
}

}  // namespace

void backward(const AttentionArgs& args, const Gradients& grads, Stream stream) {
  AttentionArgs with_output = args;
  // O is not read by the backward; stand q in for it so that a bad gradient pointer is reported
  // under its own name by resolve_gradients, never as "o".
  if (with_output.o == nullptr) with_output.o = const_cast<void*>(args.q);
  const detail::Resolved r = detail::resolve(with_output);
  const Gradients g = detail::resolve_gradients(r, grads);
  if (!experimental_backward_enabled()) {
    throw Error("backward: the backward kernels are not yet verified on a GPU; set SIGJIT_EXPERIMENTAL_BACKWARD=1 to use them anyway");
  }
  const detail::DeviceInfo dev = detail::current_device();
  const AttentionArgs& a = r.args;
  for (const auto& [name, ptr] : {std::pair<const char*, const void*>{"q", a.q}, {"k", a.k}, {"v", a.v}, {"dout", g.dout}, {"dq", g.dq},
                                  {"dk", g.dk}, {"dv", g.dv}}) {
    detail::check_device_pointer(name, ptr);
  }
  CUstream cu_stream = reinterpret_cast<CUstream>(stream);
  detail::validate_lengths(r, cu_stream);
  if (a.batch == 0 || (a.seqlen_q == 0 && a.seqlen_k == 0)) return;

  SigjitBwdParams params = make_bwd_params(r, g);
  void* kernel_args[] = {&params};
  KernelSpec spec = detail::forward_spec(r, dev.arch());
  for (Direction part : {Direction::backward_dkdv, Direction::backward_dq}) {
    spec.direction = part;
    const detail::ResolvedKernel k = detail::resolve_kernel(dev, spec);
    const bool dkdv = part == Direction::backward_dkdv;
    const int rows = dkdv ? a.seqlen_k : a.seqlen_q;
    if (rows == 0) continue;
    const unsigned grid_x = static_cast<unsigned>((rows + k.config.block_m - 1) / k.config.block_m);
    SIGJIT_CHECK_CU(detail::driver().cuLaunchKernel(k.kernel.function, grid_x, dkdv ? a.heads_kv : a.heads_q, a.batch, k.kernel.threads, 1, 1,
                                                    k.kernel.smem_bytes, cu_stream, kernel_args, nullptr));
  }
}

std::string version() {
  return fmt::format("sigjit {} (NVRTC {}, codegen {})", SIGJIT_VERSION, nvrtc_version(), kCodegenVersion);
}

}  // namespace sigjit
