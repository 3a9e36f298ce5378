// Hopper (sm_90a) building blocks: mbarriers, TMA tile loads, proxy fences, wgmma issue and
// ordering, shared-memory matrix descriptors, setmaxnreg.
//
// What: each function is one PTX instruction or a short fixed sequence, named for what it does,
// written from the PTX ISA (section numbers below refer to PTX ISA 8.x/9.0). Why: the sm90 kernel
// (sm90/fwd.cuh) and the device tests of the primitives (tests/gpu/test_hopper_primitives.cpp)
// share them, so a descriptor or barrier bug is found in isolation. Cost: nothing beyond the
// instructions; everything is force-inlined. No CUDA headers: NVRTC compiles these without the
// toolkit's include tree, so the tensor map is an opaque 128-byte struct (SigjitTensorMap).
//
// Shared-memory tile convention used throughout (the "128B-swizzled K-major tile"): a tile of
// ROWS x COLS 16-bit elements is stored as COLS/64 column blocks, each ROWS x 64 elements = ROWS
// rows of 128 bytes, 1024-byte aligned, with TMA's CU_TENSOR_MAP_SWIZZLE_128B applied (16-byte
// chunk c of row r is stored at chunk c ^ (r % 8)). One TMA box {64, ROWS} fills one block. The
// same bytes serve as a K-major wgmma operand (rows = M or N, columns = K) and as an MN-major
// one (rows = K, columns = N), with the descriptors built below.
#pragma once

#include "sigjit/common/tile_primitives.cuh"
#include "sigjit/sm90/wgmma_ops.cuh"
#include "sigjit/common/tensor_map.h"

namespace sigjit {
namespace kern {

// ---- mbarrier (PTX ISA 9.7.13.15) ---------------------------------------------------------

__device__ __forceinline__ void mbarrier_init(u32 bar, u32 arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}

// Makes barrier initialisation visible to the other threads and to the async proxy (TMA
// complete_tx) before anyone uses the barriers; the caller follows it with a CTA barrier.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void mbarrier_arrive(u32 bar) {
  asm volatile("{ .reg .b64 st; mbarrier.arrive.shared::cta.b64 st, [%0]; }\n" ::"r"(bar) : "memory");
}

// One arrival that also raises the transaction count the phase waits for by `bytes`: the TMA
// loads issued next complete_tx those bytes on the same barrier.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(u32 bar, u32 bytes) {
  asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }\n" ::"r"(bar), "r"(bytes) : "memory");
}

// Blocks until the phase of parity `parity` has completed. try_wait may return false after a
// system-dependent time limit, hence the loop (PTX ISA: mbarrier.test_wait/try_wait).
__device__ __forceinline__ void mbarrier_wait(u32 bar, u32 parity) {
  u32 done = 0;
  do {
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

// ---- TMA: bulk tensor copies (PTX ISA 9.7.9.25.5.1 cp.async.bulk.tensor) -----------------------

// Generic address of a tensor map held in a __grid_constant__ kernel parameter: TMA reads the
// map from the param space through it (PTX ISA: the tensorMap operand is a generic address).
__device__ __forceinline__ u64 tensor_map_address(const SigjitTensorMap& map) { return (u64)(const void*)&map; }

// Loads the box at coordinates (c0 innermost .. c3) of a 4-D tensor map into shared memory at
// `dst`, counting its bytes on barrier `bar`. Out-of-bounds elements are zero-filled (tensor map
// made with CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) and still count toward the transaction bytes.
__device__ __forceinline__ void tma_load_4d(u32 dst, const SigjitTensorMap& map, u32 bar, int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
      "l"(tensor_map_address(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}

// All column blocks of one [rows x D] tile of a [.., rows, heads, batch] tensor map whose box is
// {64, rows}: COL_BLOCKS boxes, BLOCK_BYTES apart in shared memory, all counted on `bar`.
template <int COL_BLOCKS, int BLOCK_BYTES>
__device__ __forceinline__ void tma_load_tile(u32 dst, const SigjitTensorMap& map, u32 bar, int row, int head, int batch) {
#pragma unroll
  for (int c = 0; c < COL_BLOCKS; ++c) tma_load_4d(dst + c * BLOCK_BYTES, map, bar, c * 64, row, head, batch);
}

// Hint to fetch a tensor map's 128 bytes into the descriptor cache early.
__device__ __forceinline__ void tma_prefetch_map(const SigjitTensorMap& map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(tensor_map_address(map)) : "memory");
}

// Orders this thread's generic-proxy shared-memory accesses before later async-proxy ones
// (wgmma operand reads, TMA writes) and vice versa (PTX ISA 9.7.13.4 membar/fence, proxy fences).
__device__ __forceinline__ void fence_proxy_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// ---- bulk reductions into global memory (PTX ISA 9.7.9.25.4.2 cp.reduce.async.bulk) ------------
// Adds `bytes` (a multiple of 16; both addresses 16-byte aligned) of fp32 values from shared
// memory to global memory element-wise, asynchronously (async proxy: the shared source must be
// fenced with fence_proxy_async_shared after generic stores). Completion is tracked per thread in
// bulk groups: commit after issuing, then wait_group.read before the source is overwritten and
// wait_group before the CTA exits.
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, u32 src, u32 bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src), "r"(bytes) : "memory");
}

// Adds the box at `src` (laid out as the tensor map's box: swizzled, element type from the map)
// element-wise to the 4-D tensor at coordinates (c0 innermost .. c3), asynchronously, in this
// thread's bulk group; the tensor map clips rows past its bounds (PTX ISA 9.7.9.25.5.2
// cp.reduce.async.bulk.tensor).
__device__ __forceinline__ void tma_reduce_add_4d(const SigjitTensorMap& map, u32 src, int c0, int c1, int c2, int c3) {
  asm volatile("cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group [%0, {%1, %2, %3, %4}], [%5];\n" ::"l"(
                   tensor_map_address(map)),
               "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(src)
               : "memory");
}

// Orders this thread's async-proxy accesses to global memory (bulk and tensor copies and
// reductions) with its generic-proxy ones, both ways.
__device__ __forceinline__ void fence_proxy_async_global() { asm volatile("fence.proxy.async.global;\n" ::: "memory"); }

__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}

template <int N>
__device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---- named barriers among a subset of warps (PTX ISA 9.7.13.1 bar.sync) --------------------------
// A CTA has 16 barriers (0..15; __syncthreads uses 0). `threads` (a multiple of 32) counts every
// thread taking part, whether it syncs or arrives; the barrier completes when that many have
// arrived. bar.sync waits for completion; bar.arrive only marks arrival and never waits (its
// thread count is mandatory), which makes producer/consumer hand-offs between warp groups:
// one side arrives, the other syncs (PTX ISA "barrier{.cta}", bar.arrive). Both are .aligned:
// every thread of a warp executes the same one.

__device__ __forceinline__ void named_barrier_sync(u32 id, u32 threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void named_barrier_arrive(u32 id, u32 threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- register reallocation (PTX ISA 9.7.17.1 setmaxnreg, sm_90a) --------------------------------
// Every thread of the warpgroup must execute the same one; counts are multiples of 8 in [24, 256].

template <int REGS>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(REGS % 8 == 0 && REGS >= 24 && REGS <= 256, "setmaxnreg: a multiple of 8 in [24, 256]");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
}

template <int REGS>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(REGS % 8 == 0 && REGS >= 24 && REGS <= 256, "setmaxnreg: a multiple of 8 in [24, 256]");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
}

// ---- wgmma ordering (PTX ISA 9.7.15.6 wgmma.fence / commit_group / wait_group) -------------------

// Required before the first wgmma.mma_async and whenever registers it reads (accumulators, A
// fragments) were written by other instructions since the last one.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Waits until at most N committed wgmma groups of this warpgroup are pending.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// The asm statements above do not name the accumulator registers, so nothing stops the compiler
// from moving a register read across a wait_group. Passing each accumulator through an empty asm
// that "modifies" it pins its uses on the right side of the wait.
template <int N>
__device__ __forceinline__ void pin_registers(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

template <int N>
__device__ __forceinline__ void pin_registers(u32 (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// ---- shared-memory matrix descriptors (PTX ISA 9.7.15.5.1.2.2 "Matrix Descriptor Format") --------
//   bits  0-13: (start address & 0x3FFFF) >> 4
//   bits 16-29: leading dimension byte offset >> 4
//   bits 32-45: stride dimension byte offset >> 4
//   bits 49-51: base offset (0: every swizzle pattern starts on a 1024-byte boundary, as here)
//   bits 62-63: swizzle mode, 1 = 128-byte swizzle
// Canonical 128B-swizzle layouts (PTX ISA 9.7.15.5.1.2.1.3, T = 8 elements of 16 bits):
//   K-major : ((8,m),(T,2k)):((8T,SBO),(1,T))  -> rows of 128 B; SBO = 8 rows = 1024 B; LBO unused
//             ("assumed 1"). Stepping K by 16 elements inside the 128-byte row adds 32 B to the
//             start address; the hardware applies the XOR swizzle to the final address.
//   MN-major: ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)) -> 64 contiguous MN elements per 128-B row;
//             8 K-rows of 128 B per atom; SBO = next 8 K-rows = 1024 B; LBO = next 64 MN
//             elements = the distance between our 64-column blocks (ROWS * 128 B).

constexpr u64 kSwizzle128B = 1ull;

__device__ __forceinline__ u64 smem_descriptor(u32 smem_addr, u32 lbo_bytes, u32 sbo_bytes) {
  u64 d = 0;
  d |= (u64)((smem_addr & 0x3FFFF) >> 4);
  d |= (u64)((lbo_bytes & 0x3FFFF) >> 4) << 16;
  d |= (u64)((sbo_bytes & 0x3FFFF) >> 4) << 32;
  d |= kSwizzle128B << 62;
  return d;
}

// K-major operand (A = Q rows, or B = K rows): row `row0` of a 64-column block at `block_addr`,
// K offset `k_elems` (a multiple of 16, below 64) inside the block.
__device__ __forceinline__ u64 kmajor_descriptor(u32 block_addr, int row0, int k_elems) {
  return smem_descriptor(block_addr + row0 * 128 + k_elems * 2, 16, 1024);
}

// K-major operand of one-byte elements (FP8) whose rows are `row_bytes` long: 128-byte rows in
// the 128B swizzle (SBO 1024, as above), 64-byte rows (FP8 at head dim 64) in the 64B swizzle
// (swizzle mode 2: 8 rows of 64 bytes = 512-byte atoms, SBO 512). K steps of 32 elements add 32
// bytes to the start address, as for 16-bit K steps of 16.
__device__ __forceinline__ u64 kmajor_descriptor_bytes(u32 tile_addr, int row_bytes) {
  if (row_bytes == 128) return smem_descriptor(tile_addr, 16, 1024);
  u64 d = 0;
  d |= (u64)((tile_addr & 0x3FFFF) >> 4);
  d |= (u64)(16 >> 4) << 16;
  d |= (u64)(512 >> 4) << 32;
  d |= 2ull << 62;
  return d;
}

// MN-major B operand (V: rows = K = keys, columns = N = head dim): K rows starting at `k_row0`
// (a multiple of 8) of a tile whose 64-column blocks lie `block_bytes` apart.
__device__ __forceinline__ u64 mnmajor_descriptor(u32 tile_addr, int k_row0, u32 block_bytes) {
  return smem_descriptor(tile_addr + k_row0 * 128, block_bytes, 1024);
}

// The descriptor of the same layout `bytes` further on (bytes a multiple of 16): adds bytes >> 4
// to the start-address field of the low word only. Shared-window addresses on sm_90 stay below
// 256 KB, so the 14-bit field never carries into the next one. Why: a K step or a stage's
// 64-column block then costs one 32-bit add of an immediate instead of rebuilding the whole
// descriptor (mask, shift, or, per wgmma: about 40 issue slots per key tile at hd 64).
__device__ __forceinline__ u64 descriptor_advance(u64 desc, u32 bytes) {
  const u32 lo = (u32)desc + (bytes >> 4);
  return (desc & 0xFFFFFFFF00000000ull) | lo;
}

// ---- fragment conversions -------------------------------------------------------------------
// wgmma m64nN f32 accumulator (PTX ISA Figure "WGMMA .m64nNk16 register fragment layout for
// accumulator matrix D"): warp w of the warpgroup owns rows 16w..16w+15; thread lane holds, for
// each n8 column block j, d[4j+0..1] at row lane/4, columns 8j + 2*(lane%4) + {0,1}, and
// d[4j+2..3] at row lane/4 + 8, same columns. The m64k16 A register fragment (Figure "WGMMA
// .m64nNk16 register fragment layout for matrix A") is the mma.sync m16n8k16 A layout per warp:
// a[0] = (row lane/4, k 2*(lane%4)+{0,1}), a[1] = (row +8, same k), a[2] = (row, k + 8),
// a[3] = (row + 8, k + 8). So k-step kk of P takes accumulator blocks 2kk and 2kk+1 unchanged:
// exactly the FlashAttention-2 register reuse, now across the warpgroup.
template <bool IS_BF16, int NACC>
__device__ __forceinline__ void accumulator_to_a_fragment(u32 (&a)[4], const float (&d)[NACC], int kk) {
  a[0] = pack_half2<IS_BF16>(d[8 * kk + 0], d[8 * kk + 1]);
  a[1] = pack_half2<IS_BF16>(d[8 * kk + 2], d[8 * kk + 3]);
  a[2] = pack_half2<IS_BF16>(d[8 * kk + 4], d[8 * kk + 5]);
  a[3] = pack_half2<IS_BF16>(d[8 * kk + 6], d[8 * kk + 7]);
}

// Four f32 values as four e4m3 bytes, x0 in the lowest (cvt.rn.satfinite.e4m3x2.f32 d, a, b puts
// a in the upper byte of d, b in the lower; satfinite clamps to +-448 instead of NaN).
__device__ __forceinline__ u32 pack_e4m3x4(float x0, float x1, float x2, float x3) {
  unsigned short lo, hi;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(lo) : "f"(x1), "f"(x0));
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(hi) : "f"(x3), "f"(x2));
  return (u32)lo | ((u32)hi << 16);
}

}  // namespace kern
}  // namespace sigjit
