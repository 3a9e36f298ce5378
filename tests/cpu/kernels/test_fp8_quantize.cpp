// The FP8 forward's on-the-fly quantization kernels (templates/sigjit/common/quantize_fp8.cuh,
// ForwardOptions::fp8) without a GPU: the module compiles under NVRTC for every layout and head
// dim the FP8 forward serves, with both entries (the amax pass and the quantization), the host's
// parameter block size, no spills, and the saturating e4m3 conversion; its spec has one config,
// which is never tuned nor forced, and an arch without e4m3 conversions is refused by name.
#include "jit/compiler.hpp"
#include "kernels/registry.hpp"
#include "problem/names.hpp"
#include "problem/spec.hpp"
#include "sigjit/common/params.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

namespace {

using sigjit::Direction;
using sigjit::KernelSpec;
using ::testing::HasSubstr;

KernelSpec quantize_spec(sigjit::Layout layout, int head_dim, const char* arch = "sm_90a") {
  KernelSpec s;
  s.direction = Direction::fp8_quantize;
  s.dtype = sigjit::DType::bf16;
  s.layout = layout;
  s.head_dim = head_dim;
  s.arch = sigjit::Arch::parse(arch);
  return s;
}

TEST(Fp8Quantize, CompilesBothEntriesForEveryLayoutWithoutSpills) {
  for (const sigjit::Layout layout : {sigjit::Layout::dense, sigjit::Layout::padded, sigjit::Layout::varlen})
    for (const int head_dim : {64, 128}) {
      const KernelSpec spec = quantize_spec(layout, head_dim);
      const sigjit::TileConfig config = sigjit::default_config(spec);
      ASSERT_EQ(sigjit::check_config(spec, config), "");
      const std::string name = sigjit::kernel_name(spec, config);
      SCOPED_TRACE(name);
      const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, config);
      EXPECT_FALSE(k.cubin.empty());
      const std::string param = "_param_0[" + std::to_string(sizeof(SigjitQuantizeParams)) + "]";
      EXPECT_THAT(k.ptx, HasSubstr(".entry " + name + "("));
      EXPECT_THAT(k.ptx, HasSubstr(".entry " + name + "_amax("));
      EXPECT_THAT(k.ptx, HasSubstr(name + param));
      EXPECT_THAT(k.ptx, HasSubstr(name + "_amax" + param));
      EXPECT_THAT(k.ptx, HasSubstr("cvt.rn.satfinite.e4m3x2.f32"));
      EXPECT_THAT(k.ptx, HasSubstr("atom.global.max.u32"));
      EXPECT_FALSE(k.resources.has_spills()) << k.resources.describe();
    }
}

TEST(Fp8Quantize, OneConfigNeverTunedAndRefusedWithoutE4m3Conversions) {
  const KernelSpec spec = quantize_spec(sigjit::Layout::padded, 128);
  EXPECT_TRUE(sigjit::has_fixed_config(spec.direction));
  EXPECT_FALSE(sigjit::is_backward(spec.direction));
  EXPECT_EQ(sigjit::default_config(spec).describe(), sigjit::dq_convert_config().describe());
  EXPECT_THAT(sigjit::check_config(spec, sigjit::TileConfig(sigjit::Sm80Tile{128, 64, 4, 2, false})), HasSubstr("has one config"));
  EXPECT_THAT(sigjit::check_config(quantize_spec(sigjit::Layout::dense, 64, "sm_80"), sigjit::default_config(spec)),
              HasSubstr("sm_89 or newer"));
  EXPECT_EQ(sigjit::check_config(quantize_spec(sigjit::Layout::dense, 64, "sm_89"), sigjit::default_config(spec)), "");
  EXPECT_EQ(sigjit::second_entry_suffix(spec), "_amax");
  EXPECT_THAT(sigjit::kernel_name(spec, sigjit::default_config(spec)), ::testing::StartsWith("sigjit_fp8_quantize_"));
}

TEST(Fp8Quantize, SpecRoundTripsThroughJson) {
  const KernelSpec spec = quantize_spec(sigjit::Layout::varlen, 64);
  const KernelSpec back = sigjit::spec_from_json(sigjit::spec_to_json(spec));
  EXPECT_EQ(back.direction, Direction::fp8_quantize);
  EXPECT_EQ(sigjit::problem_key(back), sigjit::problem_key(spec));
  EXPECT_EQ(std::string(sigjit::direction_tag(Direction::fp8_quantize)), "fp8_quantize");
}

}  // namespace
