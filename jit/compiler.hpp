// Run-time compilation of generated kernels with NVRTC, straight to a cubin for the target
// arch (no PTX JIT at load time). Cost: about a second per attention kernel; callers cache.
//
// Debug switches (environment):
//   SIGJIT_DUMP_DIR=dir      write <kernel>.cu, .ptx and .log (ptxas resource report) there
//   SIGJIT_VERBOSE_COMPILE=1 print each compile's spec, time and resource report to stderr
//   SIGJIT_FAIL_ON_SPILLS=1  treat register spills as a compile error
//   SIGJIT_LINEINFO=1        add -lineinfo (changes the binary, so it is part of compile_options)
//   SIGJIT_TRACE_TILES=path  define SIGJIT_TRACE_TILES: the kernels record a tile trace
//                            (common/params.h's SigjitTileTrace; also part of compile_options)
#pragma once

#include "jit/nvrtc_api.hpp"
#include "problem/spec.hpp"
#include "kernels/registry.hpp"

#include <string>
#include <vector>

namespace sigjit {

struct ResourceUsage {
  int registers = -1;
  int stack_bytes = 0;
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
  int shared_static_bytes = 0;
  int shared_dynamic_bytes = 0;  // what the launch must request
  bool has_spills() const { return spill_store_bytes > 0 || spill_load_bytes > 0; }
  std::string describe() const;
};

struct CompiledKernel {
  std::string name;
  std::string source;
  std::string ptx;
  std::vector<char> cubin;
  std::string log;
  std::vector<std::string> options;
  ResourceUsage resources;
  double compile_seconds = 0;
};

// Every option that shapes the binary; also what an on-disk cache key must include.
std::vector<std::string> compile_options(const KernelSpec& spec);

// Throws Error with NVRTC's full log when compilation fails (and, under
// SIGJIT_FAIL_ON_SPILLS, when ptxas reports spills).
CompiledKernel compile_kernel(const KernelSpec& spec, const TileConfig& config);

// NVRTC compiles run at once in this process: at most max_parallel_compiles()
// (SIGJIT_MAX_PARALLEL_COMPILES, default the cores); the most seen so far (tests).
int max_parallel_compiles();
int peak_parallel_compiles();

// Parses the ptxas -v report for one entry point.
ResourceUsage parse_ptxas_report(const std::string& log, const std::string& kernel_name);

// "major.minor" of the NVRTC library actually loaded (loads it: jit/nvrtc_api.hpp).
std::string nvrtc_version();

// "major.minor" of the NVRTC sigjit was built against (its headers), and the file NVRTC was
// loaded from ("" while it is not): neither loads anything (jit/nvrtc_api.hpp).
using detail::nvrtc_build_version;
using detail::nvrtc_library_path;

}  // namespace sigjit
