#include "jit/compiler.hpp"

#include "base/env.hpp"
#include "jit/codegen.hpp"
#include "jit/nvrtc_check.hpp"
#include "jit/templates.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>

namespace sigjit {

namespace {

struct ProgramDeleter {
  void operator()(nvrtcProgram* p) const {
    detail::nvrtc().nvrtcDestroyProgram(p);
    delete p;
  }
};
using ProgramPtr = std::unique_ptr<nvrtcProgram, ProgramDeleter>;

std::string program_log(nvrtcProgram prog) {
  const detail::NvrtcApi& api = detail::nvrtc();
  size_t size = 0;
  if (api.nvrtcGetProgramLogSize(prog, &size) != NVRTC_SUCCESS || size == 0) return {};
  std::string log(size, '\0');
  if (api.nvrtcGetProgramLog(prog, log.data()) != NVRTC_SUCCESS) return {};
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  return log;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) std::fprintf(stderr, "sigjit: SIGJIT_DUMP_DIR: could not write %s\n", path.c_str());
}

void dump(const CompiledKernel& k) {
  const std::optional<std::string> dir = env::text("SIGJIT_DUMP_DIR");
  if (!dir) return;
  std::error_code ec;
  std::filesystem::create_directories(*dir, ec);
  const std::filesystem::path base = std::filesystem::path(*dir) / k.name;
  write_file(base.string() + ".cu", k.source);
  write_file(base.string() + ".ptx", k.ptx);
  write_file(base.string() + ".log", fmt::format("options: {}\n{}\n", fmt::join(k.options, " "), k.log));
}

int match_int(const std::string& text, const std::regex& re) {
  std::smatch m;
  return std::regex_search(text, m, re) ? std::stoi(m[1]) : 0;
}

}  // namespace

std::string ResourceUsage::describe() const {
  return fmt::format("{} registers, {} B stack, {} B spill stores, {} B spill loads, {} B static + {} B dynamic shared", registers,
                     stack_bytes, spill_store_bytes, spill_load_bytes, shared_static_bytes, shared_dynamic_bytes);
}

std::vector<std::string> compile_options(const KernelSpec& spec) {
  std::vector<std::string> opts{"--gpu-architecture=" + spec.arch.name(), "--std=c++17", "--ptxas-options=-v", "-DNDEBUG"};
  if (env::flag("SIGJIT_LINEINFO")) opts.push_back("-lineinfo");
  if (env::text("SIGJIT_TRACE_TILES")) opts.push_back("-DSIGJIT_TRACE_TILES=1");
  return opts;
}

ResourceUsage parse_ptxas_report(const std::string& log, const std::string& kernel_name) {
  ResourceUsage r;
  // The report for an entry starts at "Compiling entry function '<name>'" (or "Function
  // properties for <name>"), and runs until the next entry.
  // The name must end where the line does: "k_sm_90" is a prefix of "k_sm_90a".
  const std::string header = "Function properties for " + kernel_name;
  size_t start = log.find(header);
  while (start != std::string::npos && start + header.size() < log.size() && log[start + header.size()] != '\n' &&
         log[start + header.size()] != '\r') {
    start = log.find(header, start + 1);
  }
  if (start == std::string::npos) return r;
  const size_t next = log.find("Compiling entry function", start);
  const std::string section = log.substr(start, next == std::string::npos ? std::string::npos : next - start);
  r.stack_bytes = match_int(section, std::regex(R"((\d+) bytes stack frame)"));
  r.spill_store_bytes = match_int(section, std::regex(R"((\d+) bytes spill stores)"));
  r.spill_load_bytes = match_int(section, std::regex(R"((\d+) bytes spill loads)"));
  std::smatch m;
  if (std::regex_search(section, m, std::regex(R"(Used (\d+) registers)"))) r.registers = std::stoi(m[1]);
  r.shared_static_bytes = match_int(section, std::regex(R"((\d+) bytes smem)"));
  return r;
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  SIGJIT_CHECK_NVRTC(detail::nvrtc().nvrtcVersion(&major, &minor));
  return fmt::format("{}.{}", major, minor);
}

namespace {

// At most max_parallel_compiles() NVRTC compiles at once in this process: a training job's
// threads, or the tuner's parallel compiles, never oversubscribe the host (each compile takes a
// core and hundreds of MB).
std::mutex gate_mutex;
std::condition_variable gate_cv;
int gate_in_use = 0;
int gate_peak = 0;

class CompileGate {
 public:
  CompileGate() {
    const int limit = max_parallel_compiles();
    std::unique_lock<std::mutex> lock(gate_mutex);
    gate_cv.wait(lock, [&] { return gate_in_use < limit; });
    gate_peak = std::max(gate_peak, ++gate_in_use);
  }
  ~CompileGate() {
    {
      std::lock_guard<std::mutex> lock(gate_mutex);
      --gate_in_use;
    }
    gate_cv.notify_one();
  }
  CompileGate(const CompileGate&) = delete;
  CompileGate& operator=(const CompileGate&) = delete;
};

}  // namespace

int peak_parallel_compiles() {
  std::lock_guard<std::mutex> lock(gate_mutex);
  return gate_peak;
}

int max_parallel_compiles() {
  static const int n = [] {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const std::optional<std::string> v = env::text("SIGJIT_MAX_PARALLEL_COMPILES");
    if (!v) return static_cast<int>(cores);
    const std::optional<long long> x = env::parse_int(*v, 1, 4096);
    if (!x) {
      std::fprintf(stderr, "sigjit: SIGJIT_MAX_PARALLEL_COMPILES=%s is not a number 1..4096; using %u (the cores)\n", v->c_str(), cores);
      return static_cast<int>(cores);
    }
    return static_cast<int>(*x);
  }();
  return n;
}

CompiledKernel compile_kernel(const KernelSpec& spec, const TileConfig& config) {
  if (const std::string why = check_config(spec, config); !why.empty()) {
    throw Error(fmt::format("tile config {} is invalid for {}: {}", config.describe(), spec.describe(), why));
  }
  const auto t0 = std::chrono::steady_clock::now();
  CompiledKernel k;
  k.name = kernel_name(spec, config);
  k.source = emit_source(spec, config);
  k.options = compile_options(spec);

  const std::vector<TemplateFile> files = template_files();
  std::vector<const char*> header_texts, header_names;
  for (const auto& f : files) {
    header_texts.push_back(f.text.c_str());
    header_names.push_back(f.include_name.c_str());
  }
  const detail::NvrtcApi& api = detail::nvrtc();  // throws, naming every place tried, without NVRTC
  ProgramPtr prog(new nvrtcProgram{});
  SIGJIT_CHECK_NVRTC(api.nvrtcCreateProgram(prog.get(), k.source.c_str(), (k.name + ".cu").c_str(), static_cast<int>(files.size()),
                                            header_texts.data(), header_names.data()));
  std::vector<const char*> opts;
  for (const auto& o : k.options) opts.push_back(o.c_str());
  nvrtcResult status;
  {
    const CompileGate gate;  // SIGJIT_MAX_PARALLEL_COMPILES
    status = api.nvrtcCompileProgram(*prog, static_cast<int>(opts.size()), opts.data());
  }
  k.log = program_log(*prog);
  if (status != NVRTC_SUCCESS) {
    dump(k);
    throw Error(fmt::format("NVRTC failed to compile {} ({}; {}): {}\n{}\nSet SIGJIT_DUMP_DIR to keep the generated source.", k.name,
                            spec.describe(), config.describe(), api.nvrtcGetErrorString(status), k.log),
                ErrorKind::compile);
  }
  size_t size = 0;
  SIGJIT_CHECK_NVRTC(api.nvrtcGetCUBINSize(*prog, &size));
  k.cubin.resize(size);
  SIGJIT_CHECK_NVRTC(api.nvrtcGetCUBIN(*prog, k.cubin.data()));
  SIGJIT_CHECK_NVRTC(api.nvrtcGetPTXSize(*prog, &size));
  k.ptx.assign(size, '\0');
  SIGJIT_CHECK_NVRTC(api.nvrtcGetPTX(*prog, k.ptx.data()));
  if (!k.ptx.empty() && k.ptx.back() == '\0') k.ptx.pop_back();

  k.resources = parse_ptxas_report(k.log, k.name);
  k.resources.shared_dynamic_bytes = smem_bytes(spec, config);
  k.compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  dump(k);
  if (env::flag("SIGJIT_VERBOSE_COMPILE")) {
    std::fprintf(stderr, "sigjit: compiled %s in %.2f s: %s\n", k.name.c_str(), k.compile_seconds, k.resources.describe().c_str());
  }
  if (k.resources.has_spills() && env::flag("SIGJIT_FAIL_ON_SPILLS")) {
    throw Error(fmt::format("{} spills registers ({}); SIGJIT_FAIL_ON_SPILLS is set. Pick a smaller tile config.", k.name,
                            k.resources.describe()), ErrorKind::compile);
  }
  return k;
}

}  // namespace sigjit
