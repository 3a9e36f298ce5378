// Tile primitives for the sm_80+ (mma.sync) kernels: async copies, ldmatrix, mma and the
// sigmoid. Each is one PTX instruction or a short fixed sequence so that the kernels read as
// a composition of named steps. No CUDA headers are included: the kernels must compile under
// NVRTC on a machine that has only libnvrtc, not the toolkit's include tree.
#pragma once

#include "sigjit/common/params.h"

namespace sigjit {
namespace kern {

typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;

__device__ __forceinline__ u32 shared_address(const void* ptr) {
  u32 addr;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(addr) : "l"(ptr));
  return addr;
}

// 16-byte global->shared copy; a false predicate zero-fills the destination and reads nothing,
// which is how ragged tile edges and padding become zeros without branches.
__device__ __forceinline__ void cp_async_16(u32 dst, const void* src, bool pred) {
  const int src_bytes = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// D += A * B for one m16n8k16 tile, fp32 accumulation.
template <bool IS_BF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  if (IS_BF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Packs (lo, hi) into one 32-bit register of two 16-bit floats, lo in the low half.
template <bool IS_BF16>
__device__ __forceinline__ u32 pack_half2(float lo, float hi) {
  u32 r;
  if (IS_BF16) {
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  } else {
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  }
  return r;
}

// A 4x4 transpose of 32-bit words across the quad (4 lanes, lane % 4 = q) that holds one row of an
// mma/wgmma accumulator: on entry w[j] is the packed column pair 2q of 8-column tile j, on exit w[j]
// is column pair 2j of tile q, so each lane holds 8 consecutive columns for one 16-byte store (a
// quarter of the store instructions and of the L2 write requests). Two butterfly rounds of two
// shuffles each; every lane of the warp must take part, so callers never branch around it.
__device__ __forceinline__ void transpose_quad_words(u32 (&w)[4], int lane) {
  const bool upper = lane & 2;  // round 1: pairs of words cross between lanes q and q ^ 2
  u32 a = __shfl_xor_sync(0xFFFFFFFFu, upper ? w[0] : w[2], 2);
  u32 b = __shfl_xor_sync(0xFFFFFFFFu, upper ? w[1] : w[3], 2);
  if (upper) {
    w[0] = a;
    w[1] = b;
  } else {
    w[2] = a;
    w[3] = b;
  }
  const bool odd = lane & 1;  // round 2: single words cross between lanes q and q ^ 1
  a = __shfl_xor_sync(0xFFFFFFFFu, odd ? w[0] : w[1], 1);
  b = __shfl_xor_sync(0xFFFFFFFFu, odd ? w[2] : w[3], 1);
  if (odd) {
    w[0] = a;
    w[2] = b;
  } else {
    w[1] = a;
    w[3] = b;
  }
}

// The lane index read from the hardware register. volatile, so that ptxas reads it where it is
// used instead of keeping threadIdx-derived values live across a loop at the register limit.
__device__ __forceinline__ int lane_id() {
  int lane;
  asm volatile("mov.u32 %0, %%laneid;\n" : "=r"(lane));
  return lane;
}

// One 16-byte global store under a predicate, without a branch that would split the warp.
__device__ __forceinline__ void store_16_if(void* dst, const u32 (&w)[4], bool pred) {
  asm volatile(
      "{ .reg .pred p; setp.ne.b32 p, %5, 0;\n"
      "@p st.global.v4.b32 [%0], {%1, %2, %3, %4}; }\n" ::"l"(dst),
      "r"(w[0]), "r"(w[1]), "r"(w[2]), "r"(w[3]), "r"((int)pred)
      : "memory");
}

__device__ __forceinline__ float tanh_approx(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float rcp_approx(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// The sigmoid of x = s * scale + c, with the affine part folded into one FMA by the caller:
// it passes s, a multiplier and an addend prepared for the mode (see SigmoidFold).
//  fast:  sigmoid(x) = 0.5 + 0.5 * tanh(x / 2): one MUFU op per score.
//  exact: sigmoid(x) = 1 / (1 + 2^(-x log2 e)): two MUFU ops, relative error < 2e-6.
template <bool EXACT>
struct SigmoidFold {
  float mul;
  __device__ __forceinline__ SigmoidFold(float scale) : mul(EXACT ? -scale * 1.4426950408889634f : 0.5f * scale) {}
  __device__ __forceinline__ static float addend(float c) {
    return EXACT ? -c * 1.4426950408889634f : 0.5f * c;
  }
  __device__ __forceinline__ float operator()(float s, float folded_addend) const {
    const float t = __fmaf_rn(s, mul, folded_addend);
    if (EXACT) return rcp_approx(1.0f + exp2_approx(t));
    return __fmaf_rn(0.5f, tanh_approx(t), 0.5f);
  }
  // g p (1 - p), the gradient through the sigmoid at value p, on the backward's per-score path. The
  // fast sigmoid's is gp - gp p, an FMUL and an FFMA instead of an FADD and two FMULs; the exact
  // one keeps the three, because fused, ptxas spilled 4-36 B at hd 64 without early scores.
  __device__ __forceinline__ static float grad(float g, float p) {
    if (EXACT) return g * p * (1.0f - p);
    const float gp = g * p;
    return __fmaf_rn(-gp, p, gp);
  }
};

__device__ __forceinline__ float fast_log(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y * 0.6931471805599453f;
}

// ---- ordering across CTAs and kernels (PTX ISA 9.7.13.4 memory consistency; griddepcontrol) --------
// A counter read with acquire semantics at gpu scope: what its releaser wrote before the release
// is visible to this thread afterwards.
__device__ __forceinline__ int ld_acquire_gpu(const int* counter) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(counter) : "memory");
  return v;
}

// A counter read at gpu scope without ordering: a poll that needs only to see it grow.
__device__ __forceinline__ int ld_relaxed_gpu(const int* counter) {
  int v;
  asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(counter) : "memory");
  return v;
}

// Adds to a counter with release semantics at gpu scope (after everything this thread wrote).
__device__ __forceinline__ void red_release_gpu_add(int* counter, int v) {
  asm volatile("red.release.gpu.global.add.s32 [%0], %1;\n" ::"l"(counter), "r"(v) : "memory");
}

// Programmatic dependent launch (sm_90+; no-ops before, and when the launch did not ask for it).
// launch_dependents: the kernel launched after this one with programmatic stream serialization
// may start once every CTA of this grid has issued it or exited (once per CTA is enough).
// wait: blocks until the grids this one depends on have completed and their writes are visible.
__device__ __forceinline__ void griddep_launch_dependents() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_wait() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// ---- Tile trace (debug: SIGJIT_TRACE_TILES, common/params.h's SigjitTileTrace) ---------------
// Compiled in only when the switch is on, which changes the binary and the cache key; otherwise
// the calls are empty. One thread per role records, so no record is written twice.

__device__ __forceinline__ unsigned long long global_timer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

#ifdef SIGJIT_TRACE_TILES
}  // namespace kern
}  // namespace sigjit
extern "C" {
__device__ SigjitTileTrace sigjit_tile_trace[SIGJIT_TILE_TRACE_CAP];
}
namespace sigjit {
namespace kern {
#endif

// The one-CTA-per-tile grid's tile: blockIdx.x fastest, the order persistent schedules claim in.
__device__ __forceinline__ int launch_order_tile() { return (int)(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z)); }

__device__ __forceinline__ void trace_tile_begin(int tile) {
#ifdef SIGJIT_TRACE_TILES
  if (tile < 0 || tile >= SIGJIT_TILE_TRACE_CAP) return;
  u32 sm;
  asm volatile("mov.u32 %0, %%smid;\n" : "=r"(sm));
  SigjitTileTrace& r = sigjit_tile_trace[tile];
  r.sm = sm;
  r.cta = (u32)launch_order_tile();
  r.begin_ns = global_timer_ns();
#endif
}
__device__ __forceinline__ void trace_tile_end(int tile) {
#ifdef SIGJIT_TRACE_TILES
  if (tile >= 0 && tile < SIGJIT_TILE_TRACE_CAP) sigjit_tile_trace[tile].end_ns = global_timer_ns();
#endif
}
__device__ __forceinline__ void trace_tile_kv_ready(int tile) {
#ifdef SIGJIT_TRACE_TILES
  if (tile >= 0 && tile < SIGJIT_TILE_TRACE_CAP) sigjit_tile_trace[tile].kv_ready_ns = global_timer_ns();
#endif
}
__device__ __forceinline__ void trace_tile_steps_done(int tile) {
#ifdef SIGJIT_TRACE_TILES
  if (tile >= 0 && tile < SIGJIT_TILE_TRACE_CAP) sigjit_tile_trace[tile].steps_done_ns = global_timer_ns();
#endif
}
__device__ __forceinline__ void trace_tile_reduced(int tile) {
#ifdef SIGJIT_TRACE_TILES
  if (tile >= 0 && tile < SIGJIT_TILE_TRACE_CAP) sigjit_tile_trace[tile].reduced_ns = global_timer_ns();
#endif
}

}  // namespace kern
}  // namespace sigjit
