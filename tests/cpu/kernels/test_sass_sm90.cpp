// The sm90 family's machine code (issue 6): cuobjdump's SASS of the default kernels must run the
// tensor cores through HGMMA inside the key loop (a backward branch whose body holds HGMMA), load
// tiles with TMA (UTMALDG) and contain no mma.sync-era HMMA. ptxas can silently serialize or drop
// wgmma; the PTX FileCheck cannot see that, the SASS can. cuobjdump comes with the CUDA toolkit or,
// where the toolkit lacks it, from NVIDIA's PyPI wheels that setup.sh installs into build/tools.
#include "jit/compiler.hpp"
#include "kernels/registry.hpp"
#include "kernels/sm90_bwd_tile.hpp"
#include "kernels/sm90_fwd.hpp"
#include "problem/spec.hpp"
#include "tests/common/text_count.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

namespace {

using sigjit::KernelSpec;

std::string run_capture(const std::string& command) {
  std::string out;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    if (pclose(pipe) != 0) out += "\n[command failed]";
  }
  return out;
}

std::string dump_sass(const std::vector<char>& cubin, const std::string& tag) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() / fmt::format("sigjit-sass-{}-{}.cubin", tag, getpid());
  std::ofstream(file, std::ios::binary).write(cubin.data(), static_cast<std::streamsize>(cubin.size()));
  const std::filesystem::path tool = SIGJIT_CUOBJDUMP;
  // cuobjdump finds nvdisasm on PATH: the two sit side by side in the toolkit and in the wheels.
  const std::string sass = run_capture(fmt::format("PATH='{}':\"$PATH\" '{}' --dump-sass '{}' 2>&1", tool.parent_path().string(), tool.string(), file.string()));
  std::filesystem::remove(file);
  return sass;
}

bool have_cuobjdump() { return !std::string(SIGJIT_CUOBJDUMP).empty(); }
constexpr const char* kNoCuobjdump =
    "cuobjdump not found (neither in the CUDA toolkit nor in build/tools); ./setup.sh installs it from PyPI "
    "(nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm)";

struct SassSummary {
  int hgmma = 0, hmma = 0, tma_loads = 0;
  bool hgmma_in_a_loop = false;
};

// A loop is a branch to a lower address; it holds HGMMA when one lies between target and branch.
SassSummary summarize(const std::string& sass) {
  SassSummary s;
  const std::regex line_re(R"(/\*([0-9a-f]{4,})\*/\s+(.*?);)");
  const std::regex bra_re(R"(BRA\s+(?:`?\(?)(0x[0-9a-f]+))");
  std::vector<long> hgmma_at;
  std::vector<std::pair<long, long>> back_edges;  // (target, branch)
  std::istringstream in(sass);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, line_re)) continue;
    const long at = std::stol(m[1].str(), nullptr, 16);
    const std::string op = m[2].str();
    if (op.find("HGMMA.") != std::string::npos) ++s.hgmma, hgmma_at.push_back(at);
    if (op.find("HMMA.") != std::string::npos && op.find("HGMMA.") == std::string::npos) ++s.hmma;
    if (op.find("UTMALDG") != std::string::npos) ++s.tma_loads;
    std::smatch b;
    if (std::regex_search(op, b, bra_re)) {
      const long target = std::stol(b[1].str(), nullptr, 16);
      if (target < at) back_edges.emplace_back(target, at);
    }
  }
  for (const auto& [lo, hi] : back_edges)
    for (long h : hgmma_at) s.hgmma_in_a_loop |= (h >= lo && h <= hi);
  return s;
}

TEST(Sm90Sass, DefaultKernelsRunHgmmaInTheKeyLoopAndLoadWithTma) {
  if (!have_cuobjdump()) GTEST_SKIP() << kNoCuobjdump;
  // Each default tile as it is and made persistent (_p: the key loop nested in a tile loop).
  for (int d : {64, 128, 256}) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool causal = variant % 2 == 1, persistent = variant >= 2;
      KernelSpec spec;
      spec.head_dim = d;
      spec.causal = causal;
      spec.layout = sigjit::Layout::padded;
      spec.arch = sigjit::Arch::parse("sm_90a");
      sigjit::TileConfig config = sigjit::default_sm90_config(spec);
      config.get<sigjit::Sm90FwdTile>().persistent = persistent;
      const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, config);
      const std::string sass = dump_sass(k.cubin, k.name);
      const SassSummary s = summarize(sass);
      const std::string what = fmt::format("{} ({} HGMMA, {} HMMA, {} UTMALDG)", k.name, s.hgmma, s.hmma, s.tma_loads);
      ASSERT_EQ(sass.find("[command failed]"), std::string::npos) << what << "\n" << sass.substr(0, 2000);
      EXPECT_GE(s.hgmma, 2) << what;  // S = Q K^T and O += P V
      EXPECT_TRUE(s.hgmma_in_a_loop) << what << ": no HGMMA inside a backward branch";
      EXPECT_EQ(s.hmma, 0) << what;
      EXPECT_GT(s.tma_loads, 0) << what;
      std::printf("%s\n", what.c_str());
    }
  }
}

// The backward levers (issue 21) in machine code: early scores (e) keep HGMMA in the step loop
// without serializing it (each wait retires one group, not every wgmma), and the dQ writer (_w)
// issues one UTMAREDG (tensor bulk reduction) per 32-column box, where the consumers issue no
// per-row bulk reduction (UBLKRED) and no atomics (RED).
TEST(Sm90Sass, BackwardLeversKeepHgmmaInTheLoopAndReduceDqWithTma) {
  if (!have_cuobjdump()) GTEST_SKIP() << kNoCuobjdump;
  for (int d : {64, 128}) {
    KernelSpec spec;
    spec.head_dim = d;
    spec.direction = sigjit::Direction::backward_fused;
    spec.arch = sigjit::Arch::parse("sm_90a");
    sigjit::TileConfig config = sigjit::default_config(spec);
    sigjit::Sm90BwdTile& tile = config.get<sigjit::Sm90BwdTile>();
    tile.early_scores = true;
    tile.bulk_dq = false;
    tile.dq_writer = true;
    const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, config);
    const std::string sass = dump_sass(k.cubin, k.name);
    ASSERT_EQ(sass.find("[command failed]"), std::string::npos) << k.name << "\n" << sass.substr(0, 2000);
    const SassSummary s = summarize(sass);
    EXPECT_TRUE(s.hgmma_in_a_loop) << k.name;
    EXPECT_EQ(s.hmma, 0) << k.name;
    std::size_t tma_reductions = 0, row_reductions = 0, atomics = 0;
    for (std::size_t at = sass.find("UTMAREDG"); at != std::string::npos; at = sass.find("UTMAREDG", at + 1)) ++tma_reductions;
    for (std::size_t at = sass.find("UBLKRED"); at != std::string::npos; at = sass.find("UBLKRED", at + 1)) ++row_reductions;
    for (std::size_t at = sass.find(" RED."); at != std::string::npos; at = sass.find(" RED.", at + 1)) ++atomics;
    EXPECT_EQ(tma_reductions, static_cast<std::size_t>(d / 32)) << k.name;
    EXPECT_EQ(row_reductions, 0u) << k.name;
    EXPECT_EQ(atomics, 0u) << k.name;
    std::printf("%s: %d HGMMA, %zu UTMAREDG\n", k.name.c_str(), s.hgmma, tma_reductions);
  }
}

// The backward defaults' wgmma descriptors live in uniform registers (sm90/bwd.cuh, bwd_consume's
// step base): between the first and the last HGMMA at most one R2UR per four HGMMA. Rebuilt in
// vector registers, each descriptor took its own R2UR (50 for 32 HGMMA at hd 128, 30 at hd 64).
TEST(Sm90Sass, BackwardDefaultsKeepWgmmaDescriptorsInUniformRegisters) {
  if (!have_cuobjdump()) GTEST_SKIP() << kNoCuobjdump;
  for (int d : {64, 128}) {
    for (const sigjit::SeqBucket bucket : {sigjit::SeqBucket::up_to_2k, sigjit::SeqBucket::over_8k}) {  // _wp, then _w
      KernelSpec spec;
      spec.head_dim = d;
      spec.direction = sigjit::Direction::backward_fused;
      spec.bucket = bucket;
      spec.arch = sigjit::Arch::parse("sm_90a");
      const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, sigjit::default_config(spec));
      const std::string sass = dump_sass(k.cubin, k.name);
      ASSERT_EQ(sass.find("[command failed]"), std::string::npos) << k.name << "\n" << sass.substr(0, 2000);
      const std::size_t first = sass.find("HGMMA."), last = sass.rfind("HGMMA.");
      ASSERT_NE(first, std::string::npos) << k.name;
      const std::string loop = sass.substr(first, last - first);
      const std::size_t hgmma = sigjit::test::occurrences(loop, "HGMMA.") + 1, r2ur = sigjit::test::occurrences(loop, "R2UR");
      EXPECT_LE(4 * r2ur, hgmma) << k.name << ": " << r2ur << " R2UR among " << hgmma << " HGMMA";
      std::printf("%s: %zu HGMMA, %zu R2UR between them\n", k.name.c_str(), hgmma, r2ur);
    }
  }
}

}  // namespace
