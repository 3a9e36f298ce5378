// The Hopper primitive test kernels (tests/gpu/test_hopper_primitives.cpp): their source and
// its NVRTC compile, shared with a CPU test so that CI catches a test kernel that no longer builds.
#pragma once

#include "tests/common/forced_compile.hpp"

#include <string>
#include <vector>

namespace sigjit::testing {

struct HopperShape {
  int kd;    // K of the SS GEMM (head dim)
  int ns;    // N of the SS GEMM (= keys of the RS GEMM)
  int dv;    // N of the RS GEMM (head dim of V)
};

using HopperTestBuild = TemplateBuild;

// grad_store_test's rows: values below kGradStoreLenK, zeros up to kGradStoreClearRows (a padded
// layout's rows past the keys), nothing after. 37 and 42 split quads' rows and warps' halves.
constexpr int kGradStoreLenK = 37;
constexpr int kGradStoreClearRows = 42;

// Compiles the three test entry points for one shape with the embedded templates.
HopperTestBuild compile_hopper_test_kernels(const HopperShape& shape);

// The shapes both tests cover (head dims 64/128/256, 64- and 128-key tiles).
std::vector<HopperShape> hopper_test_shapes();

}  // namespace sigjit::testing
