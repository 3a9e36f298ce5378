// Kernel generation and NVRTC compilation without a GPU: every supported forward spec compiles
// for sm_80 and sm_90a, tile configs are checked before compiling, kernel names are unique, the
// ptxas report is parsed, and the debugging environment switches work.
#include "jit/codegen.hpp"
#include "jit/compiler.hpp"
#include "jit/templates.hpp"
#include "kernels/launch.hpp"
#include "kernels/registry.hpp"
#include "kernels/sm90_bwd.hpp"
#include "kernels/sm90_fwd.hpp"
#include "problem/spec.hpp"
#include "sigjit/common/params.h"
#include "tests/common/scoped_env.hpp"
#include "tests/common/spec_matrix.hpp"
#include "tests/common/text_count.hpp"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using sigjit::Arch;
using sigjit::KernelSpec;
using sigjit::TileConfig;

namespace fs = std::filesystem;

using sigjit::test::ScopedEnv;

// A fresh directory under the system temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("sigjit_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Arch arch(const char* name) { return Arch::parse(name); }

KernelSpec spec_for(int head_dim, const char* arch_name = "sm_90a") {
  KernelSpec s;
  s.head_dim = head_dim;
  s.arch = arch(arch_name);
  return s;
}

// Every supported forward spec (the dimensions that change the generated code), for one arch.
std::vector<KernelSpec> all_forward_specs(const Arch& target) { return sigjit::testing::all_forward_specs(target, sigjit::supported_head_dims()); }

std::vector<KernelSpec> all_forward_specs_both_arches() {
  std::vector<KernelSpec> out = all_forward_specs(arch("sm_80"));
  const std::vector<KernelSpec> sm90a = all_forward_specs(arch("sm_90a"));
  out.insert(out.end(), sm90a.begin(), sm90a.end());
  return out;
}

// ---- compile every supported forward spec ------------------------------------------------------

struct CompileOutcome {
  std::string name;
  std::string failure;  // empty: every check passed
  sigjit::ResourceUsage resources;
  double seconds = 0;
};

CompileOutcome compile_and_check(const KernelSpec& spec) {
  CompileOutcome r;
  // The portable family's kernel wherever an sm90 family is the default (sm_90a forward, and the
  // fused backward at hd 64/128): the checks below are that family's; test_sm90_fwd.cpp and
  // test_sm90_bwd.cpp cover the sm90 defaults.
  const bool sm90_default = sigjit::sm90_family_supports(spec) || sigjit::sm90_backward_supports(spec);
  const TileConfig config = sm90_default ? sigjit::portable_config(spec) : sigjit::default_config(spec);
  r.name = sigjit::kernel_name(spec, config);
  try {
    const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, config);
    r.resources = k.resources;
    r.seconds = k.compile_seconds;
    std::vector<std::string> problems;
    if (k.name != r.name) problems.push_back("compiled name " + k.name + " differs from kernel_name()");
    if (k.cubin.empty()) problems.push_back("empty cubin");
    if (k.ptx.find(".entry " + r.name + "(") == std::string::npos) problems.push_back("PTX lacks '.entry " + r.name + "('");
    if (k.resources.registers <= 0) problems.push_back("ptxas report not parsed (registers=" + std::to_string(k.resources.registers) + "); log:\n" + k.log);
    if (k.resources.shared_dynamic_bytes != sigjit::smem_bytes(spec, config)) problems.push_back("dynamic shared memory differs from smem_bytes");
    // The by-value parameter block must have the host's layout size, and the launch bounds the
    // config's thread count.
    const std::size_t param_bytes = spec.direction == sigjit::Direction::forward ? sizeof(SigjitFwdParams) : sizeof(SigjitBwdParams);
    const std::string param = "_param_0[" + std::to_string(param_bytes) + "]";
    if (k.ptx.find(r.name + param) == std::string::npos) problems.push_back("PTX parameter is not " + r.name + param);
    const std::string bounds = ".maxntid " + std::to_string(config.threads()) + ", 1, 1";
    if (k.ptx.find(bounds) == std::string::npos) problems.push_back("PTX lacks '" + bounds + "'");
    if ((spec.head_dim == 64 || spec.head_dim == 128) && k.resources.has_spills()) problems.push_back("register spills: " + k.resources.describe());
    for (const auto& p : problems) r.failure += (r.failure.empty() ? "" : "; ") + p;
  } catch (const std::exception& e) {
    r.failure = std::string("compile threw: ") + e.what();
  }
  return r;
}

// Compiles every spec on all cores with progress lines; fails on any compile failure (and, via
// compile_and_check, on spills at the fast head dims).
void compile_all(const std::vector<KernelSpec>& specs) {
  const unsigned workers = std::max(1u, std::thread::hardware_concurrency());
  std::printf("compiling %zu kernels on %u threads\n", specs.size(), workers);
  std::fflush(stdout);

  std::vector<CompileOutcome> outcomes(specs.size());
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::mutex print_mutex;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  auto work = [&] {
    for (std::size_t i = next++; i < specs.size(); i = next++) {
      outcomes[i] = compile_and_check(specs[i]);
      const std::size_t n = ++done;
      if (n % 40 == 0 || n == specs.size() || !outcomes[i].failure.empty()) {
        std::lock_guard<std::mutex> lock(print_mutex);
        std::printf("compiled %zu/%zu (%.0f s)%s%s\n", n, specs.size(), elapsed(), outcomes[i].failure.empty() ? "" : " FAILED: ",
                    outcomes[i].failure.empty() ? "" : outcomes[i].name.c_str());
        std::fflush(stdout);
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < workers; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  const double total = elapsed();

  double compile_sum = 0, slowest = 0;
  std::string slowest_name;
  std::map<std::string, std::vector<std::string>> spills_by_arch_dim;
  std::size_t failures = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const CompileOutcome& o = outcomes[i];
    compile_sum += o.seconds;
    if (o.seconds > slowest) slowest = o.seconds, slowest_name = o.name;
    if (!o.failure.empty()) {
      ++failures;
      ADD_FAILURE() << o.name << " (" << specs[i].describe() << "): " << o.failure;
    } else if (o.resources.has_spills()) {
      spills_by_arch_dim[specs[i].arch.name() + " hd" + std::to_string(specs[i].head_dim)].push_back(o.name + ": " + o.resources.describe());
    }
  }
  std::printf("compiled %zu kernels in %.1f s wall (%.1f s of compiles, %.2f s mean, slowest %.2f s: %s), %zu failed\n", specs.size(), total,
              compile_sum, compile_sum / specs.size(), slowest, slowest_name.c_str(), failures);
  for (const auto& [key, list] : spills_by_arch_dim) {
    std::printf("info: %zu kernels spill registers at %s, e.g. %s\n", list.size(), key.c_str(), list.front().c_str());
  }
  ::testing::Test::RecordProperty("total_seconds", std::to_string(total));
  EXPECT_EQ(failures, 0u);
}

// Every head dim, layout, causal, score bias and sigmoid mode on both arches, dtype and bias mode
// paired (tests/common/spec_matrix.hpp: sweep_specs): 240 kernels instead of 960.
TEST(CompileAll, EverySupportedForwardSpecCompilesForSm80AndSm90a) {
  const std::vector<KernelSpec> all = all_forward_specs_both_arches();
  ASSERT_EQ(all.size(), 5u * 2 * 3 * 2 * 2 * 2 * 2 * 2);
  const std::vector<KernelSpec> specs = sigjit::testing::sweep_specs(all);
  ASSERT_EQ(specs.size(), sigjit::testing::exhaustive_sweeps() ? all.size() : all.size() / 4);
  compile_all(specs);
}

// Both kernels of the two-kernel backward (dK/dV and dQ: the deterministic mode off Hopper and the
// fallback where TMA cannot describe the tensors) of every forward spec, dtype and bias mode
// paired (tests/common/spec_matrix.hpp: sweep_specs): 480 kernels instead of 1920, which took 17
// minutes of the CI's 2 cores (2026-12-05).
TEST(CompileAll, EveryBackwardSpecCompilesForSm80AndSm90a) {
  std::vector<KernelSpec> specs;
  const std::vector<KernelSpec> swept = sigjit::testing::sweep_specs(all_forward_specs_both_arches());
  for (KernelSpec s : swept)
    for (sigjit::Direction d : {sigjit::Direction::backward_dkdv, sigjit::Direction::backward_dq}) {
      s.direction = d;
      specs.push_back(s);
    }
  ASSERT_EQ(specs.size(), (sigjit::testing::exhaustive_sweeps() ? 4u : 1u) * 2 * 5 * 3 * 2 * 2 * 2 * 2);
  compile_all(specs);
}

// The fused backward (the default path) over every head dim, layout, causal, score bias and
// sigmoid mode, with dtype and bias mode paired (tests/common/spec_matrix.hpp: sweep_specs): 224
// kernels instead of 960, to keep the CPU suite's run time in check (about 3 minutes on 2
// cores); plus the dQ convert kernel of every dtype, head dim and layout. Spills are failures at hd 64 and 128 (compile_and_check).
TEST(CompileAll, FusedBackwardAndConvertCompileForSm80AndSm90a) {
  std::vector<KernelSpec> specs;
  std::set<std::string> convert_names;
  for (KernelSpec s : all_forward_specs_both_arches()) {
    const bool swept = sigjit::testing::in_sweep(s);
    const KernelSpec convert = sigjit::dq_convert_spec(s);
    if (convert_names.insert(sigjit::kernel_name(convert, sigjit::dq_convert_config())).second) specs.push_back(convert);
    // hd 256 spills anyway and compiles slowest (up to 4 s): on sm_80 its dense layout only.
    const bool slow_and_redundant = s.head_dim == 256 && !s.arch.arch_specific && s.layout != sigjit::Layout::dense;
    if (!swept || slow_and_redundant) continue;
    s.direction = sigjit::Direction::backward_fused;
    specs.push_back(s);
  }
  const std::size_t fused = 2u * 5 * 3 * 2 * 2 * 2 - 16, converts = 2u * 5 * 2 * 3;
  ASSERT_EQ(specs.size(), (sigjit::testing::exhaustive_sweeps() ? 4 : 1) * fused + converts);
  compile_all(specs);
}

// Top-left causal specs (tests/common/spec_matrix.hpp: every layout, hd 64 and 128, two feature
// sets) through every portable kernel: the forward and the deterministic pair on sm_80 and
// sm_90a, the fused backward (sm80 family) on both; the sm90 families' top-left kernels are in
// test_sm90_fwd.cpp and test_sm90_bwd.cpp. Each compiles to its own "causaltl"
// entry point, without spills.
TEST(CompileAll, CausalTopLeftCompilesEveryPortableKernel) {
  std::vector<KernelSpec> specs;
  for (const char* target : {"sm_80", "sm_90a"})
    for (KernelSpec s : sigjit::testing::top_left_causal_specs(arch(target), {64, 128}))
      for (auto d : {sigjit::Direction::forward, sigjit::Direction::backward_dkdv, sigjit::Direction::backward_dq,
                     sigjit::Direction::backward_fused}) {
        s.direction = d;
        EXPECT_THAT(sigjit::kernel_name(s, sigjit::portable_config(s)), HasSubstr("_causaltl_"));
        specs.push_back(s);
      }
  ASSERT_EQ(specs.size(), 2u * 12 * 4);
  compile_all(specs);
}

// ---- kernel names ------------------------------------------------------------------------------

TEST(KernelName, UniqueAcrossEverySpecAndCandidateConfig) {
  std::map<std::string, std::string> seen;
  for (const KernelSpec& s : all_forward_specs_both_arches()) {
    for (const TileConfig& c : sigjit::candidate_configs(s)) {
      const std::string name = sigjit::kernel_name(s, c);
      const std::string what = s.describe() + " " + c.describe();
      const auto [it, inserted] = seen.emplace(name, what);
      EXPECT_TRUE(inserted) << name << " names both " << it->second << " and " << what;
    }
  }
  EXPECT_GT(seen.size(), 960u);
}

TEST(KernelName, IsAValidIdentifierNamingSpecAndConfig) {
  KernelSpec s = spec_for(96, "sm_80");
  s.dtype = sigjit::DType::fp16;
  s.layout = sigjit::Layout::varlen;
  s.causal = true;
  const std::string name = sigjit::kernel_name(s, TileConfig(sigjit::Sm80Tile{64, 32, 4, 3}));
  EXPECT_THAT(name, AllOf(StartsWith("sigjit_fwd_"), HasSubstr("fp16"), HasSubstr("d96"), HasSubstr("varlen"), HasSubstr("causal"),
                          HasSubstr("m64n32w4s3"), HasSubstr("sm_80")));
  for (char ch : name) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') << name;
}

TEST(KernelName, TuningHintsChangeNeitherNameNorCode) {
  // gqa_ratio and the sequence bucket select configs; they must not fork the binary.
  KernelSpec a = spec_for(128);
  KernelSpec b = a;
  b.gqa_ratio = 8;
  b.bucket = sigjit::SeqBucket::up_to_512;
  const TileConfig c = sigjit::default_config(a);
  EXPECT_EQ(sigjit::kernel_name(a, c), sigjit::kernel_name(b, c));
  auto code = [](const std::string& src) { return src.substr(src.find('\n') + 1); };  // minus the descriptive comment
  EXPECT_EQ(code(sigjit::emit_source(a, c)), code(sigjit::emit_source(b, c)));
}

// The causal diagonal is part of a kernel's name, problem key, description, JSON and source only
// when the spec is causal and top-left: bottom-right names and keys are what they always were,
// and a non-causal spec's causal_align changes nothing (one kernel, not two).
TEST(KernelName, TopLeftCausalForksNameKeyAndCodeOnlyWhenCausal) {
  KernelSpec br = spec_for(128, "sm_80");
  br.causal = true;
  const TileConfig c = TileConfig(sigjit::Sm80Tile{128, 32, 4, 2, false});
  EXPECT_EQ(sigjit::kernel_name(br, c), "sigjit_fwd_bf16_d128_dense_causal_logn_nosb_fast_m128n32w4s2qs_sm_80");
  EXPECT_EQ(sigjit::problem_key(br), "fwd_bf16_d128_dense_causal_logn_nosb_fast_gt8k_sm_80");
  EXPECT_FALSE(sigjit::spec_to_json(br).contains("causal_align"));
  EXPECT_THAT(sigjit::emit_source(br, c), ::testing::Not(HasSubstr("causal_top_left")));

  KernelSpec tl = br;
  tl.causal_align = sigjit::CausalAlign::top_left;
  EXPECT_EQ(sigjit::kernel_name(tl, c), "sigjit_fwd_bf16_d128_dense_causaltl_logn_nosb_fast_m128n32w4s2qs_sm_80");
  EXPECT_EQ(sigjit::problem_key(tl), "fwd_bf16_d128_dense_causaltl_logn_nosb_fast_gt8k_sm_80");
  EXPECT_THAT(tl.describe(), HasSubstr("causal(top-left)"));
  EXPECT_THAT(br.describe(), AllOf(HasSubstr(" causal "), ::testing::Not(HasSubstr("top-left"))));
  EXPECT_THAT(sigjit::emit_source(tl, c), HasSubstr("/*q_in_regs*/ false, /*causal_top_left*/ true>;"));
  EXPECT_EQ(sigjit::spec_to_json(tl).at("causal_align"), "top_left");
  const KernelSpec back = sigjit::spec_from_json(sigjit::spec_to_json(tl));
  EXPECT_TRUE(back.top_left());
  EXPECT_EQ(sigjit::problem_key(back), sigjit::problem_key(tl));
  // Entries written before the field existed read back bottom-right.
  nlohmann::json old = sigjit::spec_to_json(br);
  EXPECT_FALSE(sigjit::spec_from_json(old).top_left());
  old["causal_align"] = "diagonal";
  EXPECT_THROW(sigjit::spec_from_json(old), sigjit::Error);

  KernelSpec full = spec_for(128, "sm_80"), full_tl = full;
  full_tl.causal_align = sigjit::CausalAlign::top_left;
  EXPECT_FALSE(full_tl.top_left());
  EXPECT_EQ(sigjit::kernel_name(full_tl, c), sigjit::kernel_name(full, c));
  EXPECT_EQ(sigjit::problem_key(full_tl), sigjit::problem_key(full));
  EXPECT_EQ(sigjit::emit_source(full_tl, c), sigjit::emit_source(full, c));
  EXPECT_EQ(sigjit::spec_to_json(full_tl), sigjit::spec_to_json(full));
}

// The top-left kernel's code differs from the bottom-right one's (the offset len_k - len_q is
// gone), and only there: the PTX of the two, entry names aside, is not the same.
TEST(KernelName, TopLeftPtxDiffersFromBottomRight) {
  KernelSpec br = spec_for(64, "sm_80");
  br.causal = true;
  br.layout = sigjit::Layout::padded;
  KernelSpec tl = br;
  tl.causal_align = sigjit::CausalAlign::top_left;
  const TileConfig c = sigjit::default_config(br);
  auto body = [&](const KernelSpec& s) {
    std::string ptx = sigjit::compile_kernel(s, c).ptx;
    const std::string name = sigjit::kernel_name(s, c);
    for (std::size_t at = ptx.find(name); at != std::string::npos; at = ptx.find(name, at)) ptx.replace(at, name.size(), "ENTRY");
    return ptx;
  };
  EXPECT_NE(body(br), body(tl));
}

TEST(Codegen, EmitsConstantsAndTheEntryPoint) {
  KernelSpec s = spec_for(64);
  s.causal = true;
  s.sigmoid = sigjit::SigmoidMode::exact;
  const TileConfig c = TileConfig(sigjit::Sm80Tile{128, 128, 8, 2});
  const std::string src = sigjit::emit_source(s, c);
  EXPECT_THAT(src, AllOf(HasSubstr("#include \"sigjit/sm80/fwd.cuh\""), HasSubstr("extern \"C\" __global__"), HasSubstr(sigjit::kernel_name(s, c)),
                         HasSubstr("/*head_dim*/ 64"), HasSubstr("/*block_m*/ 128"), HasSubstr("/*causal*/ true"), HasSubstr("/*exact*/ true")));
}

TEST(Codegen, BackwardEmitsBothKernelsFromTheBackwardTemplate) {
  KernelSpec s = spec_for(64);
  const TileConfig c = TileConfig(sigjit::Sm80Tile{64, 64, 4, 2, false});
  s.direction = sigjit::Direction::backward_dkdv;
  EXPECT_THAT(sigjit::emit_source(s, c), AllOf(HasSubstr("#include \"sigjit/sm80/bwd.cuh\""), HasSubstr("dkdv_kernel<Cfg>"),
                                               HasSubstr("SigjitBwdParams"), HasSubstr("/*q_in_regs*/ false")));
  const std::string dkdv_name = sigjit::kernel_name(s, c);
  s.direction = sigjit::Direction::backward_dq;
  EXPECT_THAT(sigjit::emit_source(s, c), HasSubstr("dq_kernel<Cfg>"));
  EXPECT_NE(sigjit::kernel_name(s, c), dkdv_name);
  EXPECT_NE(sigjit::problem_key(s), sigjit::problem_key(spec_for(64)));
}

TEST(Codegen, FusedBackwardAndConvertKernels) {
  KernelSpec s = spec_for(128);
  s.direction = sigjit::Direction::backward_fused;
  // On sm_90a the Hopper family is the default; the portable kernel is its fallback.
  EXPECT_EQ(sigjit::default_config(s).family(), sigjit::KernelFamily::sm90_bwd);
  const TileConfig c = sigjit::portable_config(s);
  EXPECT_THAT(sigjit::emit_source(s, c), AllOf(HasSubstr("#include \"sigjit/sm80/bwd.cuh\""), HasSubstr("dkdv_dq_fused_kernel<Cfg>"),
                                               HasSubstr("SigjitBwdParams"), HasSubstr("BwdSmem<Cfg, 2>::kBytes == " + std::to_string(sigjit::smem_bytes(s, c)))));
  std::set<std::string> names, keys;
  for (auto d : {sigjit::Direction::forward, sigjit::Direction::backward_dkdv, sigjit::Direction::backward_dq, sigjit::Direction::backward_fused,
                 sigjit::Direction::backward_dq_convert}) {
    s.direction = d;
    names.insert(sigjit::kernel_name(s, TileConfig(sigjit::Sm80Tile{64, 64, 4, 2, false})));
    keys.insert(sigjit::problem_key(s));
  }
  EXPECT_EQ(names.size(), 5u);
  EXPECT_EQ(keys.size(), 5u);
  EXPECT_THAT(sigjit::kernel_name(s, sigjit::dq_convert_config()), StartsWith("sigjit_bwd_dq_convert_"));

  // The convert kernel: one config, no shared memory, one binary for every spec of a dtype,
  // head dim and layout.
  KernelSpec heavy = spec_for(128);
  heavy.direction = sigjit::Direction::backward_fused;
  heavy.causal = heavy.score_bias = true;
  heavy.sigmoid = sigjit::SigmoidMode::exact;
  heavy.bias_mode = sigjit::BiasMode::scalar;
  heavy.gqa_ratio = 4;
  heavy.bucket = sigjit::SeqBucket::up_to_512;
  const KernelSpec convert = sigjit::dq_convert_spec(heavy);
  EXPECT_EQ(sigjit::problem_key(convert), sigjit::problem_key(sigjit::dq_convert_spec(spec_for(128))));
  EXPECT_EQ(convert.direction, sigjit::Direction::backward_dq_convert);
  EXPECT_EQ(sigjit::default_config(convert).describe(), sigjit::dq_convert_config().describe());
  ASSERT_EQ(sigjit::candidate_configs(convert).size(), 1u);
  EXPECT_EQ(sigjit::smem_bytes(convert, sigjit::dq_convert_config()), 0);
  EXPECT_THAT(sigjit::check_config(convert, TileConfig(sigjit::Sm80Tile{128, 64, 4, 2, false})), HasSubstr("one config, m64n64w4s2qs"));
  EXPECT_THAT(sigjit::emit_source(convert, sigjit::dq_convert_config()), HasSubstr("dq_convert_kernel<Cfg>"));
}

// The convert's handoff from the Hopper persistent backward (SigjitBwdParams::dq_reduced): on
// sm_90a the kernel polls its sequence's counter with acquire reads, backing off, and its last CTA
// waits for the fused kernel (griddepcontrol.wait); for sm_80, where no programmatic dependent
// launch exists, the wait compiles away and only the (never taken) poll remains.
TEST(DqConvert, HandoffWaitsForTheSequencesTilesAndTheLastCtaForTheKernel) {
  using sigjit::test::occurrences;
  for (const char* arch : {"sm_90a", "sm_80"}) {
    KernelSpec s = spec_for(128, arch);
    s.layout = sigjit::Layout::padded;
    const KernelSpec convert = sigjit::dq_convert_spec(s);
    const std::string ptx = sigjit::compile_kernel(convert, sigjit::dq_convert_config()).ptx;
    const bool hopper = std::string(arch) == "sm_90a";
    EXPECT_EQ(occurrences(ptx, "griddepcontrol.wait"), hopper ? 1u : 0u) << arch;
    EXPECT_GE(occurrences(ptx, "ld.acquire.gpu.global"), 1u) << arch;
    EXPECT_GE(occurrences(ptx, "nanosleep"), 1u) << arch;
  }
}

// The convert module's second entry point: the padded layout zeroes only its sequences' valid dQ
// workspace rows (issue 21: the whole buffer's memset cost the ragged batch 14 % of its backward
// gap); the varlen layout zeroes the rows past cu_seqlens[batch] of every output (_tail, launched
// by every varlen call); the dense layout has one entry.
TEST(DqConvert, PaddedModuleZeroesTheWorkspaceAndVarlenModuleTheTail) {
  for (const auto layout : {sigjit::Layout::dense, sigjit::Layout::padded, sigjit::Layout::varlen}) {
    KernelSpec s = spec_for(128);
    s.layout = layout;
    const KernelSpec convert = sigjit::dq_convert_spec(s);
    const std::string name = sigjit::kernel_name(convert, sigjit::dq_convert_config());
    const std::string ptx = sigjit::compile_kernel(convert, sigjit::dq_convert_config()).ptx;
    const std::string suffix = layout == sigjit::Layout::padded ? "_zero" : layout == sigjit::Layout::varlen ? "_tail" : "";
    EXPECT_EQ(sigjit::second_entry_suffix(convert), suffix) << convert.describe();
    EXPECT_EQ(ptx.find(".entry " + name + "_zero(") != std::string::npos, layout == sigjit::Layout::padded) << convert.describe();
    EXPECT_EQ(ptx.find(".entry " + name + "_tail(") != std::string::npos, layout == sigjit::Layout::varlen) << convert.describe();
    EXPECT_NE(ptx.find(".entry " + name + "("), std::string::npos) << convert.describe();
  }
  for (int head_dim : {32, 64, 96, 256})  // the second entries' row split at every head dim
    for (const auto layout : {sigjit::Layout::padded, sigjit::Layout::varlen}) {
      KernelSpec s = spec_for(head_dim);
      s.layout = layout;
      const KernelSpec convert = sigjit::dq_convert_spec(s);
      const std::string ptx = sigjit::compile_kernel(convert, sigjit::dq_convert_config()).ptx;
      EXPECT_NE(ptx.find(".entry " + sigjit::kernel_name(convert, sigjit::dq_convert_config()) +
                         std::string(sigjit::second_entry_suffix(convert)) + "("),
                std::string::npos)
          << head_dim;
    }
}

TEST(TileConfig, FusedBackwardSplitsDqOverTheWarps) {
  KernelSpec s = spec_for(96);
  s.direction = sigjit::Direction::backward_fused;
  // 128-key tile over 8 warps, 32-query tile: 2 query m16 tiles, so 4 warps share each and would
  // get 24 of hd 96's columns each: not whole 16-column pairs.
  EXPECT_THAT(sigjit::check_config(s, TileConfig(sigjit::Sm80Tile{128, 32, 8, 2, false})), HasSubstr("head_dim=96"));
  EXPECT_EQ(sigjit::check_config(s, TileConfig(sigjit::Sm80Tile{128, 64, 8, 2, false})), "");
  s.head_dim = 64;
  EXPECT_EQ(sigjit::check_config(s, TileConfig(sigjit::Sm80Tile{128, 32, 8, 2, false})), "");
  // A 48-query tile has 3 m16 tiles: they do not split over 2 warps.
  EXPECT_THAT(sigjit::check_config(s, TileConfig(sigjit::Sm80Tile{32, 48, 2, 2, false})), HasSubstr("must divide"));
  EXPECT_GT(sigjit::smem_bytes(s, TileConfig(sigjit::Sm80Tile{128, 64, 8, 2, false})), [&] {
    KernelSpec d = s;
    d.direction = sigjit::Direction::backward_dkdv;
    return sigjit::smem_bytes(d, TileConfig(sigjit::Sm80Tile{128, 64, 8, 2, false}));
  }());
}

TEST(TileConfig, BackwardDefaultsAndCandidatesPassCheckConfigOnEveryArch) {
  for (const char* target : {"sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_120"}) {
    for (KernelSpec s : all_forward_specs(arch(target))) {
      for (auto d : {sigjit::Direction::backward_dkdv, sigjit::Direction::backward_dq, sigjit::Direction::backward_fused,
                     sigjit::Direction::backward_dq_convert}) {
        s.direction = d;
        EXPECT_EQ(sigjit::check_config(s, sigjit::default_config(s)), "") << s.describe();
        const auto candidates = sigjit::candidate_configs(s);
        // hd 256 on 99 KB archs: no candidate of the search grid fits; the tuner then times
        // the default alone (tune_and_store adds it).
        const bool small_smem = s.arch.major == 12 || (s.arch.major == 8 && s.arch.minor != 0);
        if (!(s.head_dim == 256 && small_smem)) EXPECT_FALSE(candidates.empty()) << s.describe();
        for (const TileConfig& c : candidates) EXPECT_EQ(sigjit::check_config(s, c), "") << s.describe() << " " << c.describe();
      }
    }
  }
}

TEST(KernelSpecJson, BackwardDirectionsRoundTrip) {
  for (auto d : {sigjit::Direction::backward_dkdv, sigjit::Direction::backward_dq, sigjit::Direction::backward_fused,
                 sigjit::Direction::backward_dq_convert}) {
    KernelSpec s = spec_for(64, "sm_80");
    s.direction = d;
    const KernelSpec back = sigjit::spec_from_json(sigjit::spec_to_json(s));
    EXPECT_EQ(back.direction, d);
    EXPECT_EQ(sigjit::problem_key(back), sigjit::problem_key(s));
  }
  nlohmann::json j = sigjit::spec_to_json(spec_for(64));
  j["direction"] = "bwd";
  EXPECT_THROW(sigjit::spec_from_json(j), sigjit::Error);
}

TEST(Codegen, BackwardRejectsConfigsHoldingTheFixedTileInRegisters) {
  KernelSpec s = spec_for(64);
  s.direction = sigjit::Direction::backward_dkdv;
  EXPECT_THAT(sigjit::check_config(s, TileConfig(sigjit::Sm80Tile{64, 64, 4, 2, true})), HasSubstr("qs"));
  EXPECT_EQ(sigjit::check_config(s, sigjit::default_config(s)), "");
  EXPECT_GT(sigjit::smem_bytes(s, TileConfig(sigjit::Sm80Tile{64, 64, 4, 2, false})), sigjit::smem_bytes(spec_for(64), TileConfig(sigjit::Sm80Tile{64, 64, 4, 2, false})));
}

// ---- tile configs ------------------------------------------------------------------------------

TEST(TileConfig, DefaultAndCandidateConfigsPassCheckConfig) {
  // Every arch family, including those with only 99 KB of shared memory per block.
  std::vector<KernelSpec> specs;
  for (const char* target : {"sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_120"}) {
    const auto more = all_forward_specs(arch(target));
    specs.insert(specs.end(), more.begin(), more.end());
  }
  for (const KernelSpec& s : specs) {
    EXPECT_EQ(sigjit::check_config(s, sigjit::default_config(s)), "") << s.describe();
    const auto candidates = sigjit::candidate_configs(s);
    EXPECT_FALSE(candidates.empty()) << s.describe();
    for (const TileConfig& c : candidates) EXPECT_EQ(sigjit::check_config(s, c), "") << s.describe() << " " << c.describe();
  }
}

TEST(TileConfig, SharedMemoryMatchesTheTemplateFormula) {
  // 2 bytes * (BLOCK_M + 2 * STAGES * BLOCK_N) rows of (D + 8) elements.
  EXPECT_EQ(sigjit::smem_bytes(spec_for(128), TileConfig(sigjit::Sm80Tile{128, 64, 8, 2})), 2 * (128 + 2 * 2 * 64) * 136);
  EXPECT_EQ(sigjit::smem_bytes(spec_for(32), TileConfig(sigjit::Sm80Tile{64, 32, 4, 3})), 2 * (64 + 2 * 3 * 32) * 40);
}

struct BadConfig {
  int head_dim;
  const char* arch;
  TileConfig config;
  const char* reason;  // substring of check_config's answer
};

const BadConfig kBadConfigs[] = {
    {128, "sm_90a", sigjit::Sm80Tile{100, 64, 8, 2}, "block_m=100 is not a multiple of 16*warps=128"},
    {128, "sm_90a", sigjit::Sm80Tile{64, 64, 8, 2}, "not a multiple of 16*warps"},
    {128, "sm_90a", sigjit::Sm80Tile{128, 64, 0, 2}, "warps=0"},
    {128, "sm_90a", sigjit::Sm80Tile{512, 64, 32, 2}, "warps=32"},
    {64, "sm_90a", sigjit::Sm80Tile{256, 64, 4, 2}, "rows per warp"},
    {64, "sm_90a", sigjit::Sm80Tile{128, 24, 8, 2}, "block_n=24"},
    {64, "sm_90a", sigjit::Sm80Tile{128, 512, 8, 2}, "block_n=512"},
    {128, "sm_90a", sigjit::Sm80Tile{128, 64, 8, 1}, "stages=1 outside 2..4"},
    {128, "sm_90a", sigjit::Sm80Tile{128, 64, 8, 5}, "stages=5 outside 2..4"},
    {256, "sm_90a", sigjit::Sm80Tile{64, 256, 4, 4}, "shared memory"},
    {128, "sm_80", sigjit::Sm80Tile{128, 64, 8, 4}, "sm_80 allows"},   // 174080 B: fits sm_90 (227 KB), not sm_80 (163 KB)
    {128, "sm_86", sigjit::Sm80Tile{128, 64, 8, 3}, "sm_86 allows"},   // 139264 B > 99 KB
    {256, "sm_90a", sigjit::Sm80Tile{128, 64, 4, 2}, "would spill"},   // two m16 tiles of a 256-wide O
};

TEST(TileConfig, CheckConfigRejectsBadConfigsWithAReason) {
  for (const BadConfig& b : kBadConfigs) {
    const KernelSpec s = spec_for(b.head_dim, b.arch);
    EXPECT_THAT(sigjit::check_config(s, b.config), HasSubstr(b.reason)) << s.describe() << " " << b.config.describe();
  }
  // The sm_80-only rejection above is about the arch, not the config.
  EXPECT_EQ(sigjit::check_config(spec_for(128, "sm_90a"), TileConfig(sigjit::Sm80Tile{128, 64, 8, 4})), "");
}

TEST(TileConfig, CompileKernelRejectsBadConfigsBeforeCompiling) {
  for (const BadConfig& b : kBadConfigs) {
    const KernelSpec s = spec_for(b.head_dim, b.arch);
    try {
      sigjit::compile_kernel(s, b.config);
      ADD_FAILURE() << "compiled " << b.config.describe();
    } catch (const sigjit::Error& e) {
      EXPECT_EQ(e.kind(), sigjit::ErrorKind::invalid_argument) << e.what();
      EXPECT_THAT(e.what(), AllOf(HasSubstr(b.config.describe()), HasSubstr(b.reason)));
    }
  }
}

TEST(TileConfig, CandidateConfigsAreDistinctAndIncludeTheDefault) {
  for (int d : sigjit::supported_head_dims()) {
    const KernelSpec s = spec_for(d);
    const auto candidates = sigjit::candidate_configs(s);
    std::set<std::string> names;
    for (const auto& c : candidates) EXPECT_TRUE(names.insert(c.describe()).second) << c.describe();
    EXPECT_TRUE(names.count(sigjit::default_config(s).describe())) << "hd" << d << " default " << sigjit::default_config(s).describe();
  }
}

TEST(TileConfig, ParseInvertsDescribe) {
  for (int d : sigjit::supported_head_dims()) {
    const KernelSpec s = spec_for(d);
    std::vector<TileConfig> configs = sigjit::candidate_configs(s);
    configs.push_back(sigjit::default_config(s));
    for (const TileConfig& c : configs) {
      const TileConfig p = TileConfig::parse(c.describe(), "test");
      ASSERT_EQ(p.family(), c.family()) << c.describe();
      EXPECT_EQ(p.describe(), c.describe());
      const auto* pt = p.get_if<sigjit::Sm80Tile>();
      const auto* ct = c.get_if<sigjit::Sm80Tile>();
      if (!ct) continue;  // the Hopper families' round trips: test_sm90_*.cpp
      EXPECT_EQ(pt->block_m, ct->block_m) << c.describe();
      EXPECT_EQ(pt->block_n, ct->block_n) << c.describe();
      EXPECT_EQ(pt->warps, ct->warps) << c.describe();
      EXPECT_EQ(pt->stages, ct->stages) << c.describe();
      EXPECT_EQ(pt->q_in_regs, ct->q_in_regs) << c.describe();
    }
  }
  const TileConfig qs = TileConfig::parse("m128n32w4s2qs", "test");
  EXPECT_FALSE(qs.get<sigjit::Sm80Tile>().q_in_regs);
  EXPECT_TRUE(TileConfig::parse("m64n64w4s3", "test").get<sigjit::Sm80Tile>().q_in_regs);
}

TEST(TileConfig, ParseRejectsMalformedTextNamingTheSource) {
  for (const char* bad : {"", "m128n64w8", "m128n64w8s2junk", "m128xn64w8s2", "M128N64W8S2", "m-1n64w8s2", "m128n64w8s2q", " m128n64w8s2"}) {
    try {
      TileConfig::parse(bad, "SIGJIT_FORCE_TILE");
      ADD_FAILURE() << "parsed '" << bad << "'";
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), AllOf(StartsWith("SIGJIT_FORCE_TILE '" + std::string(bad) + "'"), HasSubstr("m128n64w4s2"))) << bad;
    }
  }
}

TEST(TileConfig, QInSharedMemoryIsPartOfNameAndCode) {
  const KernelSpec s = spec_for(128);
  TileConfig regs = TileConfig(sigjit::Sm80Tile{128, 32, 4, 2, true}), smem = TileConfig(sigjit::Sm80Tile{128, 32, 4, 2, false});
  EXPECT_NE(sigjit::kernel_name(s, regs), sigjit::kernel_name(s, smem));
  EXPECT_THAT(sigjit::kernel_name(s, smem), HasSubstr("m128n32w4s2qs_"));
  EXPECT_THAT(sigjit::emit_source(s, smem), HasSubstr("/*q_in_regs*/ false"));
  EXPECT_THAT(sigjit::emit_source(s, regs), HasSubstr("/*q_in_regs*/ true"));
  // Without the Q fragments the register estimate drops by D/4 per m16 tile: two m16 tiles of
  // hd 128 with a 64-key tile fit only with Q in shared memory.
  EXPECT_THAT(sigjit::check_config(s, TileConfig(sigjit::Sm80Tile{128, 64, 4, 2, true})), HasSubstr("would spill"));
  EXPECT_EQ(sigjit::check_config(s, TileConfig(sigjit::Sm80Tile{128, 64, 4, 2, false})), "");
}

// ---- ptxas report parsing ----------------------------------------------------------------------

const char* const kPtxasLog =
    "ptxas info    : 76 bytes gmem\n"
    "ptxas info    : Compiling entry function 'sigjit_k_sm_90a' for 'sm_90a'\n"
    "ptxas info    : Function properties for sigjit_k_sm_90a\n"
    "ptxas         .     24 bytes stack frame, 24 bytes spill stores, 48 bytes spill loads\n"
    "ptxas info    : Used 255 registers, used 1 barriers, 24 bytes cumulative stack size, 1024 bytes smem\n"
    "ptxas info    : Compile time = 237.380 ms\n"
    "ptxas info    : Compiling entry function 'sigjit_k_sm_90' for 'sm_90'\n"
    "ptxas info    : Function properties for sigjit_k_sm_90\n"
    "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
    "ptxas info    : Used 168 registers, used 1 barriers\n"
    "ptxas info    : Compile time = 200.000 ms\n";

TEST(PtxasReport, ParsesTheEntryAsked) {
  const sigjit::ResourceUsage a = sigjit::parse_ptxas_report(kPtxasLog, "sigjit_k_sm_90a");
  EXPECT_EQ(a.registers, 255);
  EXPECT_EQ(a.stack_bytes, 24);
  EXPECT_EQ(a.spill_store_bytes, 24);
  EXPECT_EQ(a.spill_load_bytes, 48);
  EXPECT_EQ(a.shared_static_bytes, 1024);
  EXPECT_TRUE(a.has_spills());
}

TEST(PtxasReport, DoesNotConfuseAnEntryWithOneItsNamePrefixes) {
  // "sigjit_k_sm_90" is a prefix of "sigjit_k_sm_90a", whose report comes first.
  const sigjit::ResourceUsage b = sigjit::parse_ptxas_report(kPtxasLog, "sigjit_k_sm_90");
  EXPECT_EQ(b.registers, 168);
  EXPECT_EQ(b.stack_bytes, 0);
  EXPECT_FALSE(b.has_spills());
  EXPECT_EQ(b.shared_static_bytes, 0);
}

TEST(PtxasReport, UnknownEntryGivesNoRegisters) {
  const sigjit::ResourceUsage r = sigjit::parse_ptxas_report(kPtxasLog, "other_kernel");
  EXPECT_EQ(r.registers, -1);
  EXPECT_FALSE(r.has_spills());
  EXPECT_EQ(sigjit::parse_ptxas_report("", "sigjit_k_sm_90").registers, -1);
}

TEST(PtxasReport, DescribeListsEveryField) {
  sigjit::ResourceUsage r;
  r.registers = 128;
  r.spill_store_bytes = 4;
  r.shared_dynamic_bytes = 98304;
  EXPECT_THAT(r.describe(), AllOf(HasSubstr("128 registers"), HasSubstr("4 B spill stores"), HasSubstr("98304 B dynamic")));
}

// ---- arch names --------------------------------------------------------------------------------

TEST(Arch, ParsesSupportedTargets) {
  const Arch a = Arch::parse("sm_80");
  EXPECT_EQ(a.major, 8);
  EXPECT_EQ(a.minor, 0);
  EXPECT_FALSE(a.arch_specific);
  EXPECT_EQ(a.name(), "sm_80");
  const Arch h = Arch::parse("sm_90a");
  EXPECT_EQ(h.major, 9);
  EXPECT_EQ(h.minor, 0);
  EXPECT_TRUE(h.arch_specific);
  EXPECT_EQ(h.name(), "sm_90a");
  EXPECT_EQ(Arch::parse("sm_86").name(), "sm_86");
  EXPECT_EQ(Arch::parse("sm_90").name(), "sm_90");
}

TEST(Arch, ParsesThreeDigitTargets) {
  // Blackwell: the runtime derives sm_100 / sm_120 from the device, so the parser must accept them.
  const Arch b = Arch::parse("sm_100a");
  EXPECT_EQ(b.major, 10);
  EXPECT_EQ(b.minor, 0);
  EXPECT_TRUE(b.arch_specific);
  EXPECT_EQ(b.name(), "sm_100a");
  EXPECT_EQ(Arch::parse("sm_120").name(), "sm_120");
  EXPECT_EQ((Arch{12, 0, false}).name(), "sm_120");
}

TEST(Arch, RejectsMalformedAndOldTargets) {
  auto message = [](const std::string& text) -> std::string {
    try {
      Arch::parse(text);
    } catch (const sigjit::Error& e) {
      EXPECT_EQ(e.kind(), sigjit::ErrorKind::invalid_argument);
      return e.what();
    }
    ADD_FAILURE() << "accepted " << text;
    return {};
  };
  for (const char* bad : {"sm90", "sm_9", "90", "compute_90", "sm_90b", "SM_90", "sm_90a ", ""}) {
    EXPECT_THAT(message(bad), AllOf(StartsWith("arch"), HasSubstr("'" + std::string(bad) + "'"), HasSubstr("sm_80, sm_90, sm_90a"))) << bad;
  }
  EXPECT_THAT(message("sm_75"), AllOf(StartsWith("arch"), HasSubstr("sm_75 is not supported"), HasSubstr("sm_80 or newer")));
  EXPECT_THAT(message("sm_70"), HasSubstr("sm_80 or newer"));
}

TEST(Arch, SharedMemoryLimitFollowsTheArch) {
  // 139264 B: more than the 99 KB of sm_86/sm_89/sm_120, less than sm_80's 163 KB and sm_90's 227 KB.
  const TileConfig c = TileConfig(sigjit::Sm80Tile{128, 64, 8, 3});
  EXPECT_EQ(sigjit::smem_bytes(spec_for(128), c), 139264);
  for (const char* ok : {"sm_80", "sm_90", "sm_90a", "sm_100"}) EXPECT_EQ(sigjit::check_config(spec_for(128, ok), c), "") << ok;
  for (const char* small : {"sm_86", "sm_89", "sm_120"}) EXPECT_THAT(sigjit::check_config(spec_for(128, small), c), HasSubstr("shared memory")) << small;
}

TEST(Arch, CompilesForBlackwell) {
  for (const char* target : {"sm_100", "sm_120"}) {
    const KernelSpec s = spec_for(128, target);
    const sigjit::CompiledKernel k = sigjit::compile_kernel(s, sigjit::default_config(s));
    EXPECT_FALSE(k.cubin.empty()) << target;
    EXPECT_GT(k.resources.registers, 0) << target;
  }
}

// ---- compile options and environment switches --------------------------------------------------

TEST(CompileOptions, TargetAndLineinfo) {
  const KernelSpec s = spec_for(64, "sm_80");
  {
    ScopedEnv env("SIGJIT_LINEINFO", std::nullopt);
    const auto opts = sigjit::compile_options(s);
    EXPECT_THAT(opts, ::testing::Contains("--gpu-architecture=sm_80"));
    EXPECT_THAT(opts, ::testing::Not(::testing::Contains("-lineinfo")));
  }
  ScopedEnv env("SIGJIT_LINEINFO", "1");
  EXPECT_THAT(sigjit::compile_options(s), ::testing::Contains("-lineinfo"));
}

TEST(CompileOptions, NvrtcVersionIsReported) { EXPECT_THAT(sigjit::nvrtc_version(), ::testing::MatchesRegex("[0-9]+\\.[0-9]+")); }

std::string file_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// SIGJIT_TRACE_TILES names a file the launch writes after every traced kernel: a regular file is
// created or overwritten whole; a symbolic link (even to a regular file), a FIFO without a reader
// and a directory are refused with the variable named, without following, blocking or writing.
TEST(Environment, TraceFileIsARegularFileAndNothingElse) {
  TempDir dir;
  const fs::path file = dir.path() / "trace.csv";
  sigjit::kernels::write_trace_file(file.string(), "a long first trace\n");
  sigjit::kernels::write_trace_file(file.string(), "short\n");
  EXPECT_EQ(file_text(file), "short\n");

  const fs::path link = dir.path() / "link.csv", fifo = dir.path() / "fifo.csv";
  fs::create_symlink(file, link);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const fs::path& bad : {link, fifo, dir.path()}) {
    try {
      sigjit::kernels::write_trace_file(bad.string(), "forged\n");
      ADD_FAILURE() << "wrote the trace into " << bad;
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr("SIGJIT_TRACE_TILES=" + bad.string())) << bad;
    }
  }
  EXPECT_EQ(file_text(file), "short\n") << "written through the link";
}

TEST(Environment, DumpDirWritesSourcePtxAndLog) {
  TempDir dir;
  const fs::path dump = dir.path() / "nested" / "dump";  // created on demand
  const KernelSpec s = spec_for(64);
  const TileConfig c = sigjit::default_config(s);
  sigjit::CompiledKernel k;
  {
    ScopedEnv env("SIGJIT_DUMP_DIR", dump.string());
    k = sigjit::compile_kernel(s, c);
  }
  const fs::path base = dump / k.name;
  ASSERT_TRUE(fs::exists(base.string() + ".cu")) << base;
  ASSERT_TRUE(fs::exists(base.string() + ".ptx")) << base;
  ASSERT_TRUE(fs::exists(base.string() + ".log")) << base;
  EXPECT_EQ(read_text(base.string() + ".cu"), k.source);
  EXPECT_EQ(read_text(base.string() + ".ptx"), k.ptx);
  EXPECT_THAT(read_text(base.string() + ".log"), AllOf(HasSubstr("--gpu-architecture=sm_90a"), HasSubstr("Used "), HasSubstr("registers")));

  // Unset: nothing more is written.
  fs::remove_all(dump);
  sigjit::compile_kernel(s, c);
  EXPECT_FALSE(fs::exists(dump));
}

TEST(Environment, DumpDirKeepsTheSourceOfAFailedCompile) {
  TempDir dir, templates;
  for (const auto& f : sigjit::template_files()) {
    fs::create_directories((templates.path() / f.include_name).parent_path());
    std::ofstream(templates.path() / f.include_name) << f.text << (f.include_name == "sigjit/common/sequence.cuh" ? "\n#error sigjit test: broken template\n" : "");
  }
  ScopedEnv tdir("SIGJIT_TEMPLATE_DIR", templates.path().string());
  ScopedEnv ddir("SIGJIT_DUMP_DIR", dir.path().string());
  const KernelSpec s = spec_for(64);
  const TileConfig c = sigjit::default_config(s);
  try {
    sigjit::compile_kernel(s, c);
    FAIL() << "a template with #error compiled";
  } catch (const sigjit::Error& e) {
    EXPECT_EQ(e.kind(), sigjit::ErrorKind::compile);
    EXPECT_THAT(e.what(), AllOf(HasSubstr("NVRTC failed to compile"), HasSubstr("sigjit test: broken template"), HasSubstr("SIGJIT_DUMP_DIR")));
  }
  EXPECT_TRUE(fs::exists(dir.path() / (sigjit::kernel_name(s, c) + ".cu")));
}

TEST(Environment, TemplateDirOverridesTheEmbeddedTemplates) {
  const auto embedded = sigjit::template_files();
  ASSERT_FALSE(embedded.empty());
  std::set<std::string> names;
  for (const auto& f : embedded) names.insert(f.include_name);
  EXPECT_TRUE(names.count("sigjit/sm80/fwd.cuh"));
  EXPECT_TRUE(names.count("sigjit/common/params.h"));
  EXPECT_TRUE(names.count("sigjit/common/tile_primitives.cuh"));

  TempDir templates;
  for (const auto& f : embedded) {
    fs::create_directories((templates.path() / f.include_name).parent_path());
    std::ofstream(templates.path() / f.include_name) << "// overridden\n" << f.text;
  }
  ScopedEnv env("SIGJIT_TEMPLATE_DIR", templates.path().string());
  const auto overridden = sigjit::template_files();
  ASSERT_EQ(overridden.size(), embedded.size());
  for (const auto& f : overridden) EXPECT_THAT(f.text, StartsWith("// overridden\n")) << f.include_name;
  const KernelSpec s = spec_for(32, "sm_80");
  EXPECT_FALSE(sigjit::compile_kernel(s, sigjit::default_config(s)).cubin.empty());
}

// A template tree from another version whose parameter block grew (here SigjitFwdParams, which
// every other block holds): each family's kernel fails to compile naming it, where it would
// otherwise launch reading later members at the wrong offsets. The Hopper blocks' own size does
// not change (their tensor maps' alignment pads them), which is why the inner structs are checked.
TEST(Environment, TemplateDirWithAnotherParameterBlockFailsToCompileNamingIt) {
  TempDir templates;
  const std::string grown = "struct SigjitFwdParams {\n  int sigjit_test_member_from_another_version;";
  for (const auto& f : sigjit::template_files()) {
    std::string text = f.text;
    if (f.include_name == "sigjit/common/params.h") {
      const auto at = text.find("struct SigjitFwdParams {");
      ASSERT_NE(at, std::string::npos);
      text.replace(at, std::strlen("struct SigjitFwdParams {"), grown);
    }
    fs::create_directories((templates.path() / f.include_name).parent_path());
    std::ofstream(templates.path() / f.include_name) << text;
  }
  ScopedEnv env("SIGJIT_TEMPLATE_DIR", templates.path().string());
  KernelSpec bwd = spec_for(128);
  bwd.direction = sigjit::Direction::backward_fused;
  KernelSpec fp8 = spec_for(128);
  fp8.dtype = sigjit::DType::fp8_e4m3;
  for (const KernelSpec& spec : {spec_for(32, "sm_80"), spec_for(128), fp8, bwd}) {
    try {
      sigjit::compile_kernel(spec, sigjit::default_config(spec));
      ADD_FAILURE() << spec.describe() << " compiled against a grown SigjitFwdParams";
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), AllOf(HasSubstr("host and template disagree on the size of SigjitFwdParams"), HasSubstr("SIGJIT_TEMPLATE_DIR")))
          << spec.describe();
    }
  }
}

TEST(Environment, MissingTemplateDirNamesTheVariable) {
  const std::string missing = (fs::temp_directory_path() / "sigjit_no_such_template_dir_4711").string();
  ASSERT_FALSE(fs::exists(missing));
  ScopedEnv env("SIGJIT_TEMPLATE_DIR", missing);
  const KernelSpec s = spec_for(64);
  try {
    sigjit::compile_kernel(s, sigjit::default_config(s));
    FAIL() << "compiled with SIGJIT_TEMPLATE_DIR=" << missing;
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), AllOf(StartsWith("SIGJIT_TEMPLATE_DIR=" + missing), HasSubstr("cannot read"), HasSubstr("templates/")));
  }
}

TEST(Environment, IncompleteTemplateDirNamesTheMissingFile) {
  // Every embedded template but one: the error must name exactly the missing file.
  TempDir templates;
  for (const auto& f : sigjit::template_files()) {
    fs::create_directories((templates.path() / f.include_name).parent_path());
    if (f.include_name != "sigjit/sm80/fwd.cuh") std::ofstream(templates.path() / f.include_name) << f.text;
  }
  ScopedEnv env("SIGJIT_TEMPLATE_DIR", templates.path().string());
  try {
    sigjit::template_files();
    FAIL() << "an incomplete template dir was accepted";
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), AllOf(StartsWith("SIGJIT_TEMPLATE_DIR="), HasSubstr("sigjit/sm80/fwd.cuh")));
  }
}

TEST(Environment, FailOnSpillsRejectsASpillingKernel) {
  // Find a config that check_config accepts but ptxas spills on (head dim 256 is the tightest).
  std::optional<std::pair<KernelSpec, TileConfig>> spilling;
  {
    ScopedEnv off("SIGJIT_FAIL_ON_SPILLS", std::nullopt);
    for (const char* target : {"sm_90a", "sm_80"}) {
      const KernelSpec s = spec_for(256, target);
      std::vector<TileConfig> configs{sigjit::default_config(s), TileConfig(sigjit::Sm80Tile{128, 128, 4, 2}), TileConfig(sigjit::Sm80Tile{128, 64, 8, 2})};
      for (const auto& c : sigjit::candidate_configs(s)) configs.push_back(c);
      for (const TileConfig& c : configs) {
        if (!sigjit::check_config(s, c).empty()) continue;
        if (sigjit::compile_kernel(s, c).resources.has_spills()) {
          spilling.emplace(s, c);
          break;
        }
      }
      if (spilling) break;
    }
  }
  if (!spilling) GTEST_SKIP() << "no head-dim-256 config that check_config accepts spills registers with this NVRTC";
  const auto& [s, c] = *spilling;
  std::printf("spilling config: %s %s\n", s.describe().c_str(), c.describe().c_str());
  {
    ScopedEnv zero("SIGJIT_FAIL_ON_SPILLS", "0");  // "0" means off
    EXPECT_NO_THROW(sigjit::compile_kernel(s, c));
  }
  ScopedEnv on("SIGJIT_FAIL_ON_SPILLS", "1");
  try {
    sigjit::compile_kernel(s, c);
    FAIL() << "SIGJIT_FAIL_ON_SPILLS=1 accepted " << sigjit::kernel_name(s, c);
  } catch (const sigjit::Error& e) {
    EXPECT_EQ(e.kind(), sigjit::ErrorKind::compile);
    EXPECT_THAT(e.what(), AllOf(HasSubstr(sigjit::kernel_name(s, c)), HasSubstr("spill"), HasSubstr("SIGJIT_FAIL_ON_SPILLS")));
  }
  // A kernel without spills still compiles under the switch.
  const KernelSpec small = spec_for(64);
  EXPECT_NO_THROW(sigjit::compile_kernel(small, sigjit::default_config(small)));
}

}  // namespace
