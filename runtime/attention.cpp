// The forward entry point: validate, pick the kernel for the spec, fill the parameter block
// and launch on the caller's stream. Per call on the hot path: host validation (no device
// access unless lengths must be copied), one in-process table lookup, one cuLaunchKernel.
#include "runtime/attention.hpp"

#include "base/env.hpp"

#include "jit/codegen.hpp"
#include "kernels/family.hpp"
#include "kernels/sm90_bwd.hpp"
#include "kernels/sm90_fwd.hpp"
#include "jit/compiler.hpp"
#include "cuda/check.hpp"
#include "cuda/device.hpp"
#include "jit/kernel_table.hpp"
#include "runtime/resolve.hpp"
#include "cuda/workspace.hpp"
#include "sigjit/common/params.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <limits>
#include <optional>
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
  s.causal_align = a.causal ? a.causal_align : CausalAlign::bottom_right;  // one kernel for non-causal calls
  s.bias_mode = a.bias_mode;
  s.score_bias = a.score_bias != nullptr;
  s.sigmoid = a.sigmoid;
  s.gqa_ratio = a.heads_q / a.heads_kv;
  s.bucket = seq_bucket_for(std::max(a.seqlen_q, a.seqlen_k));
  s.arch = arch;
  return s;
}

namespace {

void require_fp8_device(const DeviceInfo& dev, KernelSpec spec, const char* what) {
  spec.dtype = DType::fp8_e4m3;
  if (!sm90_family_supports(spec)) {
    throw Error(fmt::format("{}: the FP8 forward runs on Hopper GPUs (sm_90a: H100, H200); this device is {} ({}); use bf16 or fp16 here",
                            what, dev.name, spec.arch.name()));
  }
}

}  // namespace

ResolvedKernel forward_kernel(const DeviceInfo& dev, const Resolved& r) {
  const KernelSpec spec = forward_spec(r, dev.arch());
  if (spec.dtype == DType::fp8_e4m3) require_fp8_device(dev, spec, "dtype=fp8_e4m3");
  ResolvedKernel k = resolve_kernel(dev, spec);
  if (const std::string why = kernels::family_of(k.config).unsupported(r, nullptr); !why.empty() && spec.dtype == DType::fp8_e4m3) {
    throw Error(fmt::format("dtype=fp8_e4m3: {}; the FP8 forward has no portable fallback (its loads are TMA's): pass 16-byte aligned "
                            "tensors whose strides are multiples of 16 elements", why));
  }
  if (!kernels::family_of(k.config).unsupported(r, nullptr).empty()) {
    // Tensors the kernel's loads cannot describe (TMA: strides, alignment): the portable family
    // serves the call.
    const TileConfig c = portable_config(spec);
    k = ResolvedKernel{get_kernel(dev.context, spec, c), c, "sm80 fallback"};
  }
  return k;
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
  if (host_q && host_k) return;  // checked by check_host_lengths, before any CUDA call
  if (!a.validate_lengths) return;
  std::vector<std::int32_t> q, k;
  fetch_lengths(varlen ? a.cu_seqlens_q : a.seq_lens_q, varlen ? a.cu_seqlens_k : a.seq_lens_k, varlen ? a.batch + 1 : a.batch, stream, q, k);
  check_lengths(r, q.data(), k.data());
}

// A caller's workspace, checked before any device access. Needs `need` bytes, which `size_fn`
// (backward_workspace_size or forward_workspace_size) reports.
void check_workspace(const void* workspace, std::size_t bytes, std::size_t need, const char* size_fn) {
  if ((workspace == nullptr && bytes == 0) || need == 0) return;  // none given, or none used
  if (workspace == nullptr) {
    throw Error(
        fmt::format("workspace: null pointer with workspace_bytes={}; pass a device buffer of at least {} B "
                    "({}), or neither to let sigjit manage one",
                    bytes, need, size_fn));
  }
  if (reinterpret_cast<std::uintptr_t>(workspace) % 16 != 0) {
    throw Error(
        fmt::format("workspace: pointer {} is not 16-byte aligned; pass a 16-byte aligned buffer of at least {} B", workspace, need));
  }
  if (bytes < need) {
    throw Error(fmt::format("workspace: workspace_bytes={} is too small; this call needs {} B ({})", bytes, need, size_fn));
  }
}

// The FP8 forward's V^T; with options.fp8 also the quantized copies (fp8_quantize_layout);
// 16-bit forwards need nothing.
std::size_t forward_workspace_need(const Resolved& r, const ForwardOptions& options) {
  if (options.fp8) return kernels::fp8_quantize_layout(r).bytes;
  return r.args.dtype == DType::fp8_e4m3 ? kernels::fp8_vt_layout(r).bytes : 0;
}

// options.fp8 quantizes bf16 inputs and computes their factors itself.
void check_fp8_option(const AttentionArgs& a) {
  if (a.dtype == DType::fp8_e4m3) {
    throw Error("options.fp8: q, k and v are already float8_e4m3fn; leave fp8 false and pass their q_descale/k_descale/v_descale");
  }
  if (a.dtype != DType::bf16) {
    throw Error("options.fp8: quantizes bf16 q, k and v (the FP8 forward writes a bf16 o); dtype=fp16: convert the inputs to bf16 first");
  }
  if (a.q_descale || a.k_descale || a.v_descale) {
    throw Error(
        "options.fp8: computes one descale factor per (sequence, key/value head) itself; pass q_descale, k_descale and v_descale "
        "as nullptr");
  }
}

// With options.fp8 the call must also be one the FP8 forward takes on contiguous copies (head
// dims 64 and 128, O's strides): refused here, on the host, not after the quantization.
Resolved resolve_forward(const AttentionArgs& args, const ForwardOptions& options) {
  if (!options.fp8) return resolve(args);
  check_fp8_option(args);
  Resolved r = resolve(args);
  // The quantization's grid has a y of heads_q + 2 heads_kv, and its factors an int index.
  const std::int64_t grid_y = std::int64_t{r.args.heads_q} + 2 * std::int64_t{r.args.heads_kv};
  if (grid_y > 65535 || 3 * std::int64_t{r.args.batch} * r.args.heads_kv > std::numeric_limits<int>::max()) {
    throw Error(
        fmt::format("options.fp8: heads_q + 2 heads_kv = {} (at most 65535) or 3 x batch x heads_kv = {} is too large for the "
                    "quantization; split the heads or the batch over calls",
                    grid_y, 3 * std::int64_t{r.args.batch} * r.args.heads_kv));
  }
  AttentionArgs as_fp8 = r.args;
  as_fp8.dtype = DType::fp8_e4m3;
  as_fp8.q_strides = as_fp8.k_strides = as_fp8.v_strides = Strides{};
  try {
    resolve(as_fp8);
  } catch (const Error& e) {
    throw Error(fmt::format("options.fp8: {}", e.what()));
  }
  return r;
}

// The bf16 call r as the FP8 call on its quantized copies in the workspace at `base`.
AttentionArgs quantized_args(const Resolved& r, unsigned char* base, const kernels::Fp8QuantizeLayout& layout) {
  AttentionArgs f = r.args;
  f.dtype = DType::fp8_e4m3;
  f.q = base + layout.q8;
  f.k = base + layout.k8;
  f.v = base + layout.v8;
  f.q_strides = f.k_strides = f.v_strides = Strides{};  // the copies are contiguous
  const float* descale = reinterpret_cast<const float*>(base + layout.descale);
  const std::size_t per_tensor = layout.factors / 3;
  f.q_descale = descale;
  f.k_descale = descale + per_tensor;
  f.v_descale = descale + 2 * per_tensor;
  f.descale_stride_batch = r.args.heads_kv;
  f.descale_stride_head = 1;
  return f;
}

}  // namespace

void zero_varlen_tails(const DeviceInfo& dev, const Resolved& r, const SigjitBwdParams& params, CUstream stream) {
  if (r.args.layout != Layout::varlen) return;
  KernelSpec spec = forward_spec(r, dev.arch());
  if (spec.dtype == DType::fp8_e4m3) spec.dtype = DType::bf16;  // the FP8 forward's O is bf16 (zeros are zeros in both 16-bit dtypes)
  kernels::enqueue_varlen_tail_zero(r, params, resolve_kernel(dev, dq_convert_spec(spec)).kernel, stream);
}

SigjitBwdParams output_tail(const Resolved& r) {
  SigjitBwdParams bp{};
  bp.fwd = kernels::forward_params(r);
  bp.dq = r.args.o;
  bp.dq_stride_b = r.args.o_strides.batch, bp.dq_stride_l = r.args.o_strides.token, bp.dq_stride_h = r.args.o_strides.head;
  return bp;
}

// options.fp8's two kernels for the bf16 call r, with the copies at `base`: the quantization and
// the FP8 forward on them (which depends on the copies' layout and alignment only, not on where
// the workspace is: every part of it is 256-byte aligned from a 16-byte aligned base).
Fp8Kernels fp8_kernels(const DeviceInfo& dev, const Resolved& r, unsigned char* base) {
  if (base == nullptr) base = reinterpret_cast<unsigned char*>(std::uintptr_t{1} << 20);  // never dereferenced
  const KernelSpec spec = forward_spec(r, dev.arch());
  require_fp8_device(dev, spec, "options.fp8");
  const kernels::Fp8QuantizeLayout layout = kernels::fp8_quantize_layout(r);
  Resolved fp8 = resolve(quantized_args(r, base, layout));
  ResolvedKernel forward = forward_kernel(dev, fp8);
  return {resolve_kernel(dev, fp8_quantize_spec(spec)), std::move(forward), std::move(fp8)};
}

namespace {

// options.fp8 after validation: the quantization into the workspace (the caller's, or the
// stream's, held for the whole call), then the FP8 forward on the copies.
void forward_quantized(const Resolved& r, const DeviceInfo& dev, CUstream stream, const ForwardOptions& options) {
  require_fp8_device(dev, forward_spec(r, dev.arch()), "options.fp8");
  const kernels::Fp8QuantizeLayout layout = kernels::fp8_quantize_layout(r);
  std::optional<WorkspaceLease> lease;
  unsigned char* base = static_cast<unsigned char*>(options.workspace);
  if (base == nullptr) {
    lease.emplace(acquire_workspace(dev.context, stream, layout.bytes, "options.fp8's quantized q, k, v and V^T",
                                    "free device memory, run fewer tokens per call, or pass ForwardOptions::workspace"));
    base = reinterpret_cast<unsigned char*>(lease->ptr());
  }
  const Fp8Kernels k = fp8_kernels(dev, r, base);
  zero_varlen_tails(dev, r, output_tail(r), stream);  // O's rows no sequence owns (varlen)
  kernels::enqueue_fp8_quantize(r, kernels::fp8_quantize_params(r, base, layout), k.quantize.kernel, stream);
  kernels::launch(k.call, Direction::forward, nullptr, k.forward.kernel, k.forward.config, dev.sm_count, stream, false, base + layout.vt);
}

}  // namespace

}  // namespace detail

void validate(const AttentionArgs& args) {
  const detail::Resolved r = detail::resolve(args);
  detail::check_host_lengths(r);
}

void forward(const AttentionArgs& args, Stream stream) { forward(args, stream, ForwardOptions{}); }

std::size_t forward_workspace_size(const AttentionArgs& args) { return forward_workspace_size(args, ForwardOptions{}); }

std::size_t forward_workspace_size(const AttentionArgs& args, const ForwardOptions& options) {
  return detail::forward_workspace_need(detail::resolve_forward(args, options), options);
}

void forward(const AttentionArgs& args, Stream stream, const ForwardOptions& options) {
  // Every check the host can make comes before the first CUDA call (current_device).
  const detail::Resolved r = detail::resolve_forward(args, options);
  detail::check_host_lengths(r);
  const std::size_t need = detail::forward_workspace_need(r, options);
  detail::check_workspace(options.workspace, options.workspace_bytes, need, "forward_workspace_size");
  void* workspace = need > 0 ? options.workspace : nullptr;
  const detail::DeviceInfo dev = detail::current_device();
  const AttentionArgs& a = r.args;
  for (const auto& [name, ptr] : {std::pair<const char*, const void*>{"q", a.q}, {"k", a.k}, {"v", a.v}, {"o", a.o}}) {
    detail::check_device_pointer(name, ptr);
  }
  if (workspace != nullptr) detail::check_device_pointer("workspace", workspace);  // one driver call, only when given
  CUstream cu_stream = reinterpret_cast<CUstream>(stream);
  detail::validate_lengths(r, cu_stream);
  if (a.batch == 0 || a.seqlen_q == 0 || (a.layout == Layout::varlen && a.total_q == 0)) {
    return detail::zero_varlen_tails(dev, r, detail::output_tail(r), cu_stream);  // varlen: O may still hold rows no sequence owns
  }
  if (options.fp8) return detail::forward_quantized(r, dev, cu_stream, options);
  // Kernels first: a refusal (an FP8 call TMA cannot describe) comes before any launch.
  const detail::ResolvedKernel k = detail::forward_kernel(dev, r);
  detail::zero_varlen_tails(dev, r, detail::output_tail(r), cu_stream);  // rows no sequence owns (varlen)
  kernels::launch(r, Direction::forward, nullptr, k.kernel, k.config, dev.sm_count, cu_stream, false, workspace);
}

namespace detail {

namespace {

Resolved resolve_backward(const AttentionArgs& args) {
  AttentionArgs with_output = args;
  // O is not read by the backward; stand q in for it so that a bad gradient pointer is reported
  // under its own name by resolve_gradients, never as "o".
  if (with_output.o == nullptr) with_output.o = const_cast<void*>(args.q);
  if (args.dtype == DType::fp8_e4m3) {
    throw Error("dtype=fp8_e4m3: FP8 is forward only (inference); the backward takes bf16 or fp16 tensors");
  }
  return resolve(with_output);
}

struct DeterministicKernels {
  ResolvedKernel dkdv, dq;
};

DeterministicKernels deterministic_kernels(const DeviceInfo& dev, KernelSpec spec) {
  spec.direction = Direction::backward_dkdv;
  ResolvedKernel dkdv = resolve_kernel(dev, spec);
  spec.direction = Direction::backward_dq;
  return {std::move(dkdv), resolve_kernel(dev, spec)};
}

void run_deterministic(const DeviceInfo& dev, const Resolved& r, const KernelSpec& spec, const SigjitBwdParams& params, CUstream stream) {
  const DeterministicKernels k = deterministic_kernels(dev, spec);
  kernels::launch(r, Direction::backward_dkdv, &params, k.dkdv.kernel, k.dkdv.config, 0, stream);
  kernels::launch(r, Direction::backward_dq, &params, k.dq.kernel, k.dq.config, 0, stream);
}

struct FusedKernels {
  ResolvedKernel fused, convert;
};

FusedKernels fused_kernels(const DeviceInfo& dev, const Resolved& r, KernelSpec spec, const SigjitBwdParams& params) {
  spec.direction = Direction::backward_fused;
  const KernelSpec convert_spec = dq_convert_spec(spec);
  // A cold backward compiles two kernels: the small convert kernel on a second thread while this
  // one compiles the fused kernel, so the first call waits for one NVRTC compile, not two. Warm
  // calls find both in the process table and start no thread.
  std::optional<ResolvedKernel> convert = resolved_kernel(dev, convert_spec);
  std::future<ResolvedKernel> pending;
  if (!convert) {
    pending = std::async(std::launch::async, [&dev, convert_spec] {
      SIGJIT_CHECK_CU(driver().cuCtxSetCurrent(dev.context));  // module loads go to the caller's context
      return resolve_kernel(dev, convert_spec);
    });
  }
  ResolvedKernel fused = resolve_kernel(dev, spec);
  if (!kernels::family_of(fused.config).unsupported(r, &params).empty()) {
    // Tensors the kernel's loads cannot describe (TMA: strides, alignment): the portable fused
    // kernel serves the call.
    const TileConfig c = portable_config(spec);
    fused = ResolvedKernel{get_kernel(dev.context, spec, c), c, "sm80 fallback"};
  }
  return {std::move(fused), convert ? *std::move(convert) : pending.get()};
}

void run_fused(const DeviceInfo& dev, const Resolved& r, const KernelSpec& spec, SigjitBwdParams params, void* caller_workspace,
               CUstream stream) {
  const auto [fused, convert] = fused_kernels(dev, r, spec, params);
  const std::size_t bytes = kernels::fused_workspace_bytes(r);
  std::optional<WorkspaceLease> lease;
  if (caller_workspace == nullptr && bytes > 0) lease.emplace(acquire_workspace(dev.context, stream, bytes));
  params.dq_accum = static_cast<float*>(caller_workspace ? caller_workspace : lease ? reinterpret_cast<void*>(lease->ptr()) : nullptr);
  kernels::enqueue_fused_backward(r, params, fused.kernel, fused.config, convert.kernel, dev.sm_count, stream);
}

// The deterministic mode on the Hopper backward: the fused kernel with the dQ writer adding in
// key-block order (_wd), then the convert kernel; dK/dV are deterministic by construction (one
// CTA owns each key block). Its workspace (the fp32 dQ values and the counters) is always the
// library's: the deterministic mode takes none from the caller. Empty when the Hopper family does
// not serve the call (arch, head dim, tensors TMA cannot describe): the two-kernel pair does.
std::optional<TileConfig> ordered_config(const Resolved& r, KernelSpec spec, const SigjitBwdParams& params) {
  spec.direction = Direction::backward_fused;
  if (!sm90_backward_supports(spec) || !kernels::tma_unsuitable(r, &params).empty()) return std::nullopt;
  // With early scores, as measured (bench/PROFILE-backward.md: 0.93-1.08x the default's time).
  Sm90BwdTile levers;
  levers.early_scores = levers.dq_writer = levers.ordered_dq = true;
  return sm90_backward_variant(spec, levers);
}

struct OrderedKernels {
  LoadedKernel fused;
  ResolvedKernel convert;
};

OrderedKernels ordered_kernels(const DeviceInfo& dev, KernelSpec spec, const TileConfig& config) {
  spec.direction = Direction::backward_fused;
  return {get_kernel(dev.context, spec, config), resolve_kernel(dev, dq_convert_spec(spec))};
}

void run_ordered(const DeviceInfo& dev, const Resolved& r, const KernelSpec& spec, SigjitBwdParams params, const TileConfig& config,
                 void* caller_workspace, CUstream stream) {
  const auto [fused, dq_convert] = ordered_kernels(dev, spec, config);
  const std::size_t bytes = kernels::dq_workspace_bytes(r) + kernels::dq_counters(r).bytes;
  std::optional<WorkspaceLease> lease;
  if (caller_workspace != nullptr) {
    params.dq_accum = static_cast<float*>(caller_workspace);  // checked: backward_workspace_size(args, true) bytes
  } else if (bytes > 0) {
    lease.emplace(acquire_workspace(dev.context, stream, bytes));
    params.dq_accum = reinterpret_cast<float*>(lease->ptr());
  }
  kernels::enqueue_ordered_backward(r, params, fused, config, dq_convert.kernel, stream);
}

}  // namespace

}  // namespace detail

namespace {

// SIGJIT_BACKWARD_PATH, a switch for GPU tests and benchmarks: fused or two_kernel route
// non-deterministic calls; ordered sends deterministic calls to the Hopper fused kernel with the
// ordered dQ reduction before it is their default (kSm90BackwardLeversVerified).
std::optional<std::string> forced_backward_path() {
  std::optional<std::string> path = env::text("SIGJIT_BACKWARD_PATH");
  if (path && *path != "fused" && *path != "two_kernel" && *path != "ordered") {
    throw Error(fmt::format("SIGJIT_BACKWARD_PATH={}: expected fused, two_kernel or ordered", *path));
  }
  return path;
}

// Non-deterministic calls take the fused path (one kernel, dQ accumulated by atomics or bulk
// reductions); SIGJIT_BACKWARD_PATH=two_kernel sends them to the deterministic pair instead.
bool use_fused_backward(const BackwardOptions& options) {
  if (options.deterministic) return false;
  return forced_backward_path() != "two_kernel";
}

// Deterministic calls on the Hopper family's ordered dQ path, where it serves them.
bool use_ordered_backward(const BackwardOptions& options) {
  return options.deterministic && (kSm90BackwardLeversVerified || forced_backward_path() == "ordered");
}

}  // namespace

namespace {

// What a call's workspace must hold: the fast path's fp32 dQ values and the persistent kernel's
// counters; in
// deterministic mode the ordered path's values and counters wherever it may run (head dims 64 and
// 128: the Hopper family's; on other GPUs the two-kernel pair takes it and ignores the
// workspace), else nothing.
std::size_t workspace_need(const detail::Resolved& r, bool deterministic) {
  if (!deterministic) return kernels::fused_workspace_bytes(r);
  const int hd = r.args.head_dim;
  if (!use_ordered_backward(BackwardOptions{true}) || (hd != 64 && hd != 128)) return 0;
  return kernels::dq_workspace_bytes(r) + kernels::dq_counters(r).bytes;
}

}  // namespace

std::size_t backward_workspace_size(const AttentionArgs& args, bool deterministic) {
  return workspace_need(detail::resolve_backward(args), deterministic);
}

void backward(const AttentionArgs& args, const Gradients& grads, Stream stream, const BackwardOptions& options) {
  // Every check the host can make comes before the first CUDA call (current_device).
  const detail::Resolved r = detail::resolve_backward(args);
  detail::check_host_lengths(r);
  const Gradients g = detail::resolve_gradients(r, grads);
  const std::size_t need = workspace_need(r, options.deterministic);
  detail::check_workspace(options.workspace, options.workspace_bytes, need, "backward_workspace_size");
  const bool caller_workspace = options.workspace != nullptr && need > 0;
  const bool fused = use_fused_backward(options);
  const detail::DeviceInfo dev = detail::current_device();
  const AttentionArgs& a = r.args;
  for (const auto& [name, ptr] : {std::pair<const char*, const void*>{"q", a.q}, {"k", a.k}, {"v", a.v}, {"dout", g.dout}, {"dq", g.dq},
                                  {"dk", g.dk}, {"dv", g.dv}}) {
    detail::check_device_pointer(name, ptr);
  }
  if (caller_workspace) detail::check_device_pointer("workspace", options.workspace);
  CUstream cu_stream = reinterpret_cast<CUstream>(stream);
  detail::validate_lengths(r, cu_stream);
  const SigjitBwdParams params = kernels::backward_params(r, g, nullptr);
  detail::zero_varlen_tails(dev, r, params, cu_stream);  // rows no sequence owns (varlen)
  if (a.batch == 0 || (a.seqlen_q == 0 && a.seqlen_k == 0)) return;

  const KernelSpec spec = detail::forward_spec(r, dev.arch());
  if (!fused) {
    if (use_ordered_backward(options)) {
      if (const std::optional<TileConfig> ordered = detail::ordered_config(r, spec, params)) {
        return detail::run_ordered(dev, r, spec, params, *ordered, caller_workspace ? options.workspace : nullptr, cu_stream);
      }
    }
    return detail::run_deterministic(dev, r, spec, params, cu_stream);
  }
  detail::run_fused(dev, r, spec, params, caller_workspace ? options.workspace : nullptr, cu_stream);
}

void prepare(const AttentionArgs& args, const PrepareOptions& options) {
  // Resolve exactly as forward() and backward() do, so that the kernels loaded here are the
  // ones their launches look up in the in-process table; nothing touches the tensors.
  if (options.backward) detail::resolve_backward(args);  // its refusals (FP8) come first, as backward()'s would
  ForwardOptions forward_options;
  forward_options.fp8 = options.fp8;
  if (options.fp8 && !options.forward) throw Error("options.fp8: prepares the forward's FP8 kernels; set options.forward too");
  const detail::Resolved r = options.forward ? detail::resolve_forward(args, forward_options) : detail::resolve_backward(args);
  const detail::DeviceInfo dev = detail::current_device();
  if (r.args.layout == Layout::varlen) {  // every varlen call zeroes the rows outside its sequences
    KernelSpec spec = detail::forward_spec(r, dev.arch());
    spec.dtype = spec.dtype == DType::fp8_e4m3 ? DType::bf16 : spec.dtype;
    detail::resolve_kernel(dev, dq_convert_spec(spec));
  }
  if (options.fp8) {
    detail::fp8_kernels(dev, r);
  } else if (options.forward) {
    detail::forward_kernel(dev, r);
  }
  if (!options.backward) return;
  const AttentionArgs& a = r.args;
  // Gradients laid out like the tensors they belong to (dO like O): the layout that decides
  // between the Hopper backward and its portable fallback.
  Gradients g;
  g.dout = a.o, g.dq = const_cast<void*>(a.q), g.dk = const_cast<void*>(a.k), g.dv = const_cast<void*>(a.v);
  g.dout_strides = a.o_strides, g.dq_strides = a.q_strides, g.dk_strides = a.k_strides, g.dv_strides = a.v_strides;
  const KernelSpec spec = detail::forward_spec(r, dev.arch());
  const BackwardOptions mode{options.deterministic};
  const SigjitBwdParams params = kernels::backward_params(r, detail::resolve_gradients(r, g), nullptr);
  if (!use_fused_backward(mode)) {
    const std::optional<TileConfig> ordered = use_ordered_backward(mode) ? detail::ordered_config(r, spec, params) : std::nullopt;
    if (ordered) {
      detail::ordered_kernels(dev, spec, *ordered);
    } else {
      detail::deterministic_kernels(dev, spec);
    }
    return;
  }
  detail::fused_kernels(dev, r, spec, params);
}

void release_backward_workspaces() {
  const detail::DeviceInfo dev = detail::current_device();
  detail::release_workspaces(dev.context);
}

std::string version() {
  // The NVRTC built for, not the loaded one: version() loads nothing (`sigjit info` reports both).
  return fmt::format("sigjit {} (NVRTC {}, codegen {})", SIGJIT_VERSION, nvrtc_build_version(), kCodegenVersion);
}

}  // namespace sigjit
