// The Hopper primitives of templates/sigjit/hopper_primitives.cuh in isolation, on the device
// (CC 9.0 only): tiny NVRTC-compiled kernels load tiles with TMA into 128B-swizzled shared
// memory and run one wgmma chain, compared with a CPU GEMM. They bisect the sm90 family: if
//   SS    fails: K-major descriptors, TMA maps/swizzle, mbarrier tx counts or the accumulator layout;
//   RS_V  fails (SS passing): the N-major (transposed) V descriptor (LBO/SBO) or the A fragment;
//   CHAIN fails (both passing): the accumulator -> A-fragment conversion used for P.
#include "compiler/templates.hpp"
#include "runtime/device.hpp"
#include "runtime/driver_api.hpp"
#include "tests/common/gpu_env.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nvrtc.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace sigjit::testing {
namespace {

// Three entry points sharing one shape: M = 64 rows (one warpgroup), K-major A [64 x KD] and
// B [N x KD] (SS), P [64 x KEYS] in registers times V [KEYS x DV] (RS, V row-major = N-major B).
const char* kSource = R"(
#include "sigjit/hopper_primitives.cuh"
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

// S = A B^T, A [64 x KD], B [NS x KD].
template <int NS>
__device__ __forceinline__ void ss_chain(float (&d)[NS / 2], u32 a_s, u32 b_s) {
  for (int i = 0; i < NS / 2; ++i) d[i] = 0.0f;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < KD / 16; ++kk) {
    const int block = kk / 4, k = (kk % 4) * 16;
    Wgmma<NS>::template ss<true, 0>(d, kmajor_descriptor(a_s + block * 64 * 128, 0, k), kmajor_descriptor(b_s + block * NS * 128, 0, k), 1);
  }
  wgmma_commit();
  wgmma_wait<0>();
  pin_registers(d);
}

template <int KEYS>
__device__ __forceinline__ void rs_chain(float (&o)[DV / 2], const u32 (&a)[KEYS / 16][4], u32 v_s) {
  for (int i = 0; i < DV / 2; ++i) o[i] = 0.0f;
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < KEYS / 16; ++kk) Wgmma<DV>::rs<true, 1>(o, a[kk], mnmajor_descriptor(v_s + 0, kk * 16, KEYS * 128), 1);
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
)";

struct Shape {
  int kd;    // K of the SS GEMM (head dim)
  int ns;    // N of the SS GEMM (= keys of the RS GEMM)
  int dv;    // N of the RS GEMM (head dim of V)
};

std::string require_hopper() {
  if (std::string why = gpu_unavailable_reason(); !why.empty()) return "no GPU: " + why;
  const detail::DeviceInfo dev = detail::current_device();
  if (dev.cc_major != 9 || dev.cc_minor != 0) return fmt::format("needs compute capability 9.0 (sm_90a), this GPU is {}.{}", dev.cc_major, dev.cc_minor);
  return {};
}

#define SIGJIT_REQUIRE_HOPPER()                                                         \
  do {                                                                                  \
    const std::string why_ = require_hopper();                                          \
    if (!why_.empty()) GTEST_SKIP() << "Hopper primitive test skipped: " << why_;       \
  } while (0)

CUmodule compile_module(const Shape& s) {
  const std::vector<TemplateFile> files = template_files();
  std::vector<const char*> texts, names;
  for (const auto& f : files) {
    texts.push_back(f.text.c_str());
    names.push_back(f.include_name.c_str());
  }
  nvrtcProgram prog;
  EXPECT_EQ(nvrtcCreateProgram(&prog, kSource, "hopper_primitives_test.cu", static_cast<int>(files.size()), texts.data(), names.data()), NVRTC_SUCCESS);
  const std::string kd = fmt::format("-DKD={}", s.kd), ns = fmt::format("-DNS={}", s.ns), dv = fmt::format("-DDV={}", s.dv),
                    keys = fmt::format("-DKEYS={}", s.ns);
  const char* opts[] = {"--gpu-architecture=sm_90a", "--std=c++17", kd.c_str(), ns.c_str(), dv.c_str(), keys.c_str()};
  const nvrtcResult st = nvrtcCompileProgram(prog, 6, opts);
  size_t size = 0;
  nvrtcGetProgramLogSize(prog, &size);
  std::string log(size, '\0');
  nvrtcGetProgramLog(prog, log.data());
  EXPECT_EQ(st, NVRTC_SUCCESS) << log;
  nvrtcGetCUBINSize(prog, &size);
  std::vector<char> cubin(size);
  nvrtcGetCUBIN(prog, cubin.data());
  nvrtcDestroyProgram(&prog);
  CUmodule module = nullptr;
  EXPECT_EQ(detail::driver().cuModuleLoadData(&module, cubin.data()), CUDA_SUCCESS);
  return module;
}

// A row-major [rows x cols] bf16 matrix as a 4-D tensor map {cols, rows, 1, 1}, box {64, rows}.
CUtensorMap matrix_map(const void* base, int rows, int cols) {
  CUtensorMap map{};
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows), 1, 1};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(cols) * 2, static_cast<cuuint64_t>(cols) * 2 * rows, static_cast<cuuint64_t>(cols) * 2 * rows};
  const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(rows), 1, 1};
  const cuuint32_t one[4] = {1, 1, 1, 1};
  const CUresult st = detail::driver().cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<void*>(base), dims, strides, box, one,
                                                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                                              CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  EXPECT_EQ(st, CUDA_SUCCESS) << "cuTensorMapEncodeTiled";
  return map;
}

struct alignas(64) Maps {
  CUtensorMap a, b, c;
};

struct Matrix {
  int rows, cols;
  std::vector<float> host;  // bf16-representable values
  DeviceBuffer dev;
};

Matrix random_matrix(int rows, int cols, std::mt19937& rng) {
  Matrix m{rows, cols, std::vector<float>(static_cast<size_t>(rows) * cols), DeviceBuffer(static_cast<size_t>(rows) * cols * 2)};
  std::normal_distribution<float> dist;
  std::vector<std::uint16_t> bits(m.host.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    bits[i] = float_to_bf16(dist(rng));
    m.host[i] = bf16_to_float(bits[i]);
  }
  m.dev.upload(bits.data(), bits.size() * 2);
  return m;
}

// Max |got - want| / (max |want|): one relative measure per output.
double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return err / scale;
}

std::vector<double> gemm_abt(const Matrix& a, const Matrix& b) {  // [a.rows x b.rows]
  std::vector<double> c(static_cast<size_t>(a.rows) * b.rows);
  for (int i = 0; i < a.rows; ++i)
    for (int j = 0; j < b.rows; ++j) {
      double acc = 0;
      for (int k = 0; k < a.cols; ++k) acc += double(a.host[i * a.cols + k]) * b.host[j * b.cols + k];
      c[i * b.rows + j] = acc;
    }
  return c;
}

std::vector<double> gemm_ab(const std::vector<float>& p, int rows, int keys, const Matrix& v) {  // [rows x v.cols]
  std::vector<double> o(static_cast<size_t>(rows) * v.cols);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < v.cols; ++j) {
      double acc = 0;
      for (int k = 0; k < keys; ++k) acc += double(p[i * keys + k]) * v.host[k * v.cols + j];
      o[i * v.cols + j] = acc;
    }
  return o;
}

std::vector<float> run(CUmodule module, const char* entry, const Maps& maps, const void* extra, size_t out_elems, int smem) {
  CUfunction f = nullptr;
  EXPECT_EQ(detail::driver().cuModuleGetFunction(&f, module, entry), CUDA_SUCCESS) << entry;
  EXPECT_EQ(detail::driver().cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem), CUDA_SUCCESS);
  DeviceBuffer out(out_elems * 4);
  out.fill_byte(0xFF);
  Maps m = maps;
  void* out_ptr = out.get();
  const void* extra_ptr = extra;
  void* args2[] = {&m, &out_ptr};
  void* args3[] = {&m, &extra_ptr, &out_ptr};
  const CUresult st = detail::driver().cuLaunchKernel(f, 1, 1, 1, 128, 1, 1, smem, nullptr, extra ? args3 : args2, nullptr);
  EXPECT_EQ(st, CUDA_SUCCESS) << entry;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << entry << ": " << cudaGetErrorString(cudaGetLastError());
  std::vector<float> host(out_elems);
  out.download(host.data(), out_elems * 4);
  return host;
}

class HopperPrimitives : public ::testing::TestWithParam<Shape> {};

TEST_P(HopperPrimitives, SsGemmOfTmaSwizzledTilesMatchesCpu) {
  SIGJIT_REQUIRE_HOPPER();
  const Shape s = GetParam();
  std::mt19937 rng(1);
  const Matrix a = random_matrix(64, s.kd, rng), b = random_matrix(s.ns, s.kd, rng);
  CUmodule module = compile_module(s);
  ASSERT_NE(module, nullptr);
  const Maps maps{matrix_map(a.dev.get(), 64, s.kd), matrix_map(b.dev.get(), s.ns, s.kd), matrix_map(b.dev.get(), s.ns, s.kd)};
  const std::vector<float> got = run(module, "ss_test", maps, nullptr, 64 * s.ns, (64 + s.ns) * s.kd * 2 + 2048);
  const double err = relative_error(got, gemm_abt(a, b));
  fmt::print("SS 64x{}x{}: max error / max |ref| = {:.3g}\n", s.ns, s.kd, err);
  EXPECT_LT(err, 1e-5) << "K-major descriptors, TMA swizzle or accumulator layout";
  detail::driver().cuModuleUnload(module);
}

TEST_P(HopperPrimitives, RsGemmWithTransposedVMatchesCpu) {
  SIGJIT_REQUIRE_HOPPER();
  const Shape s = GetParam();
  std::mt19937 rng(2);
  const Matrix p = random_matrix(64, s.ns, rng), v = random_matrix(s.ns, s.dv, rng);
  CUmodule module = compile_module(s);
  ASSERT_NE(module, nullptr);
  const Maps maps{matrix_map(v.dev.get(), s.ns, s.dv), matrix_map(v.dev.get(), s.ns, s.dv), matrix_map(v.dev.get(), s.ns, s.dv)};
  const std::vector<float> got = run(module, "rs_test", maps, p.dev.get(), 64 * s.dv, s.ns * s.dv * 2 + 2048);
  const double err = relative_error(got, gemm_ab(p.host, 64, s.ns, v));
  fmt::print("RS 64x{}x{} (V N-major): max error / max |ref| = {:.3g}\n", s.dv, s.ns, err);
  EXPECT_LT(err, 1e-5) << "N-major V descriptor (LBO/SBO) or A-fragment layout";
  detail::driver().cuModuleUnload(module);
}

TEST_P(HopperPrimitives, ScoresToRegisterPToPvMatchesCpu) {
  SIGJIT_REQUIRE_HOPPER();
  const Shape s = GetParam();
  std::mt19937 rng(3);
  const Matrix a = random_matrix(64, s.kd, rng), b = random_matrix(s.ns, s.kd, rng), v = random_matrix(s.ns, s.dv, rng);
  CUmodule module = compile_module(s);
  ASSERT_NE(module, nullptr);
  const Maps maps{matrix_map(a.dev.get(), 64, s.kd), matrix_map(b.dev.get(), s.ns, s.kd), matrix_map(v.dev.get(), s.ns, s.dv)};
  const std::vector<float> got = run(module, "chain_test", maps, nullptr, 64 * s.dv, (64 + s.ns) * s.kd * 2 + s.ns * s.dv * 2 + 2048);
  const std::vector<double> scores = gemm_abt(a, b);
  std::vector<float> p(scores.size());
  for (size_t i = 0; i < p.size(); ++i) p[i] = bf16_to_float(float_to_bf16(static_cast<float>(scores[i])));
  const double err = relative_error(got, gemm_ab(p, 64, s.ns, v));
  fmt::print("chain S(64x{}x{}) -> P -> PV(x{}): max error / max |ref| = {:.3g}\n", s.ns, s.kd, s.dv, err);
  // S rounds to bf16 on both sides, but fp32 vs fp64 sums can round a few values differently.
  EXPECT_LT(err, 1e-2) << "accumulator -> A fragment conversion";
  detail::driver().cuModuleUnload(module);
}

std::string shape_name(const ::testing::TestParamInfo<Shape>& info) {
  return fmt::format("kd{}_n{}_dv{}", info.param.kd, info.param.ns, info.param.dv);
}

INSTANTIATE_TEST_SUITE_P(Shapes, HopperPrimitives,
                         ::testing::Values(Shape{64, 64, 64}, Shape{128, 128, 128}, Shape{128, 64, 256}, Shape{256, 64, 128}, Shape{64, 128, 64}),
                         shape_name);

}  // namespace
}  // namespace sigjit::testing
