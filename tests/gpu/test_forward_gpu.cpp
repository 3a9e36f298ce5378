// Forward correctness on the GPU against the fp64 reference: every layout x head dim x dtype x
// causal x bias mode x score bias x GQA (exact sigmoid), the fast sigmoid per layout/head dim/
// dtype/causal, ragged lengths including 1, 17, 200, 1000 and 16384, poisoned outputs.
#include "problem/spec.hpp"
#include "kernels/launch.hpp"
#include "kernels/registry.hpp"
#include "kernels/sm90_fwd.hpp"
#include "runtime/attention.hpp"
#include "cuda/device.hpp"
#include "cuda/driver_api.hpp"
#include "jit/kernel_table.hpp"
#include "tests/gpu/forward_problem.hpp"
#include "tests/gpu/precompile.hpp"

#include <sigjit/sigjit.h>

#include <fmt/format.h>
#include <gtest/gtest.h>


namespace sigjit::testing {
namespace {

std::vector<CaseSpec> matrix_cases() {
  std::vector<CaseSpec> cases;
  for_each_exact_case([&](CaseSpec c) {
    if (c.layout == Layout::dense) {
      const bool square = (c.head_dim + c.score_bias + c.gqa) % 2 == 0;
      c.lens_q = {200, 200};
      c.lens_k = {square ? 200 : 333, square ? 200 : 333};
      c.strided = c.gqa;
    } else {
      c.lens_q = {1, 17, 200, 1000};
      c.lens_k = {1, 30, 200, 777};
      c.row_step = 5;
    }
    cases.push_back(c);
  });
  // Fast sigmoid: every layout x head dim x dtype x causal.
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {32, 64, 96, 128, 256})
      for (DType dt : {DType::bf16, DType::fp16})
        for (bool causal : {false, true}) {
          CaseSpec c{layout, hd, dt, causal, BiasMode::log_n, false, false, SigmoidMode::fast};
          c.lens_q = layout == Layout::dense ? std::vector<int>{300} : std::vector<int>{17, 1000, 1};
          c.lens_k = c.lens_q;
          c.row_step = 5;
          cases.push_back(c);
        }
  return cases;
}

std::vector<CaseSpec> long_cases() {
  std::vector<CaseSpec> cases;
  for (int hd : {64, 128}) {
    CaseSpec dense{Layout::dense, hd, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast, {16384}, {16384}};
    CaseSpec padded{Layout::padded, hd, DType::bf16, true, BiasMode::log_n, true, true, SigmoidMode::exact, {16384, 5000, 1}, {16384, 4000, 1}};
    CaseSpec varlen{Layout::varlen, hd, DType::fp16, true, BiasMode::log_n, false, true, SigmoidMode::fast, {1, 16384, 17}, {1, 16384, 17}};
    for (CaseSpec* c : {&dense, &padded, &varlen}) {
      c->row_step = 211;
      cases.push_back(*c);
    }
  }
  return cases;
}

bool sm90_head_dim(int hd) { return hd == 64 || hd == 128 || hd == 256; }

// Ragged edges at and around the tiles' boundaries and half-boundaries: 64/65 and 192/193 for
// 128-key tiles, 48/49 and 144/145 for 96-key tiles (the score-bias default at hd 64), 32/33 and
// 160/161 for 64-key tiles (hd 256), 192/193 for 192-row query tiles; query lengths differ from
// key lengths so that causal edges move too.
std::vector<CaseSpec> edge_cases() {
  std::vector<CaseSpec> cases;
  for (int hd : {64, 128, 256})
    for (bool sb : {false, true})
      for (bool causal : {false, true}) {
        CaseSpec c{sb ? Layout::padded : Layout::varlen, hd, DType::bf16, causal, BiasMode::log_n, sb, false, SigmoidMode::exact};
        c.lens_q = {65, 192, 193, 48, 145, 33, 161, 1, 300};
        c.lens_k = {64, 193, 192, 49, 144, 32, 160, 97, 385};
        c.row_step = 3;
        cases.push_back(c);
      }
  return cases;
}

// Compiles every kernel the cases need on all cores before the (serial) tests run; with sm90,
// the sm90 family's default configs of the cases it supports.
void precompile(const std::vector<CaseSpec>& cases, bool sm90 = false) {
  const detail::DeviceInfo dev = detail::current_device();
  std::vector<std::pair<KernelSpec, TileConfig>> work;
  std::mt19937 rng(1);
  for (const auto& c : cases) {
    if (sm90 && !sm90_head_dim(c.head_dim)) continue;
    const KernelSpec spec = case_kernel_spec(c, dev, rng);
    work.emplace_back(spec, sm90 ? default_sm90_config(spec) : default_config(spec));
  }
  precompile_work(work);
}

class ForwardMatrix : public ::testing::TestWithParam<CaseSpec> {
 public:
  static void SetUpTestSuite() {
    if (!gpu_unavailable_reason().empty()) return;
    auto all = matrix_cases();
    auto more = long_cases();
    all.insert(all.end(), more.begin(), more.end());
    precompile(cases_to_run(all, "ForwardMatrix"));
  }
};

void run_matrix_case(const CaseSpec& spec);

TEST_P(ForwardMatrix, MatchesFp64Reference) {
  SIGJIT_REQUIRE_GPU();
  run_matrix_case(GetParam());
}

void run_matrix_case(const CaseSpec& spec) {
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  ForwardProblem problem(spec, rng);
  cudaStream_t stream;
  SIGJIT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  problem.poison_output();
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  ASSERT_NO_THROW(sigjit::forward(problem.args(), stream));
  SIGJIT_CUDA_OK(cudaGetLastError());
  SIGJIT_CUDA_OK(cudaStreamSynchronize(stream));
  SIGJIT_CUDA_OK(cudaStreamDestroy(stream));
  const CaseResult r = problem.check();
  ::testing::Test::RecordProperty("rel_error", fmt::format("{:.3g}", r.rel_error));
  fmt::print("[case] {} rel_error={:.3e} max_abs={:.3e} checked={}\n", spec.name(), r.rel_error, r.max_abs_error, r.checked);
  EXPECT_GT(r.checked, 0);
  EXPECT_EQ(r.unwritten, 0) << "output elements left unwritten (still poison)";
  EXPECT_EQ(r.clobbered, 0) << "elements outside the output were written";
  EXPECT_EQ(r.nonzero_padding, 0) << "padded rows must be exactly zero";
  EXPECT_LT(r.rel_error, error_bound(spec));
}


INSTANTIATE_TEST_SUITE_P(Matrix, ForwardMatrix, ::testing::ValuesIn(matrix_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Long, ForwardMatrix, ::testing::ValuesIn(long_cases()), case_name);

// ---- the same matrix on the sm90 (wgmma) family, forced through SIGJIT_FORCE_TILE -------------
// Runs on compute capability 9.0 only. Cases at head dims the family does not support (32, 96)
// are skipped with a message; every other case must really take the sm90 path (its tensors
// must be TMA-describable, else forward() would silently fall back to sm80).

std::string sm90_unavailable_reason() {
  if (std::string why = gpu_unavailable_reason(); !why.empty()) return why;
  const detail::DeviceInfo dev = detail::current_device();
  if (dev.cc_major != 9 || dev.cc_minor != 0) return fmt::format("the sm90 family needs compute capability 9.0, this GPU is {}.{}", dev.cc_major, dev.cc_minor);
  return {};
}

class ScopedForceTile {
 public:
  explicit ScopedForceTile(const std::string& tile) { setenv("SIGJIT_FORCE_TILE", tile.c_str(), 1); }
  ~ScopedForceTile() { unsetenv("SIGJIT_FORCE_TILE"); }
};

class ForwardMatrixSm90 : public ::testing::TestWithParam<CaseSpec> {
 public:
  static void SetUpTestSuite() {
    if (!sm90_unavailable_reason().empty()) return;
    auto all = matrix_cases();
    for (auto more : {long_cases(), edge_cases()}) all.insert(all.end(), more.begin(), more.end());
    precompile(cases_to_run(all, "ForwardMatrixSm90"), true);
  }
};

TEST_P(ForwardMatrixSm90, MatchesFp64Reference) {
  if (const std::string why = sm90_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 family test skipped: " << why;
  const CaseSpec& spec = GetParam();
  if (!sm90_head_dim(spec.head_dim)) GTEST_SKIP() << "the sm90 family does not support head dim " << spec.head_dim << " (the sm80 family serves it)";
  std::mt19937 rng(7);
  const detail::DeviceInfo dev = detail::current_device();
  const KernelSpec ks = case_kernel_spec(spec, dev, rng);
  const TileConfig config = default_sm90_config(ks);
  {
    ForwardProblem p(spec, rng);
    ASSERT_EQ(kernels::tma_unsuitable(detail::resolve(p.args())), "") << "this case would fall back to the sm80 family";
  }
  fmt::print("[sm90] {} with SIGJIT_FORCE_TILE={}\n", spec.name(), config.describe());
  const ScopedForceTile force(config.describe());
  run_matrix_case(spec);
}

INSTANTIATE_TEST_SUITE_P(Matrix, ForwardMatrixSm90, ::testing::ValuesIn(matrix_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Long, ForwardMatrixSm90, ::testing::ValuesIn(long_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Edges, ForwardMatrixSm90, ::testing::ValuesIn(edge_cases()), case_name);

// ---- issue 6's tunables on the sm90 family: ping-pong, the FMA-sigmoid fraction, persistence ---
// Each variant is the case's default sm90 config with the tunables changed, forced like above:
//   pp: ping-pong, overlap on; ppno: ping-pong, overlap off; f2: half the sigmoids on FMA;
//   ppf1: ping-pong + a quarter on FMA; f4: every sigmoid on FMA (the polynomial alone decides
//   the accuracy); p: persistent (_p), overlap on; ppp: persistent + ping-pong; pno: persistent,
//   overlap off; w192: 192-key tiles (hd 64 only); c3 / c3p: three consumer warpgroups
//   (BLOCK_M 192), persistent or not. Every layout x hd 64/128 x causal x (score bias + GQA) x
//   sigmoid mode in bf16, fp16 at both head dims, and long sequences (many turns of the
//   ping-pong barriers; for _p many tiles per CTA, so the mbarrier phases run on across tiles, and ragged batches with
//   lengths 1 and 16384 whose wholly padded tiles are skipped or zeroed). A ping-pong or
//   persistent-phase ordering bug would hang, not fail: run these under `timeout`.

struct TunableCase {
  CaseSpec spec;
  std::string variant;
};

inline void PrintTo(const TunableCase& c, std::ostream* os) { *os << c.spec.name() << " " << c.variant; }

std::string tunable_case_name(const ::testing::TestParamInfo<TunableCase>& info) {
  std::string n = info.param.variant + "_" + info.param.spec.name();
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

// Variants other than c3/c3p start from a two-warpgroup tile (hd 64's default has three, and
// ping-pong needs two).
TileConfig apply_variant(TileConfig c, const std::string& variant, int head_dim) {
  if (c.get<sigjit::Sm90FwdTile>().consumers != 2 && variant != "c3" && variant != "c3p") c = TileConfig(sigjit::Sm90FwdTile{128, 2, 2, true});
  if (variant == "w192") {  // hd 64's 192-key tiles on the two-warpgroup tile
    c.get<sigjit::Sm90FwdTile>().block_n = 192;
    return c;
  }
  if (variant == "c3" || variant == "c3p") {  // BLOCK_M 192: 160 registers per consumer thread
    const bool persistent = variant == "c3p";   // 96 keys at hd 64: 128 spill in varlen when persistent
    return TileConfig(sigjit::Sm90FwdTile{head_dim == 128 ? 64 : persistent ? 96 : 128, 3, c.get<sigjit::Sm90FwdTile>().stages, true, false, 0, persistent});
  }
  c.get<sigjit::Sm90FwdTile>().overlap = variant != "ppno" && variant != "pno";
  c.get<sigjit::Sm90FwdTile>().pingpong = variant == "pp" || variant == "ppno" || variant == "ppf1" || variant == "ppp";
  c.get<sigjit::Sm90FwdTile>().fma_quarters = variant == "f2" ? 2 : variant == "ppf1" ? 1 : variant == "f4" ? 4 : 0;
  c.get<sigjit::Sm90FwdTile>().persistent = variant == "p" || variant == "ppp" || variant == "pno";
  return c;
}

const char* const kTunableVariants[] = {"pp", "ppno", "f2", "ppf1", "f4", "p", "ppp", "pno", "w192", "c3", "c3p"};

// 192-key tiles exist at hd 64 only (at hd 128 the O, S and P registers would not fit).
bool variant_supports(const std::string& variant, int head_dim) { return variant != "w192" || head_dim == 64; }

std::vector<TunableCase> tunable_cases() {
  std::vector<TunableCase> out;
  for (const char* v : kTunableVariants) {
    for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
      for (int hd : {64, 128})
        for (bool causal : {false, true})
          for (bool extras : {false, true})  // score bias + GQA (+ strided when dense)
            for (SigmoidMode sig : {SigmoidMode::exact, SigmoidMode::fast}) {
              if (!variant_supports(v, hd)) continue;
              CaseSpec c{layout, hd, DType::bf16, causal, BiasMode::log_n, extras, extras, sig};
              if (layout == Layout::dense) {
                c.lens_q = {300, 300};
                c.lens_k = {causal ? 300 : 333, causal ? 300 : 333};
                c.strided = extras;
              } else {
                c.lens_q = {1, 17, 200, 1000};
                c.lens_k = {1, 30, 200, 777};
                c.row_step = 5;
              }
              out.push_back({c, v});
            }
    for (int hd : {64, 128}) {
      if (!variant_supports(v, hd)) continue;
      CaseSpec fp16{Layout::varlen, hd, DType::fp16, true, BiasMode::scalar, true, false, SigmoidMode::exact, {17, 1000, 1}, {30, 777, 1}};
      fp16.row_step = 5;
      out.push_back({fp16, v});
    }
  }
  // Long: thousands of turns of the ping-pong barriers per CTA row of tiles.
  for (int hd : {64, 128}) {
    CaseSpec dense{Layout::dense, hd, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast, {16384}, {16384}};
    CaseSpec padded{Layout::padded, hd, DType::bf16, true, BiasMode::log_n, true, true, SigmoidMode::exact, {16384, 5000, 1}, {16384, 4000, 1}};
    dense.row_step = padded.row_step = 211;
    for (const char* v : {"pp", "ppf1", "p", "ppp", "w192", "c3"}) {
      if (!variant_supports(v, hd)) continue;
      out.push_back({dense, v});
      out.push_back({padded, v});
    }
    // Persistent on ragged varlen batches: a 16384-row sequence between length-1 ones (the
    // sequence-major tile cursor walks past empty and one-tile sequences), causal.
    CaseSpec ragged{Layout::varlen, hd, DType::bf16, true, BiasMode::log_n, true, true, SigmoidMode::exact, {1, 16384, 1, 300, 64},
                    {1, 16384, 7, 2000, 64}};
    ragged.row_step = 97;
    for (const char* v : {"p", "ppp", "pno", "c3p"}) out.push_back({ragged, v});
  }
  return out;
}

class ForwardSm90Tunables : public ::testing::TestWithParam<TunableCase> {
 public:
  static void SetUpTestSuite() {
    if (!sm90_unavailable_reason().empty()) return;
    const detail::DeviceInfo dev = detail::current_device();
    std::vector<std::pair<KernelSpec, TileConfig>> work;
    std::mt19937 rng(1);
    for (const TunableCase& c : tunable_cases()) {
      const KernelSpec spec = case_kernel_spec(c.spec, dev, rng);
      work.emplace_back(spec, apply_variant(default_sm90_config(spec), c.variant, spec.head_dim));
    }
    precompile_work(work);
  }
};

TEST_P(ForwardSm90Tunables, MatchesFp64Reference) {
  if (const std::string why = sm90_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 family test skipped: " << why;
  const TunableCase& c = GetParam();
  std::mt19937 rng(7);
  const detail::DeviceInfo dev = detail::current_device();
  const KernelSpec ks = case_kernel_spec(c.spec, dev, rng);
  const TileConfig config = apply_variant(default_sm90_config(ks), c.variant, ks.head_dim);
  ASSERT_EQ(check_config(ks, config), "") << config.describe();
  {
    ForwardProblem p(c.spec, rng);
    ASSERT_EQ(kernels::tma_unsuitable(detail::resolve(p.args())), "") << "this case would fall back to the sm80 family";
  }
  fmt::print("[sm90 tunables] {} with SIGJIT_FORCE_TILE={}\n", c.spec.name(), config.describe());
  const ScopedForceTile force(config.describe());
  run_matrix_case(c.spec);
}

INSTANTIATE_TEST_SUITE_P(Variants, ForwardSm90Tunables, ::testing::ValuesIn(tunable_cases()), tunable_case_name);

// ---- top-left causal alignment (CausalAlign::top_left) on both families ----------------------
// top_left_cases() (forward_problem.hpp) forced through each family: "sm80", the portable
// family's default config (any GPU); "sm90", the sm90 default; "p", "ppp", "c3p": persistent
// sm90 variants (the causal tile order of sm90/tile_schedule.h with the top-left key bounds).
// The sm90 ones run on compute capability 9.0 only. Plus long ragged varlen batches (many tiles
// per persistent CTA, a sequence of 4096 queries over 2000 keys and one of 300 over 4096).

std::vector<TunableCase> top_left_forward_cases() {
  std::vector<TunableCase> out;
  for (const char* v : {"sm80", "sm90", "p", "ppp", "c3p"})
    for (const CaseSpec& c : top_left_cases()) out.push_back({c, v});
  for (int hd : {64, 128}) {
    CaseSpec ragged{Layout::varlen,    hd, DType::bf16, true, BiasMode::log_n, true, true, SigmoidMode::exact, {1, 4096, 300, 64},
                    {7, 2000, 4096, 1}};
    ragged.causal_align = CausalAlign::top_left;
    ragged.row_step = 97;
    for (const char* v : {"sm80", "sm90", "p", "c3p"}) out.push_back({ragged, v});
  }
  return out;
}

// The config a top-left case runs with (see top_left_forward_cases).
TileConfig top_left_config(const KernelSpec& ks, const std::string& variant) {
  if (variant == "sm80") return portable_config(ks);
  if (variant == "sm90") return default_sm90_config(ks);
  return apply_variant(default_sm90_config(ks), variant, ks.head_dim);
}

class ForwardTopLeft : public ::testing::TestWithParam<TunableCase> {
 public:
  static void SetUpTestSuite() {
    if (!gpu_unavailable_reason().empty()) return;
    const bool sm90 = sm90_unavailable_reason().empty();
    const detail::DeviceInfo dev = detail::current_device();
    std::vector<std::pair<KernelSpec, TileConfig>> work;
    std::mt19937 rng(1);
    for (const TunableCase& c : top_left_forward_cases()) {
      if (c.variant != "sm80" && !sm90) continue;
      const KernelSpec spec = case_kernel_spec(c.spec, dev, rng);
      work.emplace_back(spec, top_left_config(spec, c.variant));
    }
    precompile_work(work);
  }
};

TEST_P(ForwardTopLeft, MatchesFp64Reference) {
  SIGJIT_REQUIRE_GPU();
  const TunableCase& c = GetParam();
  if (c.variant != "sm80") {
    if (const std::string why = sm90_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 family test skipped: " << why;
  }
  std::mt19937 rng(7);
  const detail::DeviceInfo dev = detail::current_device();
  const KernelSpec ks = case_kernel_spec(c.spec, dev, rng);
  ASSERT_TRUE(ks.top_left()) << ks.describe();
  const TileConfig config = top_left_config(ks, c.variant);
  ASSERT_EQ(check_config(ks, config), "") << config.describe();
  if (config.family() == KernelFamily::sm90) {
    ForwardProblem p(c.spec, rng);
    ASSERT_EQ(kernels::tma_unsuitable(detail::resolve(p.args())), "") << "this case would fall back to the sm80 family";
  }
  fmt::print("[top-left {}] {} with SIGJIT_FORCE_TILE={}\n", c.variant, c.spec.name(), config.describe());
  const ScopedForceTile force(config.describe());
  run_matrix_case(c.spec);
}

INSTANTIATE_TEST_SUITE_P(TopLeft, ForwardTopLeft, ::testing::ValuesIn(top_left_forward_cases()), tunable_case_name);

CaseSpec small_case() {
  CaseSpec c{Layout::padded, 64, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast, {100, 7}, {100, 50}};
  return c;
}

TEST(ForwardGpu, EachKernelCompiledOncePerProcess) {
  SIGJIT_REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  ForwardProblem p(small_case(), rng);
  sigjit::forward(p.args(), nullptr);
  const long before = detail::compile_count();
  for (int i = 0; i < 3; ++i) sigjit::forward(p.args(), nullptr);
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(detail::compile_count(), before);
}

TEST(ForwardGpu, HostPointerIsRejected) {
  SIGJIT_REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  ForwardProblem p(small_case(), rng);
  AttentionArgs a = p.args();
  alignas(16) static std::uint16_t host[64];
  a.q = host;
  try {
    sigjit::forward(a, nullptr);
    FAIL() << "expected sigjit::Error";
  } catch (const sigjit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("q:"), std::string::npos) << e.what();
  }
}

TEST(ForwardGpu, DeviceLengthsBeyondBufferAreRejected) {
  SIGJIT_REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  ForwardProblem p(small_case(), rng);
  AttentionArgs a = p.args();
  a.seqlen_q = 50;  // the device seq_lens_q holds 100
  try {
    sigjit::forward(a, nullptr);
    FAIL() << "expected sigjit::Error";
  } catch (const sigjit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("seq_lens_q[0]=100"), std::string::npos) << e.what();
  }
}

TEST(ForwardGpu, UncheckedBadLengthsStayInBounds) {
  SIGJIT_REQUIRE_GPU();
  // validate_lengths off and lengths beyond the buffer: the kernel clamps, so nothing outside
  // the output is written and no fault occurs.
  std::mt19937 rng(std::random_device{}());
  CaseSpec c = small_case();
  ForwardProblem p(c, rng);
  AttentionArgs a = p.args();
  a.validate_lengths = false;
  a.seqlen_q = 64;
  a.seqlen_k = 64;
  a.o_strides = {64 * a.heads_q * 64, a.heads_q * 64, 64};
  a.q_strides = a.o_strides;
  sigjit::forward(a, nullptr);
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  SIGJIT_CUDA_OK(cudaGetLastError());
}

TEST(ForwardGpu, CApiMatchesCppApi) {
  SIGJIT_REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  CaseSpec c = small_case();
  ForwardProblem p(c, rng);
  const AttentionArgs& a = p.args();
  sigjit_attention_args ca = sigjit_attention_args_default();
  ca.layout = SIGJIT_PADDED;
  ca.batch = a.batch, ca.seqlen_q = a.seqlen_q, ca.seqlen_k = a.seqlen_k, ca.heads_q = a.heads_q, ca.heads_kv = a.heads_kv, ca.head_dim = a.head_dim;
  ca.q = a.q, ca.k = a.k, ca.v = a.v, ca.o = a.o;
  ca.seq_lens_q = a.seq_lens_q, ca.seq_lens_k = a.seq_lens_k;
  p.poison_output();
  ASSERT_EQ(sigjit_forward(&ca, nullptr), SIGJIT_OK) << sigjit_last_error();
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  const CaseResult r = p.check();
  EXPECT_EQ(r.unwritten, 0);
  EXPECT_LT(r.rel_error, error_bound(c));
  ca.head_dim = 80;
  EXPECT_EQ(sigjit_forward(&ca, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sigjit_last_error()).find("head_dim=80"), std::string::npos);
}

}  // namespace
}  // namespace sigjit::testing
