// The sigjit command-line tool. Subcommands:
//   info     GPU, driver, NVRTC and library versions
//   compile  generate and compile one kernel without a GPU; print the resource report
#include "compiler/kernel_spec.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "runtime/device.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

struct CompileOptions {
  int head_dim = 128;
  std::string dtype = "bf16";
  std::string layout = "dense";
  bool causal = false;
  std::string bias = "log_n";
  bool score_bias = false;
  std::string sigmoid = "fast";
  std::string arch = "sm_90";
  std::string tile;  // mXnYwZsS
  std::string out_dir;
};

sigjit::TileConfig parse_tile(const std::string& text, const sigjit::KernelSpec& spec) {
  if (text.empty()) return sigjit::default_config(spec);
  return sigjit::TileConfig::parse(text, "--tile");
}

int run_compile(const CompileOptions& o) {
  sigjit::KernelSpec spec;
  spec.head_dim = o.head_dim;
  spec.dtype = o.dtype == "fp16" ? sigjit::DType::fp16 : sigjit::DType::bf16;
  spec.layout = o.layout == "padded" ? sigjit::Layout::padded : o.layout == "varlen" ? sigjit::Layout::varlen : sigjit::Layout::dense;
  spec.causal = o.causal;
  spec.bias_mode = o.bias == "scalar" ? sigjit::BiasMode::scalar : sigjit::BiasMode::log_n;
  spec.score_bias = o.score_bias;
  spec.sigmoid = o.sigmoid == "exact" ? sigjit::SigmoidMode::exact : sigjit::SigmoidMode::fast;
  spec.arch = sigjit::Arch::parse(o.arch);
  const auto& dims = sigjit::supported_head_dims();
  if (std::find(dims.begin(), dims.end(), spec.head_dim) == dims.end()) {
    throw sigjit::Error(fmt::format("--head-dim {}: unsupported; use one of {}", spec.head_dim, fmt::join(dims, ", ")));
  }
  const sigjit::TileConfig config = parse_tile(o.tile, spec);
  const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, config);
  if (!o.out_dir.empty()) {
    std::filesystem::create_directories(o.out_dir);
    const auto base = std::filesystem::path(o.out_dir) / k.name;
    std::ofstream(base.string() + ".cu") << k.source;
    std::ofstream(base.string() + ".ptx") << k.ptx;
    std::ofstream(base.string() + ".cubin", std::ios::binary).write(k.cubin.data(), static_cast<std::streamsize>(k.cubin.size()));
    fmt::print("wrote {}.{{cu,ptx,cubin}}\n", base.string());
  }
  fmt::print("kernel    {}\nspec      {}\nconfig    {}\nresources {}\ncompiled  in {:.2f} s ({} B cubin)\n", k.name, spec.describe(),
             config.describe(), k.resources.describe(), k.compile_seconds, k.cubin.size());
  return 0;
}

int run_info() {
  fmt::print("{}\n", sigjit::version());
  try {
    const auto dev = sigjit::detail::current_device();
    fmt::print("GPU       {} (compute capability {}.{}, {} SMs, {} B shared memory per block)\ndriver    CUDA {}.{}\ntarget    {}\n", dev.name,
               dev.cc_major, dev.cc_minor, dev.sm_count, dev.max_smem_per_block_optin, dev.driver_version / 1000, dev.driver_version % 1000 / 10,
               dev.arch().name());
  } catch (const sigjit::Error& e) {
    fmt::print("GPU       none: {}\n", e.what());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sigjit: JIT compiler and autotuner for sigmoid attention"};
  app.require_subcommand(1);
  auto* info = app.add_subcommand("info", "Show the GPU, driver and NVRTC that sigjit would use");
  CompileOptions co;
  auto* compile = app.add_subcommand("compile", "Generate and compile one kernel (no GPU needed); print registers, shared memory, spills");
  compile->add_option("--head-dim", co.head_dim, "Head dimension")->check(CLI::IsMember(std::vector<int>{32, 64, 96, 128, 256}));
  compile->add_option("--dtype", co.dtype, "bf16 or fp16")->check(CLI::IsMember({"bf16", "fp16"}));
  compile->add_option("--layout", co.layout, "dense, padded or varlen")->check(CLI::IsMember({"dense", "padded", "varlen"}));
  compile->add_flag("--causal", co.causal, "Causal masking");
  compile->add_option("--bias", co.bias, "log_n (default) or scalar")->check(CLI::IsMember({"log_n", "scalar"}));
  compile->add_flag("--score-bias", co.score_bias, "Per-key score bias");
  compile->add_option("--sigmoid", co.sigmoid, "fast or exact")->check(CLI::IsMember({"fast", "exact"}));
  compile->add_option("--arch", co.arch, "Target, e.g. sm_80, sm_90, sm_90a");
  compile->add_option("--tile", co.tile, "Tile config mBMnBNwWARPSsSTAGES (default: the heuristic)");
  compile->add_option("--out", co.out_dir, "Directory for the .cu, .ptx and .cubin");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*info) return run_info();
    if (*compile) return run_compile(co);
  } catch (const sigjit::Error& e) {
    std::fprintf(stderr, "sigjit: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
