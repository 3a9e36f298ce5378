// The Hopper primitives of templates/sigjit/sm90/primitives.cuh in isolation, on the device
// (CC 9.0 only): tiny NVRTC-compiled kernels load tiles with TMA into 128B-swizzled shared
// memory and run one wgmma chain, compared with a CPU GEMM. They bisect the sm90 family: if
//   SS    fails: K-major descriptors, TMA maps/swizzle, mbarrier tx counts or the accumulator layout;
//   RS_V  fails (SS passing): the N-major (transposed) V descriptor (LBO/SBO) or the A fragment;
//   CHAIN fails (both passing): the accumulator -> A-fragment conversion used for P;
//   DQ    fails (RS passing): the sm90 backward's dS^T store (swizzle) or its transposed-A
//         descriptor (sm90/bwd.cuh store_ds / issue_dq).
//   QUAD  fails (alone): the accumulator rows' quad transpose or its predicated 16-byte stores
//         (common/tile_primitives.cuh transpose_quad_words / store_16_if, sm90/bwd.cuh
//         store_grad_rows; the forward's O stores use the same two).
#include "cuda/device.hpp"
#include "cuda/driver_api.hpp"
#include "tests/common/gpu_env.hpp"
#include "tests/common/hopper_test_source.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace sigjit::testing {
namespace {


using Shape = HopperShape;

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
  const HopperTestBuild build = compile_hopper_test_kernels(s);
  EXPECT_TRUE(build.ok) << build.log;
  if (!build.ok) return nullptr;
  CUmodule module = nullptr;
  EXPECT_EQ(detail::driver().cuModuleLoadData(&module, build.cubin.data()), CUDA_SUCCESS);
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

std::vector<float> run(CUmodule module, const char* entry, const Maps& maps, const void* extra, size_t out_elems, int smem, unsigned threads = 128) {
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
  const CUresult st = detail::driver().cuLaunchKernel(f, 1, 1, 1, threads, 1, 1, smem, nullptr, extra ? args3 : args2, nullptr);
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

TEST_P(HopperPrimitives, BackwardDqFromStagedTransposedDsMatchesCpu) {
  SIGJIT_REQUIRE_HOPPER();
  const Shape s = GetParam();
  if (s.dv > 128) GTEST_SKIP() << "the sm90 backward supports head dim 64 and 128";
  const int keys = 128, queries = s.dv == 64 ? 128 : 64;  // dq_test's BQ: the default configs' query steps
  std::mt19937 rng(4);
  const Matrix ds_t = random_matrix(keys, queries, rng), k = random_matrix(keys, s.dv, rng);
  DeviceBuffer ds_f32(static_cast<size_t>(keys) * queries * 4);
  ds_f32.upload(ds_t.host.data(), static_cast<size_t>(keys) * queries * 4);
  CUmodule module = compile_module(s);
  ASSERT_NE(module, nullptr);
  const Maps maps{matrix_map(k.dev.get(), keys, s.dv), matrix_map(k.dev.get(), keys, s.dv), matrix_map(k.dev.get(), keys, s.dv)};
  // BwdSm90Config<DV, BQ, 2, 2, ...>::kSmemBytes (K, V, 2 x (Q, dO), 2 dS^T tiles, 7 barriers, slack).
  const int smem = 2 * s.dv * (2 * keys + 2 * 2 * queries) + 2 * 2 * keys * queries + 8 * 7 + 1024;
  const std::vector<float> got = run(module, "dq_test", maps, ds_f32.get(), static_cast<size_t>(queries) * s.dv, smem, 256);
  std::vector<float> ds(static_cast<size_t>(queries) * keys);  // dS [queries x keys]
  for (int q = 0; q < queries; ++q)
    for (int key = 0; key < keys; ++key) ds[q * keys + key] = ds_t.host[key * queries + q];
  const double err = relative_error(got, gemm_ab(ds, queries, keys, k));
  fmt::print("DQ {}x{}x{} (dS^T staged, transposed A, two warpgroups): max error / max |ref| = {:.3g}\n", queries, s.dv, keys, err);
  EXPECT_LT(err, 1e-5) << "dS^T swizzled store, transposed-A descriptor or the dQ split (sm90/bwd.cuh store_ds / issue_dq)";
  detail::driver().cuModuleUnload(module);
}

TEST_P(HopperPrimitives, QuadTransposedGradientStoresMatchTheAccumulatorRows) {
  SIGJIT_REQUIRE_HOPPER();
  const Shape s = GetParam();
  if (s.dv > 128) GTEST_SKIP() << "the sm90 backward supports head dim 64 and 128";
  const int rows = 64;
  std::mt19937 rng(5);
  const Matrix acc = random_matrix(rows, s.dv, rng);  // bf16-representable, so x0.5 is exact
  DeviceBuffer acc_f32(static_cast<size_t>(rows) * s.dv * 4);
  acc_f32.upload(acc.host.data(), static_cast<size_t>(rows) * s.dv * 4);
  CUmodule module = compile_module(s);
  ASSERT_NE(module, nullptr);
  const Maps maps{};
  // run() poisons every byte with 0xFF: a bf16 0xFFFF (NaN) is what a row never written keeps.
  const std::vector<float> got_f = run(module, "grad_store_test", maps, acc_f32.get(), static_cast<size_t>(rows) * s.dv / 2, 0);
  std::vector<std::uint16_t> got(static_cast<size_t>(rows) * s.dv);
  std::memcpy(got.data(), got_f.data(), got.size() * 2);
  int wrong = 0;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < s.dv; ++c) {
      const std::uint16_t want = r < kGradStoreLenK ? float_to_bf16(0.5f * acc.host[r * s.dv + c]) : r < kGradStoreClearRows ? 0 : 0xFFFF;
      if (got[r * s.dv + c] != want && wrong++ < 8)
        ADD_FAILURE() << fmt::format("row {} col {}: got 0x{:04x}, want 0x{:04x}", r, c, got[r * s.dv + c], want);
    }
  fmt::print("QUAD 64x{} (store_grad_rows, {} value rows, zeros to {}): {} of {} elements wrong\n", s.dv, kGradStoreLenK,
             kGradStoreClearRows, wrong, rows * s.dv);
  EXPECT_EQ(wrong, 0) << "the quad transpose (transpose_quad_words) or the predicated 16-byte stores (store_16_if)";
  detail::driver().cuModuleUnload(module);
}

std::string shape_name(const ::testing::TestParamInfo<Shape>& info) {
  return fmt::format("kd{}_n{}_dv{}", info.param.kd, info.param.ns, info.param.dv);
}

INSTANTIATE_TEST_SUITE_P(Shapes, HopperPrimitives,
                         ::testing::ValuesIn(hopper_test_shapes()),
                         shape_name);

}  // namespace
}  // namespace sigjit::testing
