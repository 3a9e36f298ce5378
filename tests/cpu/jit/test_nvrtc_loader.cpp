// NVRTC is dlopen'ed on the first compile (jit/nvrtc_api.cpp): the search order's explicit
// override, its error when that fails, the normal path, and that `sigjit info` runs without it.
#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "jit/compiler.hpp"
#include "tests/common/run_command.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using Result = sigjit::test::CommandResult;

Result run(const std::string& env, const std::string& args) {
  const std::string cmd = env + " " + SIGJIT_CLI_PATH + " " + args + " 2>&1";
  return sigjit::test::run_command(cmd);
}

const char* kCompile = "compile --head-dim 64 --dtype bf16 --layout dense --arch sm_80";

TEST(NvrtcLoader, CompilesThroughTheLoadedLibraryAndReportsItsPath) {
  sigjit::KernelSpec spec;
  spec.head_dim = 64;
  spec.arch = sigjit::Arch::parse("sm_80");
  const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, sigjit::default_config(spec));
  EXPECT_FALSE(k.cubin.empty());
  EXPECT_THAT(sigjit::nvrtc_library_path(), HasSubstr("libnvrtc"));
  EXPECT_THAT(sigjit::nvrtc_version(), ::testing::MatchesRegex("[0-9]+\\.[0-9]+"));
}

TEST(NvrtcLoader, ExplicitPathThatDoesNotLoadIsAnErrorNotAFallback) {
  const Result r = run("SIGJIT_NVRTC_LIBRARY=/nonexistent/libnvrtc.so.13", kCompile);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("cannot load NVRTC from SIGJIT_NVRTC_LIBRARY=/nonexistent/libnvrtc.so.13"));
  EXPECT_THAT(r.out, Not(HasSubstr("kernel ")));  // nothing compiled with another NVRTC
}

TEST(NvrtcLoader, ExplicitPathIsTheOneUsed) {
  const Result found = run("", kCompile);
  ASSERT_EQ(found.code, 0) << found.out;
  // "nvrtc     13.0 (/path/to/libnvrtc.so.13)"
  const auto open = found.out.find('(', found.out.find("nvrtc     "));
  ASSERT_NE(open, std::string::npos) << found.out;
  const std::string path = found.out.substr(open + 1, found.out.find(')', open) - open - 1);
  ASSERT_THAT(path, HasSubstr("libnvrtc"));
  const Result r = run("SIGJIT_NVRTC_LIBRARY='" + path + "'", kCompile);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("(" + path + ")"));
}

TEST(NvrtcLoader, InfoRunsWithoutNvrtcAndSaysWhy) {
  const Result r = run("SIGJIT_NVRTC_LIBRARY=/nonexistent/libnvrtc.so.13", "info");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("NVRTC     none: cannot load NVRTC"));
  EXPECT_THAT(r.out, ::testing::StartsWith("sigjit "));
}

}  // namespace
