// A store written by an earlier build still serves: tests/golden/store_v2/ is a kernel store
// written by sigjit before the one-home-per-family layout (issue 19), with tuned entries of
// every kernel family and direction. The current build must find each entry under the problem
// key it computes today, accept it for the spec (config string parses, kernel name matches) and
// load its blob with the digest intact. The fingerprint is the tests' fixed one, so the check
// covers the store format, the keys and the names, not the templates' digest (which rotates the
// cache by design whenever a template changes).
//
// The fixture is regenerated only on a deliberate format or key change:
//   SIGJIT_WRITE_STORE_FIXTURE=1 build/tests/sigjit_cpu_tests --gtest_filter='StoreCompat.*'
#include "cache/store.hpp"
#include "kernels/registry.hpp"
#include "problem/spec.hpp"
#include "runtime/resolve.hpp"
#include "tests/common/cache_test_files.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace sigjit {
namespace {

namespace fs = std::filesystem;

struct FixtureEntry {
  KernelSpec spec;
  const char* config;
};

KernelSpec make(Direction dir, const char* arch, int hd, Layout layout, bool causal, bool top_left, bool score_bias, SeqBucket bucket) {
  KernelSpec s;
  s.direction = dir;
  s.arch = Arch::parse(arch);
  s.head_dim = hd;
  s.layout = layout;
  s.causal = causal;
  s.causal_align = top_left ? CausalAlign::top_left : CausalAlign::bottom_right;
  s.score_bias = score_bias;
  s.bucket = bucket;
  return s;
}

// Every family and direction, defaults and tuner variants, with and without the suffixes.
std::vector<FixtureEntry> fixture_entries() {
  using D = Direction;
  return {
      {make(D::forward, "sm_90a", 128, Layout::dense, false, false, false, SeqBucket::over_8k), "h128x128c2s3o"},
      {make(D::forward, "sm_90a", 64, Layout::varlen, true, false, false, SeqBucket::up_to_2k), "h192x128c3s2_p"},
      {make(D::forward, "sm_90a", 128, Layout::padded, true, true, true, SeqBucket::up_to_8k), "h128x96c2s3o_pp_f1"},
      {make(D::forward, "sm_80", 128, Layout::dense, false, false, false, SeqBucket::over_8k), "m128n32w4s2qs"},
      {make(D::forward, "sm_80", 64, Layout::padded, true, false, true, SeqBucket::up_to_512), "m128n64w4s3"},
      {make(D::backward_fused, "sm_90a", 128, Layout::varlen, true, false, false, SeqBucket::over_8k), "hb128x64c2s2o_r"},
      {make(D::backward_fused, "sm_90a", 64, Layout::dense, false, false, false, SeqBucket::up_to_2k), "hb128x128c2s2"},
      {make(D::backward_fused, "sm_80", 128, Layout::dense, true, true, false, SeqBucket::over_8k), "m128n32w8s2qs"},
      {make(D::backward_dkdv, "sm_80", 64, Layout::padded, false, false, true, SeqBucket::up_to_8k), "m64n64w4s2qs"},
      {make(D::backward_dq, "sm_80", 128, Layout::varlen, false, false, false, SeqBucket::up_to_2k), "m64n32w4s2qs"},
      {dq_convert_spec(make(D::backward_fused, "sm_90a", 128, Layout::dense, false, false, false, SeqBucket::over_8k)), "m64n64w4s2qs"},
  };
}

const fs::path kFixture = fs::path(SIGJIT_GOLDEN_DIR) / "store_v2";

std::vector<char> fake_cubin(const std::string& kernel_name) {
  const std::string text = "not a cubin: the stored bytes of " + kernel_name;
  return {text.begin(), text.end()};
}

void write_fixture() {
  fs::remove_all(kFixture);
  cache::Store store(kFixture);
  for (const auto& [spec, config_text] : fixture_entries()) {
    const TileConfig config = TileConfig::parse(config_text, "fixture");
    ASSERT_EQ(check_config(spec, config), "") << spec.describe() << " " << config_text;
    cache::Entry e;
    e.problem_key = problem_key(spec);
    e.spec = spec_to_json(spec);
    e.config = config.describe();
    e.kernel_name = kernel_name(spec, config);
    e.tuned = true;
    e.median_ms = 1.0;
    e.tflops = 100;
    e.tuned_shape = "B=1 L=4096 H=8";
    e.cubin_sha256 = store.put_blob(fake_cubin(e.kernel_name));
    store.put_entry(test::test_fp(), e);
  }
  fs::remove_all(kFixture / "locks");
  fs::remove_all(kFixture / "tmp");
}

TEST(StoreCompat, AStoreWrittenBeforeTheLayoutChangeStillServes) {
  if (const char* w = std::getenv("SIGJIT_WRITE_STORE_FIXTURE"); w && std::string(w) == "1") {
    write_fixture();
    GTEST_SKIP() << "wrote " << kFixture;
  }
  ASSERT_TRUE(fs::is_directory(kFixture / "index")) << kFixture << " is missing";
  // A copy: the store may create locks/ and tmp/ and must not write into the source tree.
  const fs::path root = fs::temp_directory_path() / ("sigjit-store-compat-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::copy(kFixture, root, fs::copy_options::recursive);
  cache::Store store(root);
  const auto entries = fixture_entries();
  EXPECT_EQ(store.list().size(), entries.size());
  for (const auto& [spec, config_text] : entries) {
    SCOPED_TRACE(spec.describe());
    const auto e = store.lookup(test::test_fp(), problem_key(spec));
    ASSERT_TRUE(e) << "no entry under today's problem key " << problem_key(spec);
    EXPECT_EQ(e->config, config_text);
    EXPECT_TRUE(detail::store_entry_usable(spec, *e))
        << e->config << " / " << e->kernel_name << " vs " << kernel_name(spec, TileConfig::parse(e->config, "entry"));
    const auto blob = store.load_blob(e->cubin_sha256);
    ASSERT_TRUE(blob);
    EXPECT_EQ(*blob, fake_cubin(kernel_name(spec, TileConfig::parse(e->config, "entry"))));
  }
  const cache::VerifyReport r = store.verify();
  EXPECT_TRUE(r.problems.empty()) << r.problems.front();
  EXPECT_EQ(r.entries_ok, static_cast<int>(entries.size()));
  fs::remove_all(root);
}

}  // namespace
}  // namespace sigjit
