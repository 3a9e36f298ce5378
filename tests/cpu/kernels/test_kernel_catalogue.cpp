// The kernel catalogue: for every spec the code generator distinguishes (every arch family,
// direction, dtype, head dim, layout, causal diagonal, bias, score bias, sigmoid and length
// bucket), its problem key, default config, every tuner candidate's config string, kernel name,
// shared-memory size and generated source, and the NVRTC options, hashed per (arch, direction,
// head dim) group and compared with tests/golden/kernel_catalogue.txt. FP8 (the Hopper forward and
// its on-the-fly quantization) has groups of its own.
//
// Why: kernel names, config strings and problem keys are cache keys (a cache written by one build
// must serve the next), and the generated source with the options and templates is the binary.
// A refactoring of the host side must leave all of them byte-identical; this test shows it did,
// without compiling 10^6 kernels. A deliberate change regenerates the golden:
//   SIGJIT_UPDATE_GOLDEN=1 build/tests/sigjit_cpu_tests --gtest_filter='KernelCatalogue.*'
// and SIGJIT_CATALOGUE_DUMP=file writes the full listing (one line per spec and candidate) to diff
// two builds when a group's hash moves.
#include "jit/codegen.hpp"
#include "jit/compiler.hpp"
#include "kernels/registry.hpp"
#include "problem/spec.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <sstream>

namespace sigjit {
namespace {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void add(const std::string& s) {
    EVP_DigestUpdate(ctx_.get(), s.data(), s.size());
    EVP_DigestUpdate(ctx_.get(), "\n", 1);
  }
  std::string hex() {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(ctx_.get(), d, &n);
    std::string out;
    for (unsigned i = 0; i < n; ++i) out += fmt::format("{:02x}", d[i]);
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

std::vector<KernelSpec> group_specs(const Arch& arch, Direction dir, int head_dim, std::initializer_list<DType> dtypes) {
  std::vector<KernelSpec> out;
  for (auto dtype : dtypes)
    for (auto layout : {Layout::dense, Layout::padded, Layout::varlen})
      for (int causal : {0, 1, 2})  // none, bottom-right, top-left
        for (auto bias : {BiasMode::log_n, BiasMode::scalar})
          for (bool score_bias : {false, true})
            for (auto sig : {SigmoidMode::fast, SigmoidMode::exact})
              for (auto bucket : {SeqBucket::up_to_512, SeqBucket::up_to_2k, SeqBucket::up_to_8k, SeqBucket::over_8k}) {
                KernelSpec s;
                s.direction = dir;
                s.dtype = dtype;
                s.head_dim = head_dim;
                s.layout = layout;
                s.causal = causal != 0;
                s.causal_align = causal == 2 ? CausalAlign::top_left : CausalAlign::bottom_right;
                s.bias_mode = bias;
                s.score_bias = score_bias;
                s.sigmoid = sig;
                s.bucket = bucket;
                s.arch = arch;
                out.push_back(s);
              }
  return out;
}

// The FP8 forward's specs where a family serves them (the Hopper forward only), and the
// quantization kernels its on-the-fly option loads: one per layout, whatever else the spec says.
std::vector<KernelSpec> fp8_group_specs(const Arch& arch, Direction dir, int head_dim) {
  std::vector<KernelSpec> out;
  for (const KernelSpec& s : group_specs(arch, Direction::forward, head_dim, {DType::fp8_e4m3})) {
    if (!unserved_reason(s).empty()) continue;
    if (dir == Direction::forward) {
      out.push_back(s);
      continue;
    }
    const KernelSpec q = fp8_quantize_spec(s);
    if (std::none_of(out.begin(), out.end(), [&](const KernelSpec& o) { return problem_key(o) == problem_key(q); })) out.push_back(q);
  }
  return out;
}

// One line per spec, then one per candidate: everything that names or makes a binary.
void list_specs(const std::vector<KernelSpec>& specs, std::ostream& out) {
  for (const KernelSpec& s : specs) {
    const TileConfig def = default_config(s);
    out << fmt::format("spec {} | {} | default {} {} | options {}\n", problem_key(s), s.describe(), def.describe(), kernel_name(s, def),
                       fmt::join(compile_options(s), " "));
    for (const TileConfig& c : candidate_configs(s)) {
      out << fmt::format("  cand {} {} smem={} check='{}'\n", c.describe(), kernel_name(s, c), smem_bytes(s, c), check_config(s, c));
      out << emit_source(s, c);
    }
  }
}

const char* const kArchs[] = {"sm_80", "sm_86", "sm_90", "sm_90a"};

void add_group(const std::string& group, const std::vector<KernelSpec>& specs, std::map<std::string, std::string>& hashes,
               std::ostream* dump) {
  std::ostringstream text;
  list_specs(specs, text);
  Sha256 h;
  h.add(text.str());
  hashes[group] = h.hex();
  if (dump) *dump << text.str();
}

std::map<std::string, std::string> catalogue_hashes(std::ostream* dump) {
  std::map<std::string, std::string> hashes;
  for (const char* arch : kArchs)
    for (Direction dir :
         {Direction::forward, Direction::backward_dkdv, Direction::backward_dq, Direction::backward_fused, Direction::backward_dq_convert})
      for (int d : supported_head_dims())
        add_group(fmt::format("{} {} d{}", arch, direction_tag(dir), d), group_specs(Arch::parse(arch), dir, d, {DType::bf16, DType::fp16}),
                  hashes, dump);
  // FP8 in groups of its own, so that adding it left the 16-bit groups' hashes as they were.
  for (const char* arch : kArchs)
    for (Direction dir : {Direction::forward, Direction::fp8_quantize})
      for (int d : supported_head_dims()) {
        const auto specs = fp8_group_specs(Arch::parse(arch), dir, d);
        if (!specs.empty()) add_group(fmt::format("{} {} fp8 d{}", arch, direction_tag(dir), d), specs, hashes, dump);
      }
  return hashes;
}

const std::string kGolden = std::string(SIGJIT_GOLDEN_DIR) + "/kernel_catalogue.txt";

TEST(KernelCatalogue, NamesConfigsAndSourcesMatchTheGolden) {
  std::unique_ptr<std::ofstream> dump;
  if (const char* path = std::getenv("SIGJIT_CATALOGUE_DUMP")) dump = std::make_unique<std::ofstream>(path);
  const auto hashes = catalogue_hashes(dump.get());
  // The 16-bit groups, then the FP8 forward and its quantization at head dims 64 and 128 on sm_90a.
  ASSERT_EQ(hashes.size(), 4u * 5u * supported_head_dims().size() + 2u * 2u);

  if (const char* update = std::getenv("SIGJIT_UPDATE_GOLDEN"); update && std::string(update) == "1") {
    std::ofstream out(kGolden);
    out << "# SHA-256 of the kernel catalogue per (arch, direction, head dim); see tests/cpu/kernels/test_kernel_catalogue.cpp\n";
    for (const auto& [group, hash] : hashes) out << group << " " << hash << "\n";
    GTEST_SKIP() << "wrote " << kGolden;
  }
  std::ifstream in(kGolden);
  ASSERT_TRUE(in) << kGolden << " is missing";
  std::map<std::string, std::string> golden;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto cut = line.rfind(' ');
    golden[line.substr(0, cut)] = line.substr(cut + 1);
  }
  EXPECT_EQ(golden.size(), hashes.size());
  for (const auto& [group, hash] : hashes) {
    EXPECT_EQ(golden[group], hash) << group << ": a kernel name, config string, problem key, default, candidate, shared-memory size or "
                                   << "generated source changed; diff SIGJIT_CATALOGUE_DUMP listings of the two builds";
  }
}

}  // namespace
}  // namespace sigjit
