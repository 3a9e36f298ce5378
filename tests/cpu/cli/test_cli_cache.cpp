// `sigjit` cache commands end to end on a machine without a GPU: list, show, export, import,
// verify, prune, gc and their error paths, against a store populated through the library.
#include "cache/store.hpp"
#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "tests/common/run_command.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sigjit::cache::DeviceFingerprint;
using sigjit::cache::Entry;
using sigjit::cache::Store;
using ::testing::HasSubstr;

using Result = sigjit::test::CommandResult;

Result sigjit_cli(const fs::path& cache, const std::string& args) {
  const std::string cmd = "SIGJIT_CACHE_DIR='" + cache.string() + "' " + SIGJIT_CLI_PATH + " " + args + " 2>&1";
  return sigjit::test::run_command(cmd);
}

DeviceFingerprint fingerprint(const std::string& gpu) {
  DeviceFingerprint fp;
  fp.gpu_name = gpu;
  fp.cc_major = 9;
  fp.sm_count = 132;
  fp.driver_version = 13000;
  fp.nvrtc_version = "13.0";
  fp.codegen_version = 1;
  fp.compile_options = "--gpu-architecture=sm_90";
  return fp;
}

class CliCache : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("sigjit-cli-cache-" + std::to_string(std::random_device{}()));
    other_ = root_.string() + "-other";
    Store store(root_);
    for (int hd : {64, 128}) {
      sigjit::KernelSpec spec;
      spec.head_dim = hd;
      spec.arch = sigjit::Arch::parse("sm_90");
      Entry e;
      e.problem_key = sigjit::problem_key(spec);
      e.spec = sigjit::spec_to_json(spec);
      e.config = "m128n64w4s2";
      e.kernel_name = sigjit::kernel_name(spec, sigjit::TileConfig(sigjit::Sm80Tile{128, 64, 4, 2}));
      e.tuned = true;
      e.median_ms = hd / 10.0;
      e.tflops = 300;
      const std::vector<char> cubin(1000 + hd, static_cast<char>(hd));
      e.cubin_sha256 = store.put_blob(cubin);
      e.provenance.push_back({"host-a", "2026-11-23T00:00:00Z", "0.1.0"});
      store.put_entry(fingerprint("NVIDIA H100 80GB HBM3"), e);
      keys_.push_back(e.problem_key);
    }
  }
  void TearDown() override {
    fs::remove_all(root_);
    fs::remove_all(other_);
  }
  fs::path root_, other_;
  std::vector<std::string> keys_;
};

TEST_F(CliCache, ListShowsEveryEntryAsTableAndJson) {
  Result r = sigjit_cli(root_, "list");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const auto& k : keys_) EXPECT_THAT(r.out, HasSubstr(k));
  r = sigjit_cli(root_, "list --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["entry"]["config"], "m128n64w4s2");
  r = sigjit_cli(root_, "list d128");
  EXPECT_THAT(r.out, HasSubstr(keys_[1]));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr(keys_[0])));
}

TEST_F(CliCache, ShowPrintsAllFieldsAndFailsOnNoMatch) {
  Result r = sigjit_cli(root_, "show d64");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("host-a"));
  EXPECT_THAT(r.out, HasSubstr("cubin_sha256"));
  r = sigjit_cli(root_, "show no_such_problem");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("no entries matching 'no_such_problem'"));
}

TEST_F(CliCache, ExportImportRoundTripAndForeignGuard) {
  const fs::path bundle = root_ / "bundle.sjb";
  Result r = sigjit_cli(root_, "export " + bundle.string());
  EXPECT_EQ(r.code, 1) << "without a GPU the local entries cannot be told apart";
  EXPECT_THAT(r.out, HasSubstr("--all-devices"));
  r = sigjit_cli(root_, "export " + bundle.string() + " --all-devices");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("exported 2 entries"));
  r = sigjit_cli(other_, "import " + bundle.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--allow-foreign"));
  r = sigjit_cli(other_, "import " + bundle.string() + " --allow-foreign");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("added 2"));
  r = sigjit_cli(other_, "import " + bundle.string() + " --allow-foreign");
  EXPECT_THAT(r.out, HasSubstr("added 0"));
  EXPECT_EQ(Store(other_).list().size(), 2u);
  EXPECT_EQ(sigjit_cli(other_, "verify").code, 0);
}

TEST_F(CliCache, ImportRejectsACorruptBundle) {
  const fs::path bundle = root_ / "bundle.sjb";
  ASSERT_EQ(sigjit_cli(root_, "export " + bundle.string() + " --all-devices").code, 0);
  {
    std::fstream f(bundle, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(bundle) / 2));
    f.put('\x5a');
  }
  const Result r = sigjit_cli(other_, "import " + bundle.string() + " --allow-foreign");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("sigjit: error:"));
  EXPECT_TRUE(Store(other_).list().empty());
  const Result missing = sigjit_cli(other_, "import /nonexistent/bundle.sjb");
  EXPECT_NE(missing.code, 0);
  EXPECT_THAT(missing.out, HasSubstr("/nonexistent/bundle.sjb"));
}

TEST_F(CliCache, ImportSaysWhyItReplaced) {  // F17
  // The bundle holds two tuned entries (6.4 ms and 12.8 ms). The importing store has an untuned
  // default of the first (no time: a tuned entry displaces it, but is not faster) and a slower
  // imported claim of the second (20 ms: the bundle's entry is faster).
  const fs::path bundle = root_ / "bundle.sjb";
  ASSERT_EQ(sigjit_cli(root_, "export " + bundle.string() + " --all-devices").code, 0);
  const DeviceFingerprint fp = fingerprint("NVIDIA H100 80GB HBM3");
  const Entry theirs_untuned_target = *Store(root_).lookup(fp, keys_[0]);
  const Entry theirs_faster = *Store(root_).lookup(fp, keys_[1]);
  auto prepare = [&](const fs::path& dir) {
    Store s(dir);
    Entry untuned = theirs_untuned_target;
    untuned.tuned = false;
    untuned.median_ms = 0;
    untuned.tflops = 0;
    untuned.cubin_sha256 = s.put_blob(std::vector<char>(64, 'u'));
    s.put_entry(fp, untuned);
    Entry slower = theirs_faster;
    slower.median_ms = 20.0;
    slower.origin = sigjit::cache::kOriginImported;
    slower.cubin_sha256 = s.put_blob(std::vector<char>(64, 's'));
    s.put_entry(fp, slower);
  };
  prepare(other_);
  const Result r = sigjit_cli(other_, "import " + bundle.string() + " --allow-foreign");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("replaced 2 (1 faster, 1 tuned over our untuned default)")) << r.out;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("replaced 2 (faster)")));
  EXPECT_TRUE(Store(other_).lookup(fp, keys_[0])->tuned);
  EXPECT_EQ(Store(other_).lookup(fp, keys_[1])->median_ms, theirs_faster.median_ms);

  // The library's report, with the third reason: the slower claim's cubin is gone, so the bundle's
  // entry replaces it for that reason, not for its time.
  const fs::path lib = other_.string() + "-lib";
  prepare(lib);
  const std::string sha = Store(lib).lookup(fp, keys_[1])->cubin_sha256;
  ASSERT_TRUE(fs::remove(lib / "blobs" / sha.substr(0, 2) / (sha + ".cubin")));
  const auto rep = Store(lib).import_bundle(bundle, nullptr, true);
  fs::remove_all(lib);
  EXPECT_EQ(rep.added, 0);
  EXPECT_EQ(rep.replaced, 2);
  EXPECT_EQ(rep.replaced_faster, 0);
  EXPECT_EQ(rep.replaced_untuned, 1);
  EXPECT_EQ(rep.replaced_cubin_missing, 1);
}

TEST_F(CliCache, VerifyReportsAFlippedBlobByte) {
  EXPECT_EQ(sigjit_cli(root_, "verify").code, 0);
  for (const auto& f : fs::recursive_directory_iterator(root_ / "blobs")) {
    if (!f.is_regular_file()) continue;
    std::fstream s(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    s.seekp(10);
    s.put('\x01');
    break;
  }
  const Result r = sigjit_cli(root_, "verify");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("problem:"));
}

TEST_F(CliCache, PruneAndGc) {
  Result r = sigjit_cli(root_, "prune d64");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("removed 1 entries"));
  EXPECT_EQ(Store(root_).list().size(), 1u);
  const fs::path stale = root_ / "tmp" / "fwd_x.json.4242.0123456789abcdef.tmp";  // a dead writer's temp file
  std::ofstream(stale) << "partial";
  fs::last_write_time(stale, fs::file_time_type::clock::now() - std::chrono::hours(2));
  r = sigjit_cli(root_, "gc");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("removed 1 temp files"));
  EXPECT_FALSE(fs::exists(stale));
  r = sigjit_cli(root_, "gc --foreign");
  EXPECT_EQ(r.code, 1) << "no GPU: foreign entries cannot be identified";
}

TEST_F(CliCache, TuneWithoutGpuCompilesAndReportsInsteadOfCrashing) {
  const Result r = sigjit_cli(root_, "tune --head-dim 32 --seq 512 --layout dense");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("no GPU"));
  EXPECT_THAT(r.out, HasSubstr("registers"));
}

TEST_F(CliCache, TuneFlagErrorsNameTheFlag) {
  Result r = sigjit_cli(root_, "tune --head-dim 100 --seq 512");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--head-dim"));
  r = sigjit_cli(root_, "tune --layout ragged");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--layout"));
  r = sigjit_cli(root_, "tune --seq 4096..512");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--seq"));
  r = sigjit_cli(root_, "tune --preset nosuch");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("single-cell"));
  r = sigjit_cli(root_, "tune --workload /nonexistent.json");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("/nonexistent.json"));
}

TEST_F(CliCache, InfoShowsTheCacheLocationAndSize) {
  const Result r = sigjit_cli(root_, "info");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr(root_.string()));
  EXPECT_THAT(r.out, HasSubstr("2 entries"));
}

// ---- destructive edge cases and hostile contents (findings F4, F5, F6, F14, F16, F17) --------------

TEST_F(CliCache, ExportRefusesASymlinkAndWritesToStdoutForDash) {  // F5
  const fs::path target = root_.string() + "-target.txt", link = root_.string() + "-link.sjb";
  std::ofstream(target) << "original";
  fs::create_symlink(target, link);
  Result r = sigjit_cli(root_, "export " + link.string() + " --all-devices");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("symbolic link"));
  EXPECT_THAT(r.out, HasSubstr("- to write the bundle to stdout"));
  EXPECT_EQ(fs::symlink_status(link).type(), fs::file_type::symlink);
  std::ifstream in(target);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "original");
  fs::remove(link);
  fs::remove(target);

  const fs::path piped = other_.string() + ".sjb";
  {  // stdout into the file, stderr (the summary) into the pipe
    const std::string cmd =
        "SIGJIT_CACHE_DIR='" + root_.string() + "' " + SIGJIT_CLI_PATH + " export - --all-devices 2>&1 >'" + piped.string() + "'";
    FILE* pipe = popen(cmd.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string err;
    char buf[512];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), pipe)) > 0;) err.append(buf, n);
    EXPECT_EQ(pclose(pipe), 0) << err;
    EXPECT_THAT(err, HasSubstr("exported 2 entries to stdout"));
  }
  r = sigjit_cli(other_, "import '" + piped.string() + "' --allow-foreign");
  fs::remove(piped);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("added 2"));

  r = sigjit_cli(root_, "export '' --all-devices");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("export: the bundle path is empty"));
  r = sigjit_cli(root_, "export /nonexistent-dir/b.sjb --all-devices");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("of the bundle's directory"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("of the cache")));
}

TEST_F(CliCache, PruneRefusesAnEmptyOrMatchEverythingPatternWithoutAll) {  // F6
  Result r = sigjit_cli(root_, "prune ''");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("empty pattern"));
  EXPECT_THAT(r.out, HasSubstr("--all"));
  r = sigjit_cli(root_, "prune fwd");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("match every entry"));
  r = sigjit_cli(root_, "prune");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--all"));
  EXPECT_EQ(Store(root_).list().size(), 2u);
  r = sigjit_cli(root_, "prune fwd --all");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("removed 2 entries"));
}

TEST_F(CliCache, PruneAllRemovesEveryEntry) {
  const Result r = sigjit_cli(root_, "prune --all");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("removed 2 entries"));
  EXPECT_TRUE(Store(root_).list().empty());
}

TEST_F(CliCache, GcAndPruneRefuseADirectoryThatIsNotACache) {  // F4 (c)
  const fs::path home = other_;
  fs::create_directories(home / "tmp");
  fs::create_directories(home / "index" / "project");
  std::ofstream(home / "tmp" / "download.iso") << "data";
  std::ofstream(home / "index" / "project" / "config.json") << "{\"a\":1}";
  fs::last_write_time(home / "tmp" / "download.iso", fs::file_time_type::clock::now() - std::chrono::hours(3));
  for (const char* verb : {"gc --temp-age 0", "prune config", "prune --all"}) {
    const Result r = sigjit_cli(home, verb);
    EXPECT_EQ(r.code, 1) << verb << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("not marked as a sigjit kernel cache")) << verb;
  }
  EXPECT_TRUE(fs::exists(home / "tmp" / "download.iso"));
  EXPECT_TRUE(fs::exists(home / "index" / "project" / "config.json"));
}

// Every path under `dir` (links not followed), or {"absent"}: what a command may not change.
std::vector<std::string> tree_of(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return {"absent"};
  std::vector<std::string> out;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) out.push_back(it->path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Readers and refused commands leave a missing or empty cache directory as they found it (no
// directories, no CACHEDIR.TAG, no lock files): only writers create the cache.
TEST_F(CliCache, ReadOnlyAndRefusedCommandsCreateNothing) {
  const fs::path bundle = root_.string() + "-bundle.sjb";
  ASSERT_EQ(sigjit_cli(root_, "export " + bundle.string() + " --all-devices").code, 0);
  const fs::path missing = other_ / "missing", empty = other_ / "empty", out = other_ / "out.sjb";
  fs::create_directories(empty);
  const std::vector<std::string> commands = {
      "list", "list --json", "show fwd", "show fwd --json", "verify", "info", "export - --all-devices",
      "export " + out.string() + " --all-devices", "export " + out.string(), "prune fwd", "prune --all", "prune", "prune ''", "gc",
      "gc --temp-age 0", "gc --foreign", "import --help", "import /nonexistent/b.sjb --allow-foreign", "import " + bundle.string(),
      "import /dev/null --allow-foreign"};
  for (const fs::path& dir : {missing, empty}) {
    const std::vector<std::string> before = tree_of(dir);
    for (const std::string& args : commands) {
      const Result r = sigjit_cli(dir, args);
      EXPECT_NE(r.code, -1) << args;
      EXPECT_EQ(tree_of(dir), before) << dir << ": sigjit " << args << " changed it: " << r.out;
    }
  }
  EXPECT_EQ(sigjit_cli(missing, "gc").out, "removed 0 temp files, 0 unreferenced blobs, 0 entries; freed 0.0 MB\n");
  EXPECT_EQ(sigjit_cli(empty, "prune --all").out, "removed 0 entries\n");
  // A writer creates the cache, marked as sigjit's.
  const Result r = sigjit_cli(missing, "import " + bundle.string() + " --allow-foreign");
  fs::remove(bundle);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("added 2"));
  EXPECT_TRUE(fs::is_regular_file(missing / Store::kMarkerName));
  EXPECT_EQ(Store(missing).list().size(), 2u);
}

TEST_F(CliCache, ListAndShowEscapeTerminalControlCharacters) {  // F14
  Store store(root_);
  Entry e = store.list().front().entry;
  e.problem_key = "fwd_evil";
  DeviceFingerprint fp = fingerprint("NVIDIA\x1b[2K\rEVIL\xc2\x9b");  // ESC, CR and the C1 control CSI (U+009B)
  fp.compile_options = "\x1b]0;PWNED\x07";
  store.put_entry(fp, e);
  for (const char* args : {"list", "list evil --json", "show evil", "show evil --json"}) {
    const Result r = sigjit_cli(root_, args);
    ASSERT_EQ(r.code, 0) << args << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("EVIL")) << args;
    for (char c : r.out) EXPECT_FALSE(c == '\x1b' || c == '\r' || c == '\x07') << args << ": raw control character " << int(c);
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("\xc2\x9b"))) << args;
  }
  EXPECT_THAT(sigjit_cli(root_, "list").out, HasSubstr("NVIDIA\\x1b[2K\\x0dEVIL\\xc2\\x9b"));
}

TEST_F(CliCache, MessagesNameTheArgument) {  // F16, F17
  Result r = sigjit_cli(root_, "frobnicate");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.out, HasSubstr("unknown subcommand 'frobnicate'"));
  EXPECT_THAT(r.out, HasSubstr("export"));
  r = sigjit_cli(root_, "import /dev/null");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("/dev/null is a character device"));
  const fs::path fifo = root_.string() + "-fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  r = sigjit_cli(root_, "import " + fifo.string() + " --allow-foreign");
  fs::remove(fifo);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("is a FIFO"));
  r = sigjit_cli(root_, "compile --head-dim '' --arch sm_80");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--head-dim: must be one of 32, 64, 96, 128, 256"));
  for (const char* v : {"-1", "nan", "0", "inf"}) {
    r = sigjit_cli(root_, std::string("tune --head-dim 64 --seq 512 --seconds-per-candidate ") + v);
    EXPECT_NE(r.code, 0) << v;
    EXPECT_THAT(r.out, HasSubstr("--seconds-per-candidate")) << v;
  }
  r = sigjit_cli(root_, "gc --temp-age nan");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--temp-age"));
}

// The offline commands default to what an H100/H200 runs (sm_90a), so `--dtype fp8` builds the
// FP8 forward there; anywhere no kernel serves FP8 they refuse by name instead of handing NVRTC a
// portable config it cannot build for e4m3.
TEST_F(CliCache, Fp8CompilesForHopperByDefaultAndIsRefusedElsewhere) {
  Result r = sigjit_cli(root_, "compile --dtype fp8 --head-dim 64 --layout varlen");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("fwd fp8 hd64 varlen"));
  EXPECT_THAT(r.out, HasSubstr("sm_90a"));
  EXPECT_THAT(r.out, HasSubstr("config    h"));  // the Hopper family's grammar
  r = sigjit_cli(root_, "compile --dtype fp8 --head-dim 128 --arch sm_90");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--dtype fp8: no kernel serves"));
  EXPECT_THAT(r.out, HasSubstr("arch sm_90a"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("NVRTC")));
  r = sigjit_cli(root_, "compile --dtype fp8 --head-dim 128 --tile m128n64w4s2");  // a portable tile: the family's own reason
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("has no FP8 kernel"));
  r = sigjit_cli(root_, "compile --dtype fp8 --head-dim 128 --direction bwd_fused");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("forward only"));
  r = sigjit_cli(root_, "tune --dtype fp8 --head-dim 64 --seq 4096 --direction bwd");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--dtype: no kernel serves bwd_fused fp8"));
}

TEST_F(CliCache, CompileOutIntoAFileSaysSo) {  // F16
  const fs::path file = root_.string() + "-file";
  std::ofstream(file) << "x";
  const Result r = sigjit_cli(root_, "compile --head-dim 64 --arch sm_80 --out " + file.string());
  fs::remove(file);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--out " + file.string()));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("internal error")));
}

}  // namespace
