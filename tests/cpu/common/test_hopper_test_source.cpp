// The GPU-only Hopper primitive tests compile their kernels with NVRTC at run time; compiling
// them here keeps a broken test kernel from reaching the device (where it costs a GPU run).
#include "tests/common/hopper_test_source.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace sigjit::testing {
namespace {

TEST(HopperTestKernels, CompileForSm90aAtEveryShape) {
  for (const HopperShape& s : hopper_test_shapes()) {
    const HopperTestBuild build = compile_hopper_test_kernels(s);
    EXPECT_TRUE(build.ok) << fmt::format("kd={} ns={} dv={}:\n{}", s.kd, s.ns, s.dv, build.log);
    EXPECT_FALSE(build.cubin.empty());
  }
}

}  // namespace
}  // namespace sigjit::testing
