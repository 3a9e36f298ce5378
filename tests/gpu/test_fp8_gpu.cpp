// The FP8 forward (issue 22) on the GPU against an fp64 reference computed from the same
// dequantized inputs: Q, K and V drawn from N(0, 1), quantized to e4m3 with descale factors per
// (sequence, kv head) or per tensor (non-powers of two), poisoned O, every layout x head dim 64
// and 128 x causal x score bias x GQA, lengths 1, 17, 200, 1000, the tiles' edges, and 4096 and
// 16384 with the default bias (where typical P values reach e4m3's subnormals: bench/MODEL-fp8.md).
// Each case prints its error ([fp8] lines) for bench/RESULTS-fp8.md.
#include "cuda/device.hpp"
#include "cuda/workspace.hpp"
#include "kernels/launch.hpp"
#include "problem/call.hpp"
#include "tests/gpu/forward_problem.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cuda_runtime.h>

namespace sigjit::testing {
namespace {

std::string hopper_unavailable_reason() {
  if (std::string why = gpu_unavailable_reason(); !why.empty()) return why;
  const detail::DeviceInfo dev = detail::current_device();
  if (dev.cc_major != 9 || dev.cc_minor != 0) return fmt::format("FP8 runs on compute capability 9.0 (Hopper); this GPU is {}.{}", dev.cc_major, dev.cc_minor);
  return {};
}

std::vector<CaseSpec> fp8_matrix_cases() {
  std::vector<CaseSpec> cases;
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {64, 128})
      for (bool causal : {false, true})
        for (bool sb : {false, true})
          for (bool gqa : {false, true}) {
            const bool exact = (hd / 64 + causal + sb) % 2 == 0;
            CaseSpec c{layout, hd, DType::fp8_e4m3, causal, gqa ? BiasMode::scalar : BiasMode::log_n, sb, gqa, exact ? SigmoidMode::exact : SigmoidMode::fast};
            c.fp8_per_tensor = causal && !sb;
            if (layout == Layout::dense) {
              c.lens_q = {200, 200};
              c.lens_k = {gqa ? 333 : 200, gqa ? 333 : 200};
              c.strided = gqa;  // Q/O with gaps between heads, K head-major
            } else {
              c.lens_q = {1, 17, 200, 1000, 65, 192};
              c.lens_k = {1, 30, 200, 777, 64, 193};
              c.row_step = 5;
            }
            cases.push_back(c);
          }
  return cases;
}

std::vector<CaseSpec> fp8_long_cases() {
  std::vector<CaseSpec> cases;
  for (int hd : {64, 128})
    for (int len : {4096, 16384}) {
      CaseSpec dense{Layout::dense, hd, DType::fp8_e4m3, false, BiasMode::log_n, false, false, SigmoidMode::fast, {len}, {len}};
      dense.row_step = 97;
      cases.push_back(dense);
    }
  CaseSpec varlen{Layout::varlen, 128, DType::fp8_e4m3, true, BiasMode::log_n, true, true, SigmoidMode::exact, {1, 16384, 300}, {1, 16384, 300}};
  varlen.row_step = 211;
  cases.push_back(varlen);
  return cases;
}

class Fp8Forward : public ::testing::TestWithParam<CaseSpec> {};

TEST_P(Fp8Forward, MatchesFp64ReferenceOfTheDequantizedInputs) {
  if (const std::string why = hopper_unavailable_reason(); !why.empty()) GTEST_SKIP() << "FP8 test skipped: " << why;
  const CaseSpec& spec = GetParam();
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  ForwardProblem problem(spec, rng);
  ASSERT_EQ(kernels::tma_unsuitable(detail::resolve(problem.args())), "") << "an FP8 case must be TMA-describable";
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  for (int run = 0; run < 2; ++run) {  // the second run reuses the stream's V^T workspace
    problem.poison_output();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ASSERT_NO_THROW(sigjit::forward(problem.args(), stream));
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const CaseResult r = problem.check();
    fmt::print("[fp8] {} run={} rel_error={:.3e} max_abs={:.3e} checked={}\n", spec.name(), run, r.rel_error, r.max_abs_error, r.checked);
    EXPECT_GT(r.checked, 0);
    EXPECT_EQ(r.unwritten, 0) << "output elements left unwritten (still poison) or not finite";
    EXPECT_EQ(r.clobbered, 0) << "elements outside the output were written";
    EXPECT_EQ(r.nonzero_padding, 0) << "padded rows must be exactly zero";
    EXPECT_LT(r.rel_error, error_bound(spec));
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

INSTANTIATE_TEST_SUITE_P(Matrix, Fp8Forward, ::testing::ValuesIn(fp8_matrix_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Long, Fp8Forward, ::testing::ValuesIn(fp8_long_cases()), case_name);

// A misaligned FP8 tensor is refused by name before anything is launched (FP8 has no portable
// fallback to take it instead), and the next call still runs.
TEST(Fp8ForwardRefusals, MisalignedTensorsAreRefusedByName) {
  if (const std::string why = hopper_unavailable_reason(); !why.empty()) GTEST_SKIP() << "FP8 test skipped: " << why;
  CaseSpec spec{Layout::dense, 128, DType::fp8_e4m3, false, BiasMode::log_n, false, false, SigmoidMode::fast, {64}, {64}};
  std::mt19937 rng(5);
  ForwardProblem problem(spec, rng);
  AttentionArgs a = problem.args();
  a.k = static_cast<const char*>(a.k) + 8;
  try {
    sigjit::forward(a, nullptr);
    ADD_FAILURE() << "a misaligned FP8 tensor was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("k:", 0), 0u) << e.what();
  }
  problem.poison_output();
  ASSERT_NO_THROW(sigjit::forward(problem.args(), nullptr));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(problem.check().unwritten, 0);
}

// The caller's V^T workspace (ForwardOptions, what the PyTorch binding passes): poisoned with
// e4m3 NaN first, it gives the library workspace's output bit for bit (so the prologue writes
// every byte the kernel reads: in the padded layout it stops at each sequence's last key tile)
// and makes the library allocate nothing; then the same call captured in a CUDA graph (global
// capture mode: no allocation, no sync may happen inside) and replayed gives the same bits again.
void check_caller_workspace(const CaseSpec& spec) {
  std::mt19937 rng(11);
  ForwardProblem problem(spec, rng);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  problem.poison_output();
  ASSERT_NO_THROW(sigjit::forward(problem.args(), stream));  // the library's workspace; loads the kernel
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const CaseResult first = problem.check();
  EXPECT_EQ(first.unwritten, 0);
  EXPECT_EQ(first.nonzero_padding, 0);
  EXPECT_LT(first.rel_error, error_bound(spec));
  const std::vector<std::uint16_t> bits = problem.output_bits();

  const std::size_t need = sigjit::forward_workspace_size(problem.args());
  ASSERT_GT(need, 0u);
  DeviceBuffer workspace(need);
  workspace.fill_byte(0x7F);  // e4m3 NaN
  ForwardOptions options;
  options.workspace = workspace.get();
  options.workspace_bytes = need;
  const long allocations = detail::workspace_allocation_count();
  problem.poison_output();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_NO_THROW(sigjit::forward(problem.args(), stream, options));
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(problem.output_bits() == bits) << "the caller's workspace changed the output";
  EXPECT_EQ(detail::workspace_allocation_count(), allocations) << "a caller's workspace must not make the library allocate";

  AttentionArgs in_graph = problem.args();
  in_graph.validate_lengths = false;  // a capture cannot copy the lengths to the host
  cudaStream_t capture;
  ASSERT_EQ(cudaStreamCreateWithFlags(&capture, cudaStreamNonBlocking), cudaSuccess);
  cudaGraph_t graph = nullptr;
  problem.poison_output();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(capture, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_NO_THROW(sigjit::forward(in_graph, capture, options));
  ASSERT_EQ(cudaStreamEndCapture(capture, &graph), cudaSuccess) << "the forward broke the capture";
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, capture), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(capture), cudaSuccess);
  EXPECT_TRUE(problem.output_bits() == bits) << "the graph's replay differs from the direct call";
  EXPECT_EQ(detail::workspace_allocation_count(), allocations);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  ASSERT_EQ(cudaStreamDestroy(capture), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(Fp8ForwardWorkspace, CallerWorkspaceGivesTheSameBitsAndCapturesInAGraph) {
  if (const std::string why = hopper_unavailable_reason(); !why.empty()) GTEST_SKIP() << "FP8 test skipped: " << why;
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen}) {
    SCOPED_TRACE(static_cast<int>(layout));
    const bool dense = layout == Layout::dense;
    CaseSpec spec{layout,
                  128,
                  DType::fp8_e4m3,
                  true,
                  BiasMode::log_n,
                  true,
                  true,
                  SigmoidMode::fast,
                  dense ? std::vector<int>{300, 300} : std::vector<int>{300, 130, 1},
                  dense ? std::vector<int>{300, 300} : std::vector<int>{300, 130, 1}};
    check_caller_workspace(spec);
  }
}

// ---- ForwardOptions::fp8: bf16 inputs quantized on the fly (common/quantize_fp8.cuh) -----------
// bf16 problems (the fp64 reference sees the bf16 inputs themselves, so the error includes the
// inputs' quantization: the bound is the FP8 kernel's 5 % plus e4m3's RMS rounding of Q, K and V,
// 3.6 % each, which the dot products average only partly), every layout, hd 64 and 128, causal with
// score bias, GQA, ragged lengths and a sequence without queries or keys. Each case runs twice:
// on the library's workspace, then on a caller's filled with 0xFF (e4m3 NaN) bytes, which must give
// the same bits: the call reads no byte of its copies that it did not write (the padded rows' zeros).
constexpr double kFp8OnTheFlyBound = 0.10;

std::vector<CaseSpec> fp8_on_the_fly_cases() {
  std::vector<CaseSpec> cases;
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {64, 128})
      for (bool causal : {false, true}) {
        CaseSpec c{layout, hd, DType::bf16, causal, BiasMode::log_n, causal, !causal, SigmoidMode::fast};
        const bool dense = layout == Layout::dense;
        c.lens_q = dense ? std::vector<int>{200, 200} : std::vector<int>{1, 17, 200, 1000, 0};
        c.lens_k = dense ? std::vector<int>{333, 333} : std::vector<int>{1, 30, 200, 777, 0};
        c.row_step = dense ? 1 : 5;
        c.varlen_tail = layout == Layout::varlen ? 50 : 0;  // rows past cu_seqlens[batch]: zeros in O, e4m3 zeros in the copies
        c.head_scales = true;                               // a factor of another sequence, head or tensor would be off by 2x or more
        cases.push_back(c);
      }
  CaseSpec long_dense{Layout::dense, 128, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast, {4096}, {4096}};
  long_dense.row_step = 97;
  long_dense.head_scales = true;
  cases.push_back(long_dense);
  return cases;
}

class Fp8OnTheFly : public ::testing::TestWithParam<CaseSpec> {};

TEST_P(Fp8OnTheFly, MatchesFp64ReferenceOfTheBf16InputsAndReadsOnlyWhatItWrote) {
  if (const std::string why = hopper_unavailable_reason(); !why.empty()) GTEST_SKIP() << "FP8 test skipped: " << why;
  const CaseSpec& spec = GetParam();
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  ForwardProblem problem(spec, rng);
  ForwardOptions options;
  options.fp8 = true;
  ASSERT_NO_THROW(sigjit::prepare(problem.args(), PrepareOptions{.fp8 = true}));  // loads both kernels, launches nothing
  const std::size_t bytes = sigjit::forward_workspace_size(problem.args(), options);
  DeviceBuffer caller(bytes);
  caller.fill_byte(0xFF);
  std::vector<std::uint16_t> first;
  for (const bool own_workspace : {false, true}) {
    if (own_workspace) options.workspace = caller.get(), options.workspace_bytes = bytes;
    problem.poison_output();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ASSERT_NO_THROW(sigjit::forward(problem.args(), nullptr, options));
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const CaseResult r = problem.check();
    fmt::print("[fp8 on the fly] {} {} rel_error={:.3e} max_abs={:.3e} checked={}\n", spec.name(),
               own_workspace ? "caller-workspace" : "library-workspace", r.rel_error, r.max_abs_error, r.checked);
    EXPECT_GT(r.checked, 0);
    EXPECT_EQ(r.unwritten, 0) << "output elements left unwritten (still poison) or not finite";
    EXPECT_EQ(r.clobbered, 0) << "elements outside the output were written";
    EXPECT_EQ(r.nonzero_padding, 0) << "padded rows must be exactly zero";
    EXPECT_LT(r.rel_error, kFp8OnTheFlyBound);
    if (!own_workspace)
      first = problem.output_bits();
    else
      EXPECT_TRUE(problem.output_bits() == first) << "a NaN-filled caller workspace changed O: the call read bytes it did not write";
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, Fp8OnTheFly, ::testing::ValuesIn(fp8_on_the_fly_cases()), case_name);

}  // namespace
}  // namespace sigjit::testing
