#include "tests/common/hopper_test_source.hpp"

#include <fmt/format.h>

namespace sigjit::testing {
namespace {

// Three entry points sharing one shape: M = 64 rows (one warpgroup), K-major A [64 x KD] and
// B [N x KD] (SS), P [64 x KEYS] in registers times V [KEYS x DV] (RS, V row-major = N-major B).
// A fourth, dq_test (DV 64/128, 256 threads), is the sm90 backward's dQ path (sm90/bwd.cuh):
// dS^T from accumulator-layout registers through store_ds into the swizzled tile, then issue_dq's
// transposed-A SS wgmma against a TMA-loaded K (N-major B), split over two warpgroups as in the
// default configs. A fifth, grad_store_test (DV 64/128), is its dK/dV epilogue: the quad transpose
// and the predicated 16-byte stores of store_grad_rows.
const char* const kSource = R"(
#include "sigjit/sm90/primitives.cuh"
#if DV <= 128
#include "sigjit/sm90/bwd.cuh"
#endif
using namespace sigjit::kern;

struct Maps { SigjitTensorMap a; SigjitTensorMap b; SigjitTensorMap c; };

extern __shared__ __align__(1024) unsigned char raw[];

__device__ __forceinline__ u32 aligned_base() {
  return (shared_address(raw) + 1023u) & ~1023u;
}

// Rows x (64 * blocks) tile, one TMA box {64, rows} per 64-column block.
__device__ __forceinline__ void load_tile(u32 dst, const SigjitTensorMap& map, u32 bar, int rows, int blocks) {
  for (int c = 0; c < blocks; ++c) tma_load_4d(dst + c * rows * 128, map, bar, c * 64, 0, 0, 0);
}

template <int N>
__device__ __forceinline__ void store_acc(float* out, const float (&d)[N / 2]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = warp * 16 + lane / 4;
  for (int j = 0; j < N / 8; ++j) {
    const int col = j * 8 + (lane % 4) * 2;
    out[row * N + col] = d[4 * j];
    out[row * N + col + 1] = d[4 * j + 1];
    out[(row + 8) * N + col] = d[4 * j + 2];
    out[(row + 8) * N + col + 1] = d[4 * j + 3];
  }
}

// S = A B^T, A [64 x KD], B [kN x KD].
template <int kN>
__device__ __forceinline__ void ss_chain(float (&d)[kN / 2], u32 a_s, u32 b_s) {
  for (int i = 0; i < kN / 2; ++i) d[i] = 0.0f;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < KD / 16; ++kk) {
    const int block = kk / 4, k = (kk % 4) * 16;
    Wgmma<kN>::template ss<true, 0>(d, kmajor_descriptor(a_s + block * 64 * 128, 0, k), kmajor_descriptor(b_s + block * kN * 128, 0, k), 1);
  }
  wgmma_commit();
  wgmma_wait<0>();
  pin_registers(d);
}

template <int kKeys>
__device__ __forceinline__ void rs_chain(float (&o)[DV / 2], const u32 (&a)[kKeys / 16][4], u32 v_s) {
  for (int i = 0; i < DV / 2; ++i) o[i] = 0.0f;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk) Wgmma<DV>::rs<true, 1>(o, a[kk], mnmajor_descriptor(v_s + 0, kk * 16, kKeys * 128), 1);
  wgmma_commit();
  wgmma_wait<0>();
  pin_registers(o);
}

extern "C" __global__ void __launch_bounds__(128, 1) ss_test(const __grid_constant__ Maps maps, float* out) {
  const u32 a_s = aligned_base(), b_s = a_s + 64 * KD * 2, bar = b_s + NS * KD * 2;
  if (threadIdx.x == 0) { mbarrier_init(bar, 1); fence_barrier_init(); }
  __syncthreads();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(bar, (64 + NS) * KD * 2);
    load_tile(a_s, maps.a, bar, 64, KD / 64);
    load_tile(b_s, maps.b, bar, NS, KD / 64);
  }
  mbarrier_wait(bar, 0);
  float d[NS / 2];
  ss_chain<NS>(d, a_s, b_s);
  store_acc<NS>(out, d);
}

// P [64 x KEYS] bf16 row-major from global memory into A fragments (the m64k16 layout).
extern "C" __global__ void __launch_bounds__(128, 1) rs_test(const __grid_constant__ Maps maps, const unsigned short* p, float* out) {
  const u32 v_s = aligned_base(), bar = v_s + KEYS * DV * 2;
  if (threadIdx.x == 0) { mbarrier_init(bar, 1); fence_barrier_init(); }
  __syncthreads();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(bar, KEYS * DV * 2);
    load_tile(v_s, maps.c, bar, KEYS, DV / 64);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = warp * 16 + lane / 4;
  u32 a[KEYS / 16][4];
  for (int kk = 0; kk < KEYS / 16; ++kk) {
    const int k = kk * 16 + (lane % 4) * 2;
    a[kk][0] = *(const u32*)(p + row * KEYS + k);
    a[kk][1] = *(const u32*)(p + (row + 8) * KEYS + k);
    a[kk][2] = *(const u32*)(p + row * KEYS + k + 8);
    a[kk][3] = *(const u32*)(p + (row + 8) * KEYS + k + 8);
  }
  mbarrier_wait(bar, 0);
  float o[DV / 2];
  rs_chain<KEYS>(o, a, v_s);
  store_acc<DV>(out, o);
}

// O = bf16(A B^T) V: the kernel's S -> P -> PV path (NS = KEYS).
extern "C" __global__ void __launch_bounds__(128, 1) chain_test(const __grid_constant__ Maps maps, float* out) {
  const u32 a_s = aligned_base(), b_s = a_s + 64 * KD * 2, v_s = b_s + NS * KD * 2, bar = v_s + NS * DV * 2;
  if (threadIdx.x == 0) { mbarrier_init(bar, 1); fence_barrier_init(); }
  __syncthreads();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(bar, (64 + NS) * KD * 2 + NS * DV * 2);
    load_tile(a_s, maps.a, bar, 64, KD / 64);
    load_tile(b_s, maps.b, bar, NS, KD / 64);
    load_tile(v_s, maps.c, bar, NS, DV / 64);
  }
  mbarrier_wait(bar, 0);
  float s[NS / 2];
  ss_chain<NS>(s, a_s, b_s);
  u32 pf[NS / 16][4];
  for (int kk = 0; kk < NS / 16; ++kk) accumulator_to_a_fragment<true>(pf[kk], s, kk);
  float o[DV / 2];
  rs_chain<NS>(o, pf, v_s);
  store_acc<DV>(out, o);
}

#if DV <= 128
// The default configs' dQ paths: two consumer warpgroups over 128 keys; hd 128 with 64-query
// steps (each warpgroup 64 head-dim columns), hd 64 with 128-query steps (each warpgroup one m64
// query tile). dS^T is given row-major [128 keys x BQ queries] in fp32 (bf16-representable),
// K [128 x DV] through maps.c; out is dQ [BQ x DV] = dS K.
#define BQ (DV == 64 ? 128 : 64)
using DqCfg = BwdSm90Config<DV, BQ, 2, 2, false, true, 0, false, 0, false, false>;

extern "C" __global__ void __launch_bounds__(256, 1) dq_test(const __grid_constant__ Maps maps, const float* ds_t, float* out) {
  const BwdSm90Smem<DqCfg> sm{aligned_base()};
  const u32 bar = sm.kv_full();
  if (threadIdx.x == 0) { mbarrier_init(bar, 1); fence_barrier_init(); }
  __syncthreads();
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(bar, 128 * DV * 2);
    load_tile(sm.k(), maps.c, bar, 128, DV / 64);
  }
  const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  float d[BQ / 2];  // the m64nBQ accumulator layout of this warpgroup's 64 keys of dS^T
  for (int j = 0; j < BQ / 8; ++j)
    for (int e = 0; e < 4; ++e) d[4 * j + e] = ds_t[(wg * 64 + warp * 16 + lane / 4 + (e / 2) * 8) * BQ + j * 8 + (lane % 4) * 2 + e % 2];
  u32 dsf[BQ / 16][4];
  for (int kk = 0; kk < BQ / 16; ++kk) accumulator_to_a_fragment<true>(dsf[kk], d, kk);
  store_ds<DqCfg>(sm.ds(0), dsf, wg, warp, lane);
  fence_proxy_async_shared();
  __syncthreads();
  mbarrier_wait(bar, 0);
  float dq[DqCfg::kDqMTiles][DqCfg::kDqAcc];
  issue_dq<DqCfg>(dq, sm, 0, wg);
  wgmma_wait<0>();
  const int col0 = DqCfg::kDqSplitRows ? 0 : wg * DqCfg::kDqCols;
  const int mt0 = DqCfg::kDqSplitRows ? wg * DqCfg::kDqMTiles : 0;
  for (int mt = 0; mt < DqCfg::kDqMTiles; ++mt) {
    pin_registers(dq[mt]);
    const int row = (mt0 + mt) * 64 + warp * 16 + lane / 4;
    for (int j = 0; j < DqCfg::kDqCols / 8; ++j) {
      const int col = col0 + j * 8 + (lane % 4) * 2;
      out[row * DV + col] = dq[mt][4 * j];
      out[row * DV + col + 1] = dq[mt][4 * j + 1];
      out[(row + 8) * DV + col] = dq[mt][4 * j + 2];
      out[(row + 8) * DV + col + 1] = dq[mt][4 * j + 3];
    }
  }
}

// The backward's dK/dV epilogue (store_grad_rows): one warpgroup's 64 rows of fp32 accumulators
// [64 x DV] (the m64nDV layout), scaled by 0.5, through the quad transpose into 16-byte bf16
// stores: rows below GRAD_LEN_K hold values, rows up to GRAD_CLEAR_ROWS zeros, the rest nothing
// (warp 3 writes no row: its halves are skipped whole).
extern "C" __global__ void __launch_bounds__(128, 1) grad_store_test(const __grid_constant__ Maps maps, const float* in, float* out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int key0 = warp * 16 + lane / 4;
  float acc[DqCfg::kDAcc];
  for (int nt = 0; nt < DV / 8; ++nt)
    for (int e = 0; e < 4; ++e) acc[4 * nt + e] = in[(key0 + (e / 2) * 8) * DV + nt * 8 + (lane % 4) * 2 + e % 2];
  store_grad_rows<DqCfg>((u16*)out, DV, acc, 0.5f, key0, GRAD_LEN_K, GRAD_CLEAR_ROWS, lane);
}
#endif
)";

}  // namespace

std::vector<HopperShape> hopper_test_shapes() { return {{64, 64, 64}, {128, 128, 128}, {128, 64, 256}, {256, 64, 128}, {64, 128, 64}}; }

HopperTestBuild compile_hopper_test_kernels(const HopperShape& s) {
  return compile_with_templates(
      kSource, "hopper_primitives_test.cu",
      {fmt::format("-DKD={}", s.kd), fmt::format("-DNS={}", s.ns), fmt::format("-DDV={}", s.dv), fmt::format("-DKEYS={}", s.ns),
       fmt::format("-DGRAD_LEN_K={}", kGradStoreLenK), fmt::format("-DGRAD_CLEAR_ROWS={}", kGradStoreClearRows)});
}

}  // namespace sigjit::testing
