// The per-SM rates that bench/MODEL-fp8.md's time model rests on, measured on the device before any
// FP8 kernel is built (issue 22): the wgmma rate in e4m3 and in bf16 (the same harness for both, so
// the ratio does not depend on the harness), MUFU tanh and ex2, the e4m3x2 conversion, FFMA and the
// FMA-only sigmoid (templates/sigjit/common/sigmoid_poly.h, the code the kernels run).
//
// How: one CTA per SM; each CTA times its own loop with clock64 (SM clocks, so the result does not
// depend on the clock the GPU runs at), and the host reports results per SM per clock, the median
// CTA of the median of several launches, beside the vendor figure the model used. Inputs are
// non-zero and the results feed a sink, so nothing is folded away.
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I templates bench/fp8_rates.cu
//   (scripts/device/fp8_rates.sh builds and runs it on the device)
#include <cstring>  // sigmoid_poly.h's host path under nvcc

#include "sigjit/common/sigmoid_poly.h"
#include "sigjit/sm90/primitives.cuh"
#include "sigjit/sm90/wgmma_fp8_ops.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CUDA_CHECK(call)                                                                          \
  do {                                                                                            \
    const cudaError_t err_ = (call);                                                              \
    if (err_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s failed: %s (%s) at %s:%d\n", #call, cudaGetErrorName(err_),        \
                   cudaGetErrorString(err_), __FILE__, __LINE__);                                 \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

using sigjit::kern::u32;
using sigjit::kern::u64;

namespace {

constexpr int kWgmmaPerGroup = 8;  // wgmmas issued back to back before each wait
constexpr int kRowsA = 64, kRowsB = 256, kRowBytes = 128;

// Two warpgroups per CTA each issue m64n256 wgmmas on one 64 x 128-byte A tile and one
// 256 x 128-byte B tile (128B-swizzled, K-major: the kernels' layout); four K steps of 32 bytes
// cover a row (k16 in bf16, k32 in e4m3).
template <bool FP8>
__global__ void __launch_bounds__(256, 1) tensor_rate(int groups, float* sink, long long* cycles) {
  __shared__ alignas(1024) unsigned char a_tile[kRowsA * kRowBytes];
  __shared__ alignas(1024) unsigned char b_tile[kRowsB * kRowBytes];
  // bf16 1.0 + small / e4m3 values around 1: finite, non-zero, no subnormals.
  for (int i = threadIdx.x; i < kRowsA * kRowBytes; i += blockDim.x) a_tile[i] = FP8 ? 0x38 + (i & 3) : (i & 1 ? 0x3f : 0x80 + (i & 6));
  for (int i = threadIdx.x; i < kRowsB * kRowBytes; i += blockDim.x) b_tile[i] = FP8 ? 0x30 + (i & 7) : (i & 1 ? 0x3f : 0x40 + (i & 6));
  sigjit::kern::fence_proxy_async_shared();
  __syncthreads();
  const u32 a_addr = (u32)__cvta_generic_to_shared(a_tile), b_addr = (u32)__cvta_generic_to_shared(b_tile);
  float d[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) d[i] = 0.f;
  const long long start = clock64();
  for (int g = 0; g < groups; ++g) {
    sigjit::kern::wgmma_fence();
#pragma unroll
    for (int w = 0; w < kWgmmaPerGroup; ++w) {
      const u64 da = sigjit::kern::smem_descriptor(a_addr + (w % 4) * 32, 16, 1024);
      const u64 db = sigjit::kern::smem_descriptor(b_addr + (w % 4) * 32, 16, 1024);
      if constexpr (FP8) sigjit::kern::WgmmaFp8<256>::ss(d, da, db, 1);
      else sigjit::kern::Wgmma<256>::ss<true, 0>(d, da, db, 1);
    }
    sigjit::kern::wgmma_commit();
    sigjit::kern::wgmma_wait<0>();
    sigjit::kern::pin_registers(d);
  }
  __syncthreads();
  const long long stop = clock64();
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 128; ++i) s += d[i];
  sink[blockIdx.x * blockDim.x + threadIdx.x] = s;
  if (threadIdx.x == 0) cycles[blockIdx.x] = stop - start;
}

enum class Unit { ffma, tanh, ex2, cvt_e4m3x2, sigmoid_fma, ex2_f16x2, ex2_bf16x2, tanh_f16x2 };

// The packed forms give two results an instruction. Whether the MUFU pipe also retires two a lane
// a clock (a P path for FP8 at half the MUFU time) or splits them into two scalar ops is the
// hardware's answer, not the ISA's: the rate below and the SASS (fp8_rates.sh) tell.
template <Unit U>
__device__ __forceinline__ u32 packed_mufu(u32 x) {
  u32 y;
  if constexpr (U == Unit::ex2_f16x2) asm volatile("ex2.approx.f16x2 %0, %1;" : "=r"(y) : "r"(x));
  if constexpr (U == Unit::ex2_bf16x2) asm volatile("ex2.approx.ftz.bf16x2 %0, %1;" : "=r"(y) : "r"(x));
  if constexpr (U == Unit::tanh_f16x2) asm volatile("tanh.approx.f16x2 %0, %1;" : "=r"(y) : "r"(x));
  return y ^ 0x00010001u;  // one LOP beside each MUFU op, as the scalar units' FADD
}

template <Unit U>
__device__ __forceinline__ float step(float x, float c, u32& acc) {
  if constexpr (U == Unit::ffma) return __fmaf_rn(x, c, 0.5f);
  if constexpr (U == Unit::tanh) {
    float y;
    asm volatile("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y + c;  // keeps the chain away from a fixed point; one FADD beside each MUFU op
  }
  if constexpr (U == Unit::ex2) {
    float y;
    asm volatile("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y * c;
  }
  if constexpr (U == Unit::cvt_e4m3x2) {
    unsigned short h;
    asm volatile("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(h) : "f"(x), "f"(c));
    acc ^= h;
    return x;
  }
  if constexpr (U == Unit::sigmoid_fma) return sigjit::poly::sigmoid_poly<false>(x * c) - 0.5f;
  if constexpr (U == Unit::ex2_f16x2 || U == Unit::ex2_bf16x2 || U == Unit::tanh_f16x2)
    return __uint_as_float(packed_mufu<U>(__float_as_uint(x)));
  return x;
}

// 1024 threads a CTA, 8 independent chains a thread: enough in flight for every pipe's latency.
template <Unit U>
__global__ void __launch_bounds__(1024, 1) unit_rate(int iters, float* sink, long long* cycles) {
  float x[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) x[j] = 0.25f + 0.01f * (threadIdx.x % 17) + 0.03f * j;
  const float c = -0.75f + 1e-3f * (blockIdx.x % 7);
  u32 acc = 0;
  __syncthreads();
  const long long start = clock64();
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int j = 0; j < 8; ++j) x[j] = step<U>(x[j], c, acc);
  }
  __syncthreads();
  const long long stop = clock64();
  float s = (float)acc;
#pragma unroll
  for (int j = 0; j < 8; ++j) s += x[j];
  sink[blockIdx.x * blockDim.x + threadIdx.x] = s;
  if (threadIdx.x == 0) cycles[blockIdx.x] = stop - start;
}

struct Rate {
  double per_sm_clock;  // results (or FLOP) per SM per clock, median CTA of the median launch
  double wall_ms;
};

template <typename Launch>
Rate measure(Launch launch, double work_per_cta, int ctas, long long* d_cycles) {
  std::vector<double> rates, walls;
  cudaEvent_t t0, t1;
  CUDA_CHECK(cudaEventCreate(&t0));
  CUDA_CHECK(cudaEventCreate(&t1));
  launch();  // warm-up
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
  for (int rep = 0; rep < 7; ++rep) {
    CUDA_CHECK(cudaEventRecord(t0));
    launch();
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaEventRecord(t1));
    CUDA_CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    std::vector<long long> cycles(ctas);
    CUDA_CHECK(cudaMemcpy(cycles.data(), d_cycles, ctas * sizeof(long long), cudaMemcpyDeviceToHost));
    std::sort(cycles.begin(), cycles.end());
    rates.push_back(work_per_cta / (double)cycles[ctas / 2]);
    walls.push_back(ms);
  }
  std::sort(rates.begin(), rates.end());
  std::sort(walls.begin(), walls.end());
  CUDA_CHECK(cudaEventDestroy(t0));
  CUDA_CHECK(cudaEventDestroy(t1));
  return {rates[rates.size() / 2], walls[walls.size() / 2]};
}

}  // namespace

int main() {
  int dev = 0, sms = 0, clock_khz = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s, %d SMs, max SM clock %.0f MHz\n", prop.name, sms, clock_khz / 1e3);

  float* sink = nullptr;
  long long* cycles = nullptr;
  CUDA_CHECK(cudaMalloc(&sink, sizeof(float) * sms * 1024));
  CUDA_CHECK(cudaMalloc(&cycles, sizeof(long long) * sms));

  std::printf("%-28s %14s %12s %12s %10s\n", "unit", "per SM/clock", "model", "measured/model", "wall ms");
  auto report = [&](const char* name, Rate r, double model) {
    std::printf("%-28s %14.1f %12.1f %12.2f %10.3f\n", name, r.per_sm_clock, model, r.per_sm_clock / model, r.wall_ms);
  };

  const int groups = 2048;
  const double wgmma_flop_fp8 = 2.0 * 64 * 256 * 32, wgmma_flop_bf16 = 2.0 * 64 * 256 * 16;
  const Rate fp8 = measure([&] { tensor_rate<true><<<sms, 256>>>(groups, sink, cycles); },
                           2.0 * groups * kWgmmaPerGroup * wgmma_flop_fp8, sms, cycles);
  const Rate bf16 = measure([&] { tensor_rate<false><<<sms, 256>>>(groups, sink, cycles); },
                            2.0 * groups * kWgmmaPerGroup * wgmma_flop_bf16, sms, cycles);
  report("wgmma e4m3 m64n256k32 FLOP", fp8, 8192);
  report("wgmma bf16 m64n256k16 FLOP", bf16, 4096);
  std::printf("  e4m3 / bf16 FLOP rate: %.2f; TFLOP/s at the wall clock: e4m3 %.0f, bf16 %.0f\n",
              fp8.per_sm_clock / bf16.per_sm_clock,
              2.0 * groups * kWgmmaPerGroup * wgmma_flop_fp8 * sms / (fp8.wall_ms * 1e9),
              2.0 * groups * kWgmmaPerGroup * wgmma_flop_bf16 * sms / (bf16.wall_ms * 1e9));

  const int iters = 4096;
  const double results = 1024.0 * iters * 8;
  report("FFMA", measure([&] { unit_rate<Unit::ffma><<<sms, 1024>>>(iters, sink, cycles); }, results, sms, cycles), 128);
  report("MUFU tanh.approx (+FADD)", measure([&] { unit_rate<Unit::tanh><<<sms, 1024>>>(iters, sink, cycles); }, results, sms, cycles), 16);
  report("MUFU ex2.approx (+FMUL)", measure([&] { unit_rate<Unit::ex2><<<sms, 1024>>>(iters, sink, cycles); }, results, sms, cycles), 16);
  // Model 32: two halves a lane a clock if the pipe packs; 16 if it splits them.
  report("MUFU ex2.approx.f16x2, halves",
         measure([&] { unit_rate<Unit::ex2_f16x2><<<sms, 1024>>>(iters, sink, cycles); }, 2 * results, sms, cycles), 32);
  report("MUFU ex2.approx.bf16x2, halves",
         measure([&] { unit_rate<Unit::ex2_bf16x2><<<sms, 1024>>>(iters, sink, cycles); }, 2 * results, sms, cycles), 32);
  report("MUFU tanh.approx.f16x2, halves",
         measure([&] { unit_rate<Unit::tanh_f16x2><<<sms, 1024>>>(iters, sink, cycles); }, 2 * results, sms, cycles), 32);
  report("cvt e4m3x2 (+LOP), pairs", measure([&] { unit_rate<Unit::cvt_e4m3x2><<<sms, 1024>>>(iters, sink, cycles); }, results, sms, cycles), 64);
  report("sigmoid_poly<fast>, scores", measure([&] { unit_rate<Unit::sigmoid_fma><<<sms, 1024>>>(iters / 4, sink, cycles); }, results / 4, sms, cycles), 128.0 / 16);
  std::printf("model column: bench/MODEL-fp8.md's rates (cvt: assumed half the FMA pipe; FMA sigmoid: 16 issue slots a score)\n");
  CUDA_CHECK(cudaFree(sink));
  CUDA_CHECK(cudaFree(cycles));
  return 0;
}
