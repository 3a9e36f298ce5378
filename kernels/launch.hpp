// What a family's launch needs from a validated call: the kernels' parameter blocks, the TMA
// tensor maps of the Hopper families, and one launch helper. Family files call these; the
// runtime calls Family::launch.
#pragma once

#include "cuda/loaded_kernel.hpp"
#include "kernels/tile_config.hpp"
#include "problem/call.hpp"
#include "problem/spec.hpp"
#include "sigjit/common/params.h"
#include "sigjit/common/tensor_map.h"

#include <cuda.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sigjit::kernels {

// One kernel launch of a validated call.
struct Launch {
  const detail::Resolved& call;
  Direction part;                   // the call's kernel: forward, or one backward kernel
  const SigjitBwdParams* backward;  // the backward kernels' parameter block (null for the forward)
  const detail::LoadedKernel& kernel;
  int sm_count;  // sizes persistent grids
  CUstream stream;
  // The backward's workspace also holds the ordered dQ reduction's counters, after its fp32
  // values (enqueue_ordered_backward); only then may an ordered tile (_wd) launch.
  bool ordered_workspace = false;
  // The caller's workspace for a forward that needs one (the FP8 V^T, fp8_vt_layout: checked
  // large enough); null: the library's per-stream pool.
  void* forward_workspace = nullptr;
};

// The forward kernels' parameter block (also the first member of the backward's).
SigjitFwdParams forward_params(const detail::Resolved& r);

// cuLaunchKernel with the loaded kernel's threads and shared memory; `params` is the kernel's
// one __grid_constant__ argument. A dQ convert whose parameters carry the handoff counters
// (SigjitBwdParams::dq_reduced) is launched with programmatic stream serialization, so it may
// start while the fused kernel before it runs.
void launch_kernel(const Launch& l, unsigned grid_x, unsigned grid_y, unsigned grid_z, void* params);

// SIGJIT_TRACE_TILES's file: `text` into `path`, a regular file (created or truncated). A symbolic
// link, FIFO, device or directory there is refused with an Error naming the variable, never
// followed, blocked on or written through.
void write_trace_file(const std::string& path, const std::string& text);

// The kernel's family launches it (Family::launch); `backward` is the backward kernels' block.
void launch(const detail::Resolved& r, Direction part, const SigjitBwdParams* backward, const detail::LoadedKernel& kernel,
            const TileConfig& config, int sm_count, CUstream stream, bool ordered_workspace = false, void* forward_workspace = nullptr);

// Bytes of the fused backward's fp32 dQ workspace, contiguous [batch * seqlen_q (varlen:
// total_q), heads_q, head_dim]; throws when the size does not fit memory.
std::size_t dq_workspace_bytes(const detail::Resolved& r);

// The fast (fused) backward's workspace: the fp32 dQ values, then the Hopper fused kernel's
// counters: 16 bytes holding the persistent kernel's (_wp) tile counter and zeroing jobs'
// counter, then two arrays of one int per sequence, each rounded up to 16 bytes: _wp's zeroing
// jobs done, and the key tiles whose dQ is reduced (the convert's handoff from _w and _wp); 0 for
// an empty batch (nothing launches).
inline constexpr std::size_t kTileCounterBytes = 16;
std::size_t per_sequence_counter_bytes(const detail::Resolved& r);  // one array's
std::size_t fused_counter_bytes(const detail::Resolved& r);
std::size_t fused_workspace_bytes(const detail::Resolved& r);
// The tile counter in the fused backward's workspace (params.dq_accum); the zeroing jobs' counter
// is the next int, the done counters start kTileCounterBytes after it.
int* tile_counter(const detail::Resolved& r, const SigjitBwdParams& params);

// The ordered dQ reduction's counters (the deterministic mode's Hopper path): one int per
// (sequence, query head, 64 query rows of the buffer), after the dQ workspace's fp32 values.
struct DqCounters {
  int per_head = 0;  // ceil(seqlen_q / 64)
  int per_seq = 0;   // heads_q * per_head
  std::size_t bytes = 0;
};
DqCounters dq_counters(const detail::Resolved& r);

// The backward kernels' parameter block; dq_accum may be null (deterministic path).
SigjitBwdParams backward_params(const detail::Resolved& r, const Gradients& g, void* dq_accum);

// The fused backward on the stream: zero params.dq_accum (fused_workspace_bytes: the values, and
// the counters for a persistent kernel, which zeroes the values itself unless
// SIGJIT_BWD_DQ_ZERO=memset), the fused kernel, the convert kernel: after a dQ writer tile (_w,
// _wp), a programmatic dependent launch that converts sequences as their tiles finish (unless
// SIGJIT_BWD_DQ_CONVERT=after). sm_count (the device's) sizes a persistent fused kernel's grid.
void enqueue_fused_backward(const detail::Resolved& r, const SigjitBwdParams& params, const detail::LoadedKernel& fused,
                            const TileConfig& fused_config, const detail::LoadedKernel& convert, int sm_count, CUstream stream);

// The deterministic mode's Hopper path on the stream: zero params.dq_accum's fp32 values and the
// ordered reduction's counters after them (dq_workspace_bytes + dq_counters bytes, the caller's
// lease), the fused kernel with its ordered tile, the convert kernel.
void enqueue_ordered_backward(const detail::Resolved& r, const SigjitBwdParams& params, const detail::LoadedKernel& fused,
                              const TileConfig& fused_config, const detail::LoadedKernel& convert, CUstream stream);

// ---- TMA (the Hopper families' loads) ----------------------------------------------------------

// One Q, K, V or dO tensor as TMA sees it: [batch, rows, heads, head_dim] with element strides.
struct TmaTensor {
  const char* name;
  const void* base;
  Strides strides;
  std::int64_t rows;
  std::int64_t heads;
  std::int64_t batch;
  int elem_bytes = 2;  // 1: FP8
};

// Q, K, V; and dO (Q's shape, its own pointer and strides) when `backward` is given.
std::vector<TmaTensor> tma_tensors(const detail::Resolved& r, const SigjitBwdParams* backward = nullptr);

// Empty when tensor maps can describe every tensor of the call; otherwise why not.
std::string tma_unsuitable(const detail::Resolved& r, const SigjitBwdParams* backward = nullptr);

// The FP8 forward's V^T workspace (templates/sigjit/sm90/fp8_layout.h): [slabs][heads_kv]
// [head_dim][columns] bytes, one slab per batch (varlen: one), and the prologue's grid width.
struct Fp8VtLayout {
  std::int64_t columns = 0;
  std::int64_t slabs = 0;
  std::size_t bytes = 0;
  std::int64_t prologue_blocks = 0;  // 64-column blocks per (sequence, kv head)
};
Fp8VtLayout fp8_vt_layout(const detail::Resolved& r);

// ForwardOptions::fp8 (templates/sigjit/common/quantize_fp8.cuh): the e4m3 copies of a bf16 call's
// Q, K and V, dense ([batch, seqlen, heads, head_dim], varlen [total, heads, head_dim]), then
// amax and descale ([3][batch][heads_kv] floats each), then the FP8 forward's V^T; byte offsets
// in the forward's workspace, each 256-byte aligned.
struct Fp8QuantizeLayout {
  std::size_t q8 = 0, k8 = 0, v8 = 0, amax = 0, descale = 0, vt = 0;
  std::size_t factors = 0;  // 3 * batch * heads_kv
  std::size_t bytes = 0;    // the whole workspace, V^T included
};
Fp8QuantizeLayout fp8_quantize_layout(const detail::Resolved& r);

// The quantization's parameter block for the bf16 call r over the workspace at `workspace`.
SigjitQuantizeParams fp8_quantize_params(const detail::Resolved& r, unsigned char* workspace, const Fp8QuantizeLayout& layout);

// The varlen layout's rows past cu_seqlens[batch] of params.dq (the forward passes O there), and
// of params.dk and params.dv where non-null: zeros, by the dQ convert module's second entry
// (sm80/bwd.cuh varlen_tail_zero_kernel). Nothing for the other layouts.
void enqueue_varlen_tail_zero(const detail::Resolved& r, const SigjitBwdParams& params, const detail::LoadedKernel& convert,
                              CUstream stream);

// Zeroes amax, then launches the amax pass (kernel.prologue) and the quantization (kernel.function)
// over (ceil(max(seqlen_q, seqlen_k) / 64), heads_q + 2 heads_kv, batch).
void enqueue_fp8_quantize(const detail::Resolved& r, const SigjitQuantizeParams& params, const detail::LoadedKernel& kernel,
                          CUstream stream);

// The V^T workspace as a tensor map: dims {columns, head_dim, heads_kv, slabs}, box {128 keys,
// head_dim rows}, 128-byte swizzle.
void encode_fp8_vt_map(SigjitTensorMap& dst, void* vt, const Fp8VtLayout& layout, const AttentionArgs& a);

// A 128B-swizzled map whose box is one 64-column block of `box_rows` rows, copied into the
// parameter block's slot.
void encode_tma_map(SigjitTensorMap& dst, const TmaTensor& t, const AttentionArgs& a, int box_rows);

// The fp32 dQ workspace (bp.dq_accum, with bp's dqa strides) as a tensor map for tensor bulk
// reductions: dims {head_dim, rows, heads_q, batch}, box {32, box_rows} (128 bytes a row: the
// 128B swizzle's span), 128-byte swizzle.
void encode_dq_accum_map(SigjitTensorMap& dst, const SigjitBwdParams& bp, const AttentionArgs& a, int box_rows);

}  // namespace sigjit::kernels
