// The sigjit command-line tool: tune kernels on this GPU, inspect and ship the cache.
//   info       GPU, driver, NVRTC, cache location and size
//   compile    generate and compile one kernel without a GPU; print the resource report
//   tune       measure tile configs of a workload on this GPU, store the winners (no GPU: compile
//              every candidate and report resources)
//   list/show  cache entries (tables, or --json)
//   export     one bundle file with chosen entries and their cubins; import merges one
//   verify     re-check every digest (and, with --gpu, every local entry's output)
//   prune/gc   remove entries by key; remove temp files, unreferenced blobs, foreign entries
//   keygen, push, pull, stats, config, clear: the remote tier and cache management (cli/fleet.cpp)
// Errors: one line on stderr, exit code 1. Usage errors: exit code 2 (CLI11's own message).
#include "base/env.hpp"
#include "cache/signing.hpp"
#include "cache/store.hpp"
#include "cli/fleet.hpp"
#include "cli/progress.hpp"
#include "problem/names.hpp"
#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "jit/compiler.hpp"
#include "tune/fleet.hpp"
#include "tune/gpu.hpp"
#include "tune/verify.hpp"
#include "cuda/device.hpp"
#include "runtime/resolve.hpp"
#include "tune/tuner.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

namespace {

using sigjit::Error;
namespace cache = sigjit::cache;
namespace tuner = sigjit::tuner;

struct SpecOptions {
  int head_dim = 128;
  std::string dtype = "bf16";
  std::string layout = "dense";
  bool causal = false;
  std::string causal_align = "bottom-right";
  std::string bias = "log_n";
  bool score_bias = false;
  std::string sigmoid = "fast";
  std::string arch = "sm_90a";  // what an H100 or H200 compiles for (cuda/device.cpp)
  std::string direction = "fwd";
  std::string tile;
  std::string out_dir;
};

struct TuneFlags {
  std::string head_dims = "64,128", dtypes = "bf16", layouts = "dense", seqs = "512..16384", sigmoid = "fast", directions = "fwd",
              causal_align = "bottom-right";
  bool causal = false, directions_given = false;
  std::string lengths_file, workload_file, preset, strategy = "auto", arch;
  std::string shard;  // K/N: this node's part of the workload (tune/fleet.hpp: shard_specs)
  double seconds_per_candidate = 2.0;
};

std::vector<std::string> split(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const std::size_t next = s.find(sep, pos);
    out.push_back(s.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return out;
}

// Text from the cache or a bundle (GPU names, configs, messages) made safe for a terminal: control
// characters (C0, DEL, C1) and invalid UTF-8 become visible \xNN escapes, so an entry cannot
// clear the screen, retitle the window or forge table rows. Newlines and tabs stay when `keep_lines`.
std::string printable(std::string_view s, bool keep_lines = false) {
  std::string out;
  out.reserve(s.size());
  auto escape = [&](unsigned char c) { out += fmt::format("\\x{:02x}", c); };
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && !(keep_lines && (c == '\n' || c == '\t'))) || c == 0x7f)
        escape(c);
      else
        out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlongs or surrogates) other than a C1 control passes.
    const std::size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    bool ok = n != 0 && i + n <= s.size();
    for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok && n == 3) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
    }
    if (ok && n == 4) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
    }
    if (ok && n == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) ok = false;  // U+0080..U+009F
    if (!ok) {
      escape(c);
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

// A number of seconds: finite, and > 0 (or >= 0 with `zero_ok`). CLI11's own number checks let
// nan through.
CLI::Validator seconds_check(bool zero_ok) {
  return CLI::Validator(
      [zero_ok](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v) || v < 0 || (v == 0 && !zero_ok))
          return fmt::format("'{}' is not a number of seconds: expected a finite number {} 0", text, zero_ok ? ">=" : ">");
        return {};
      },
      zero_ok ? "SECONDS>=0" : "SECONDS>0");
}

// A file to read must be a regular file: a FIFO would block, a device or directory is no bundle.
void require_regular_file(const std::string& path, const char* verb) {
  struct stat st {};
  if (path.empty()) throw Error(fmt::format("{}: the file name is empty", verb));
  if (::stat(path.c_str(), &st) != 0) throw Error(fmt::format("{}: {}: {}", verb, printable(path), std::strerror(errno)));
  if (S_ISREG(st.st_mode)) return;
  const char* what = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO or pipe"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  throw Error(fmt::format("{}: {} is {}; give a bundle file (save a piped bundle to a file first)", verb, printable(path), what));
}

// JSON for a terminal or a pipe: every non-ASCII and control character escaped, invalid UTF-8
// replaced (a raw dump would pass escape sequences through, or throw on invalid UTF-8).
std::string safe_dump(const nlohmann::json& j) { return j.dump(2, ' ', true, nlohmann::json::error_handler_t::replace); }

int to_int(const std::string& text, const char* flag) {
  try {
    std::size_t used = 0;
    const int v = std::stoi(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(fmt::format("{}: '{}' is not an integer", flag, text));
}

// "64,128" or "512..16384" (powers of two from the first to the last).
std::vector<int> int_list(const std::string& text, const char* flag) {
  std::vector<int> out;
  for (const std::string& item : split(text)) {
    const std::size_t dots = item.find("..");
    if (dots == std::string::npos) {
      out.push_back(to_int(item, flag));
      continue;
    }
    const int lo = to_int(item.substr(0, dots), flag), hi = to_int(item.substr(dots + 2), flag);
    if (lo < 1 || hi < lo) throw Error(fmt::format("{}: range '{}' must be low..high with 1 <= low <= high", flag, item));
    for (long v = lo; v <= hi; v *= 2) out.push_back(static_cast<int>(v));
  }
  return out;
}

sigjit::KernelSpec spec_from_options(const SpecOptions& o) {
  using sigjit::parse_name;
  sigjit::KernelSpec spec;
  spec.head_dim = o.head_dim;
  spec.dtype = parse_name<sigjit::DType>("--dtype", o.dtype);
  spec.layout = parse_name<sigjit::Layout>("--layout", o.layout);
  spec.causal = o.causal;
  spec.causal_align = parse_name<sigjit::CausalAlign>("--causal-align", o.causal_align);
  if (spec.causal_align == sigjit::CausalAlign::top_left && !o.causal) {
    throw Error("--causal-align top-left: applies to causal kernels only; add --causal");
  }
  spec.bias_mode = parse_name<sigjit::BiasMode>("--bias", o.bias);
  spec.score_bias = o.score_bias;
  spec.sigmoid = parse_name<sigjit::SigmoidMode>("--sigmoid", o.sigmoid);
  spec.arch = sigjit::Arch::parse(o.arch);
  spec.direction = parse_name<sigjit::Direction>("--direction", o.direction);
  return spec;
}

// The names an option accepts (problem/names.hpp), with the CLI's hyphenated spellings too.
template <class E>
std::vector<std::string> option_names(bool hyphens = false) {
  std::vector<std::string> out = sigjit::names_of<E>();
  if (hyphens)
    for (const std::string& n : sigjit::names_of<E>())
      if (n.find('_') != std::string::npos) out.push_back(std::string(n).replace(n.find('_'), 1, "-"));
  return out;
}

int run_compile(const SpecOptions& o) {
  // CLI11 takes --head-dim '' as 0 without running the option's check.
  if (o.head_dim != 32 && o.head_dim != 64 && o.head_dim != 96 && o.head_dim != 128 && o.head_dim != 256)
    throw Error(fmt::format("--head-dim: must be one of 32, 64, 96, 128, 256 (got {})",
                            o.head_dim == 0 ? "an empty value or 0" : std::to_string(o.head_dim)));
  const sigjit::KernelSpec spec = spec_from_options(o);
  if (const std::string why = sigjit::unserved_reason(spec); !why.empty()) throw Error(fmt::format("--dtype {}: {}", o.dtype, why));
  const sigjit::TileConfig config = o.tile.empty() ? sigjit::default_config(spec) : sigjit::TileConfig::parse(o.tile, "--tile");
  if (!o.out_dir.empty()) {  // before the compile: a bad --out fails at once
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    if (!std::filesystem::is_directory(o.out_dir, ec))
      throw Error(fmt::format("--out {}: cannot create the directory{}", o.out_dir,
                              ec ? ": " + ec.message() : std::string(" (a file is in the way)")));
  }
  const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, config);
  if (!o.out_dir.empty()) {
    const auto base = std::filesystem::path(o.out_dir) / k.name;
    auto write = [](const std::string& path, const char* data, std::size_t size) {
      std::ofstream out(path, std::ios::binary);
      if (!out.write(data, static_cast<std::streamsize>(size)) || !out.flush())
        throw Error(fmt::format("--out: cannot write {}: {}", path, std::strerror(errno)));
    };
    write(base.string() + ".cu", k.source.data(), k.source.size());
    write(base.string() + ".ptx", k.ptx.data(), k.ptx.size());
    write(base.string() + ".cubin", k.cubin.data(), k.cubin.size());
    fmt::print("wrote {}.{{cu,ptx,cubin}}\n", base.string());
  }
  fmt::print("kernel    {}\nspec      {}\nconfig    {}\nresources {}\ncompiled  in {:.2f} s ({} B cubin)\n", k.name, spec.describe(),
             config.describe(), k.resources.describe(), k.compile_seconds, k.cubin.size());
  fmt::print("nvrtc     {} ({})\n", sigjit::nvrtc_version(), sigjit::nvrtc_library_path());
  return 0;
}

std::optional<tuner::Device> try_device(std::string* why) { return tuner::find_device(why); }

int run_info() {
  fmt::print("{}\n", sigjit::version());
  std::string why;
  if (const auto dev = try_device(&why)) {
    fmt::print("GPU       {} (compute capability {}.{}, {} SMs, {} B shared memory per block)\ndriver    CUDA {}.{}\ntarget    {}\n", dev->name,
               dev->cc_major, dev->cc_minor, dev->sm_count, dev->max_smem_per_block_optin, dev->driver_version / 1000,
               dev->driver_version % 1000 / 10, dev->arch().name());
  } else {
    fmt::print("GPU       none: {}\n", why);
  }
  try {  // the NVRTC a compile would use (info loads it; a cached kernel needs none)
    const std::string v = sigjit::nvrtc_version();
    fmt::print("NVRTC     {} ({})\n", v, sigjit::nvrtc_library_path());
  } catch (const Error& e) {
    fmt::print("NVRTC     none: {}\n", e.what());
  }
  const cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);  // creates nothing
  fmt::print("cache     {} ({:.1f} MB, {} entries)\n", store.root().string(), store.size_bytes() / 1e6, store.list().size());
  return 0;
}

tuner::Workload workload_for(const TuneFlags& f, const sigjit::Arch& arch) {
  if (!f.preset.empty()) return tuner::preset(f.preset, arch, f.directions_given ? split(f.directions) : std::vector<std::string>{});
  if (!f.workload_file.empty()) {
    std::ifstream in(f.workload_file);
    if (!in) throw Error(fmt::format("--workload {}: cannot read the file", f.workload_file));
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("--workload {}: not valid JSON ({})", f.workload_file, e.what()));
    }
    return tuner::workload_from_json(j, arch);
  }
  tuner::WorkloadFlags w;
  w.head_dims = int_list(f.head_dims, "--head-dim");
  w.dtypes = split(f.dtypes);
  w.layouts = split(f.layouts);
  w.seq_lens = int_list(f.seqs, "--seq");
  w.causal = {f.causal};
  w.causal_align = split(f.causal_align);
  w.sigmoid = split(f.sigmoid);
  w.directions = split(f.directions);
  w.lengths_file = f.lengths_file;
  return tuner::workload_from_flags(w, arch);
}

tuner::Strategy strategy_from(const std::string& s) {
  if (s == "exhaustive") return tuner::Strategy::exhaustive;
  if (s == "halving") return tuner::Strategy::successive_halving;
  return tuner::Strategy::automatic;
}

// No GPU: compile every candidate of every spec and report resources, so a build host can at
// least check that the workload's kernels build and fit.
int tune_without_gpu(const tuner::Workload& w, const std::string& why) {
  fmt::print(stderr, "sigjit tune: no GPU ({}); compiling every candidate and reporting resources instead of timing\n", why);
  int failures = 0;
  for (const auto& spec : w.specs) {
    const auto configs = sigjit::candidate_configs(spec);
    sigjit::cli::ProgressBar bar(fmt::format("{}", sigjit::problem_key(spec)), static_cast<int>(configs.size()));
    std::vector<sigjit::CompiledKernel> results;
    const auto failed = tuner::compile_in_parallel(spec, configs, [&](int done, int, const std::string& m) { bar.update(done, m); }, &results);
    bar.finish();
    for (std::size_t i = 0; i < configs.size(); ++i) {
      if (!results[i].cubin.empty()) fmt::print("  {:<16} {}\n", configs[i].describe(), results[i].resources.describe());
    }
    for (const auto& [config, reason] : failed) fmt::print("  {:<16} FAILED: {}\n", config.describe(), reason.substr(0, reason.find('\n')));
    failures += static_cast<int>(failed.size());
  }
  return failures ? 1 : 0;
}

int run_tune(const TuneFlags& f) {
  std::string why;
  const auto dev = try_device(&why);
  const sigjit::Arch arch = !f.arch.empty() ? sigjit::Arch::parse(f.arch) : dev ? dev->arch() : sigjit::Arch::parse("sm_90a");
  tuner::Workload w = workload_for(f, arch);
  if (w.specs.empty()) throw Error("the workload is empty: give --head-dim/--layout/--seq, --workload or --preset");
  if (!f.shard.empty()) {
    const auto [k, n] = tuner::parse_shard(f.shard);
    const std::size_t all = w.specs.size();
    w.specs = tuner::shard_specs(w.specs, k, n);
    fmt::print("shard {}/{}: {} of the workload's {} problems\n", k, n, w.specs.size(), all);
    if (w.specs.empty()) return 0;
  }
  if (!dev) return tune_without_gpu(w, why);
  tuner::TuneOptions options;
  options.strategy = strategy_from(f.strategy);
  options.budget.seconds_per_candidate = f.seconds_per_candidate;
  if (!w.user_lengths.empty()) options.user_lengths = &w.user_lengths;
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<cache::RemoteTier> fleet_tier;  // for the fleet lock, when the tier is configured and writable
  if (auto rc = cache::RemoteConfig::from_env(); rc && rc->write) fleet_tier = std::make_unique<cache::RemoteTier>(*rc, cache::TrustedKeys{});
  int failed = 0;
  for (std::size_t i = 0; i < w.specs.size(); ++i) {
    const auto& spec = w.specs[i];
    // One node of the fleet tunes a (spec, bucket, device): the others skip it (and pull it later).
    const tuner::FleetTuneLock fleet_lock(fleet_tier.get(), tuner::fingerprint(*dev, spec), sigjit::problem_key(spec));
    if (!fleet_lock.held()) {
      fmt::print("[{}/{}] {}: skipped, another node is tuning it (fleet lock); `sigjit pull` fetches it\n", i + 1, w.specs.size(),
                 sigjit::problem_key(spec));
      continue;
    }
    sigjit::cli::ProgressBar bar(fmt::format("[{}/{}] {}", i + 1, w.specs.size(), sigjit::problem_key(spec)), 0);
    options.progress = [&](int done, int total, const std::string& m) { bar.update(done, m, total); };
    try {
      const tuner::TuneResult r = tuner::tune_and_store(*dev, spec, options);
      bar.finish();
      const int rejected = static_cast<int>(std::count_if(r.all.begin(), r.all.end(), [](const auto& c) { return !c.verdict.ok; }));
      fmt::print("  best {} {:.4f} ms (spread {:.1f}%), {} candidates, {} rejected\n", r.best->config.describe(), r.best->samples.median(),
                 100 * r.best->samples.spread(), r.all.size(), rejected);
    } catch (const Error& e) {
      bar.finish();
      fmt::print(stderr, "  FAILED: {}\n", e.what());
      ++failed;
    }
  }
  fmt::print("tuned {} of {} problems in {:.1f} s; cache {}\n", w.specs.size() - failed, w.specs.size(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), cache::Store::default_root().string());
  return failed ? 1 : 0;
}

nlohmann::json listed_json(const cache::Store::Listed& l) {
  return {{"fingerprint_id", l.fingerprint.id()}, {"fingerprint", l.fingerprint.to_json()}, {"entry", l.entry.to_json()}};
}

std::vector<cache::Store::Listed> matching(const cache::Store& store, const std::string& pattern) {
  std::vector<cache::Store::Listed> out;
  for (auto& l : store.list()) {
    if (pattern.empty() || l.entry.problem_key.find(pattern) != std::string::npos) out.push_back(std::move(l));
  }
  return out;
}

int run_list(const std::string& pattern, bool json, bool detailed) {
  const cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);  // creates nothing
  const auto entries = matching(store, pattern);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& l : entries) arr.push_back(listed_json(l));
    fmt::print("{}\n", safe_dump(arr));
    return 0;
  }
  if (entries.empty()) {
    fmt::print("no entries{} in {}\n", pattern.empty() ? "" : " matching '" + printable(pattern) + "'", printable(store.root().string()));
    return detailed ? 1 : 0;
  }
  if (detailed) {
    for (const auto& l : entries) fmt::print("{}\n", safe_dump(listed_json(l)));
    return 0;
  }
  fmt::print("{:<16} {:<24} {:<58} {:<16} {:>5} {:>9} {:>7} {:>7}\n", "device", "gpu", "problem", "config", "tuned", "ms", "TFLOPS", "spread");
  for (const auto& l : entries) {
    const auto& e = l.entry;
    fmt::print("{:<16} {:<24} {:<58} {:<16} {:>5} {:>9.4f} {:>7.1f} {:>6.1f}%\n", l.fingerprint.id(),
               printable(l.fingerprint.gpu_name.substr(0, 24)), printable(e.problem_key), printable(e.config), e.tuned ? "yes" : "no",
               e.median_ms, e.tflops, 100 * e.spread);
  }
  return 0;
}

const cache::DeviceFingerprint* local_fingerprint(std::optional<cache::DeviceFingerprint>& holder) {
  std::string why;
  const auto dev = try_device(&why);
  if (!dev) return nullptr;
  sigjit::KernelSpec spec;
  spec.arch = dev->arch();
  holder = tuner::fingerprint(*dev, spec);
  return &*holder;
}

// export's signing key: --sign, else SIGJIT_SIGNING_KEY (the remote publisher's key signs bundles
// too), else none. A key that was asked for and cannot be used fails the export: never a silent
// unsigned bundle.
std::optional<cache::PrivateKey> export_signing_key(const std::string& sign_option) {
  const bool from_option = !sign_option.empty();
  const std::optional<std::string> file = from_option ? std::optional<std::string>(sign_option) : sigjit::env::text("SIGJIT_SIGNING_KEY");
  if (!file) return std::nullopt;
  try {
    return cache::PrivateKey::load(*file);
  } catch (const Error& e) {
    throw Error(fmt::format("export: {}: {}", from_option ? "--sign" : "SIGJIT_SIGNING_KEY", e.what()));
  }
}

// verify --gpu for one local entry (tune/verify.hpp); returns whether it was fine as found.
bool verify_entry_on_gpu(cache::Store& store, const tuner::Device& dev, const sigjit::KernelSpec& spec, const cache::Store::Listed& l) {
  const tuner::GpuVerification v = tuner::verify_on_gpu(store, dev, spec, l);
  const std::string key = printable(l.entry.problem_key), config = printable(l.entry.config);
  switch (v.action) {
    case tuner::GpuCheckAction::keep: fmt::print("  {} {}: output OK\n", key, config); break;
    case tuner::GpuCheckAction::promote:
      fmt::print("  {} {}: output OK; claimed {:.4f} ms, measured here {:.4f} ms{}\n", key, config, v.claimed_ms, v.measured_ms,
                 v.stored ? " (stored as measured here)" : " (entry changed meanwhile; not stored)");
      break;
    case tuner::GpuCheckAction::heal:
      fmt::print("  {} {}: {}; replaced its cubin with a fresh compile of its config\n", key, config, printable(v.reason));
      break;
  }
  return v.fine_as_found;
}

int run_verify(bool gpu) {
  cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);  // creates nothing; a heal writes into an existing cache
  const cache::VerifyReport r = store.verify();
  fmt::print("{} entries and {} blobs verified\n", r.entries_ok, r.blobs_ok);
  for (const auto& p : r.problems) fmt::print("  problem: {}\n", printable(p));
  for (const auto& c : r.claims) fmt::print("  claim: {}\n", printable(c));
  int bad = static_cast<int>(r.problems.size());
  if (gpu) {
    std::string why;
    const auto dev = try_device(&why);
    if (!dev) throw Error(fmt::format("verify --gpu: no GPU ({})", why));
    for (const auto& l : store.list()) {
      sigjit::KernelSpec spec;
      try {
        spec = sigjit::spec_from_json(l.entry.spec);
      } catch (const Error& e) {
        fmt::print("  {}: unreadable spec: {}\n", printable(l.entry.problem_key), printable(e.what()));
        ++bad;
        continue;
      }
      if (tuner::fingerprint(*dev, spec) != l.fingerprint) continue;  // another device's entry
      try {
        bad += !verify_entry_on_gpu(store, *dev, spec, l);
      } catch (const Error& e) {
        fmt::print("  {} {}: {}\n", printable(l.entry.problem_key), printable(l.entry.config), printable(e.what()));
        ++bad;
      }
    }
  }
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sigjit: JIT compiler and autotuner for sigmoid attention.\nCache: $SIGJIT_CACHE_DIR, else $XDG_CACHE_HOME/sigjit, else ~/.cache/sigjit."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("sigjit ") + SIGJIT_VERSION);
  auto* info = app.add_subcommand("info", "Show the GPU, driver and NVRTC that sigjit would use, and the cache");

  SpecOptions co;
  auto* compile = app.add_subcommand("compile", "Generate and compile one kernel (no GPU needed); print registers, shared memory, spills");
  compile->add_option("--head-dim", co.head_dim, "Head dimension")->check(CLI::IsMember(sigjit::supported_head_dims()));
  compile->add_option("--dtype", co.dtype, "bf16, fp16 or fp8 (e4m3 inputs, bf16 output: the Hopper forward, head dims 64 and 128)")
      ->check(CLI::IsMember(option_names<sigjit::DType>()));
  compile->add_option("--layout", co.layout, "dense, padded or varlen")->check(CLI::IsMember(option_names<sigjit::Layout>()));
  compile->add_flag("--causal", co.causal, "Causal masking");
  compile
      ->add_option("--causal-align", co.causal_align,
                   "With --causal: bottom-right (default; query i sees keys j <= i + len_k - len_q, FlashAttention) or top-left "
                   "(j <= i, TritonSigmoid)")
      ->check(CLI::IsMember(option_names<sigjit::CausalAlign>(true)));
  compile->add_option("--bias", co.bias, "log_n (default) or scalar")->check(CLI::IsMember(option_names<sigjit::BiasMode>()));
  compile->add_flag("--score-bias", co.score_bias, "Per-key score bias");
  compile->add_option("--sigmoid", co.sigmoid, "fast or exact")->check(CLI::IsMember(option_names<sigjit::SigmoidMode>()));
  compile->add_option("--arch", co.arch, "Target, e.g. sm_80, sm_90, sm_90a (default: H100 and H200's sm_90a)");
  compile
      ->add_option("--direction", co.direction,
                   "fwd, or a backward kernel: bwd_fused (default backward: dK, dV, dQ atomics), bwd_dq_convert (its dQ "
                   "workspace -> dQ), bwd_dkdv and bwd_dq (the deterministic pair); or fp8_quantize (ForwardOptions::fp8's "
                   "bf16 -> e4m3 quantization, --dtype bf16)")
      ->check(CLI::IsMember(option_names<sigjit::Direction>()));
  compile->add_option("--tile", co.tile, fmt::format("Tile config: {} (default: the heuristic)", fmt::join(sigjit::tile_grammars(), " or ")));
  compile->add_option("--out", co.out_dir, "Directory for the .cu, .ptx and .cubin");

  TuneFlags tf;
  auto* tune = app.add_subcommand("tune",
                                  "Measure every tile config of a workload on this GPU and store the winners as cubins.\n"
                                  "Strategy: exhaustive for up to 16 valid configs, successive halving above (--strategy to force).\n"
                                  "Each candidate's output is checked against the default config before it may win.\n"
                                  "Without a GPU: compiles every candidate and prints its resources.");
  tune->add_option("--head-dim", tf.head_dims, "Head dims, e.g. 64,128");
  tune->add_option("--dtype", tf.dtypes, "bf16,fp16,fp8 (fp8: the Hopper forward, head dims 64 and 128)");
  tune->add_option("--layout", tf.layouts, "dense,padded,varlen");
  tune->add_option("--seq", tf.seqs, "Sequence lengths or a range of powers of two, e.g. 512..16384 (each maps to its bucket)");
  tune->add_flag("--causal", tf.causal, "Causal masking");
  tune->add_option("--causal-align", tf.causal_align,
                   "With --causal: bottom-right (default), top-left, or bottom-right,top-left to tune both (twice the causal specs)");
  tune->add_option("--sigmoid", tf.sigmoid, "fast,exact");
  tune->add_option("--direction", tf.directions,
                   "fwd, bwd (the default backward: its fused dK/dV/dQ-atomics kernel, timed with the workspace zeroing and dQ "
                   "convert), bwd_det (the deterministic backward's dK/dV and dQ kernels), or one kernel: bwd_fused, bwd_dkdv, "
                   "bwd_dq; comma-separated, e.g. fwd,bwd. With --preset: narrows the preset's directions")
      ->each([&tf](const std::string&) { tf.directions_given = true; });
  tune->add_option("--lengths-file", tf.lengths_file, "Your own ragged lengths (one per line or a JSON array) for padded/varlen");
  tune->add_option("--workload", tf.workload_file, "JSON workload file instead of the flags");
  tune->add_option("--preset", tf.preset, "Named workload: single-cell (hd 64,128, bf16, dense/padded/varlen, 512..16384, fwd and the backward the library runs by default)");
  tune->add_option("--strategy", tf.strategy, "auto, exhaustive or halving")->check(CLI::IsMember({"auto", "exhaustive", "halving"}));
  tune->add_option("--arch", tf.arch, "Target arch when there is no GPU (default sm_90a: H100, H200)");
  tune->add_option("--shard", tf.shard, "K/N: tune only the K-th of N disjoint parts of the workload (N nodes or GPUs, one part each)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            try {
              tuner::parse_shard(text);
            } catch (const Error& e) {
              return e.what();
            }
            return {};
          },
          "K/N"));
  tune->add_option("--seconds-per-candidate", tf.seconds_per_candidate, "Timing budget per candidate (seconds, > 0)")->check(seconds_check(false));

  std::string pattern;
  bool json = false;
  auto* list = app.add_subcommand("list", "Table of cache entries (all devices)");
  list->add_option("pattern", pattern, "Only problem keys containing this");
  list->add_flag("--json", json, "JSON instead of a table");
  auto* show = app.add_subcommand("show", "Every field of the matching entries");
  show->add_option("pattern", pattern, "Problem key substring")->required();
  show->add_flag("--json", json, "JSON array instead of one object per entry");

  std::string bundle;
  bool all_devices = false, allow_foreign = false;
  auto* exp = app.add_subcommand("export", "Write one bundle file with entries and their cubins");
  exp->add_option("file", bundle,
                  "Bundle to write (a temp file beside it is renamed onto it; an existing symbolic link, directory, device or FIFO is "
                  "refused), or - for stdout")
      ->required();
  exp->add_option("--match", pattern, "Only problem keys containing this");
  exp->add_flag("--all-devices", all_devices, "Include entries of every device fingerprint, not just this GPU's");
  std::string sign_key;
  exp->add_option("--sign", sign_key,
                  "Sign each entry made on this machine with this Ed25519 private key (`sigjit keygen`); default "
                  "SIGJIT_SIGNING_KEY when set. Claims (imported entries) are exported unsigned, never re-signed");
  auto* imp = app.add_subcommand(
      "import",
      "Merge a bundle into the cache. IMPORTING A BUNDLE MEANS RUNNING ITS CODE: its cubins are loaded and launched by every\n"
      "process that uses this cache, with access to their GPU memory. Import bundles only from sources you would run\n"
      "programs from. Digests are checked (against corruption, not against a malicious author); imported timings are\n"
      "claims: an imported entry never displaces one measured on this machine, not even one whose cubin is missing\n"
      "(its own config is recompiled on next use), and `sigjit verify --gpu` runs, checks and re-times imported\n"
      "entries here (SIGJIT_AUTOTUNE=1 re-tunes them on first use). Bundles over SIGJIT_MAX_BUNDLE_BYTES (default\n"
      "1 GiB) are refused before they are read.\n"
      "Signed bundles (`sigjit export --sign KEY`, or SIGJIT_SIGNING_KEY): each signed entry is imported only if its\n"
      "Ed25519 signature over the entry and its cubin's SHA-256 is by a key of SIGJIT_TRUSTED_KEYS (it then gets a\n"
      "provenance record bundle:<key id>, and is still a claim); an entry signed by another key, altered, or carrying\n"
      "a signature made for another entry or cubin is refused with its reason and never written. --require-signed\n"
      "refuses unsigned entries too (every entry of an older, unsigned bundle).");
  imp->add_option("file", bundle, "Bundle to read (a regular file)")->required();
  imp->add_flag("--allow-foreign", allow_foreign, "Also import entries for other device fingerprints");
  bool import_list = false, import_dry_run = false, require_signed = false;
  imp->add_flag("--require-signed", require_signed, "Refuse every entry not signed by a key of SIGJIT_TRUSTED_KEYS");
  imp->add_flag("--list", import_list, "List the bundle's entries and their signatures; import nothing");
  imp->add_flag("--dry-run", import_dry_run, "Say what importing would do here, signatures included; write nothing");
  imp->add_flag("--json", json, "With --list or --dry-run: JSON output");

  bool gpu_check = false;
  auto* verify = app.add_subcommand("verify", "Re-check every index checksum and cubin digest");
  verify->add_flag("--gpu", gpu_check,
                   "Also load and run each local entry's cached cubin on the GPU and compare its output with the default config's: "
                   "a cubin that does not load or computes wrong output is replaced by a fresh compile of its config; an imported "
                   "entry that passes is re-timed here and stored as measured here");
  std::vector<std::string> prune_keys;
  bool prune_all = false;
  auto* prune = app.add_subcommand("prune",
                                   "Remove entries whose problem key contains any of the patterns. Patterns that match every entry "
                                   "(of two or more) are refused unless --all is given");
  prune->add_option("patterns", prune_keys, "Problem key substrings (non-empty)");
  bool prune_dry_run = false;
  prune->add_flag("--dry-run", prune_dry_run, "List what would be removed; remove nothing");
  prune->add_flag("--json", json, "With --dry-run: JSON output");
  prune->add_flag("--all", prune_all, "Remove every entry of every device (no patterns), or allow the patterns to match every entry");
  bool foreign = false;
  double temp_age = 3600;
  auto* gc = app.add_subcommand(
      "gc", "Remove stale temp files, unreferenced blobs and unreadable entries (in a directory marked as a sigjit cache)");
  gc->add_flag("--foreign", foreign, "Also remove entries of other device fingerprints");
  gc->add_option("--temp-age", temp_age,
                 "Remove temp files and unreferenced blobs older than this many seconds (default 3600; 0 right after a crash, when "
                 "no sigjit process is writing the cache)")
      ->check(seconds_check(true));

  sigjit::cli::add_fleet_verbs(app);  // keygen, push, pull, stats, config, clear (cli/fleet.cpp)
  if (argc > 1 && argv[1][0] != '-') {  // CLI11 would only say "A subcommand is required"
    const auto subs = app.get_subcommands([](const CLI::App*) { return true; });
    if (std::none_of(subs.begin(), subs.end(), [&](const CLI::App* a) { return a->check_name(argv[1]); })) {
      std::string names;
      for (const CLI::App* a : subs) names += (names.empty() ? "" : ", ") + a->get_name();
      std::fprintf(stderr, "sigjit: unknown subcommand '%s'; the subcommands are %s (sigjit --help)\n", printable(argv[1]).c_str(), names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints CLI11's message (or the help)
    return rc == 0 ? 0 : 2;      // every usage error is exit status 2 (CLI11's own codes are 100+)
  }
  try {
    if (*info) return run_info();
    if (*compile) return run_compile(co);
    if (*tune) return run_tune(tf);
    if (*list) return run_list(pattern, json, false);
    if (*show) return run_list(pattern, json, !json);
    if (*verify) return run_verify(gpu_check);
    if (const std::optional<int> rc = sigjit::cli::run_fleet_verb()) return *rc;
    if (*imp && (import_list || import_dry_run)) {
      require_regular_file(bundle, "import");
      return sigjit::cli::preview_import(bundle, import_list, json, require_signed);
    }
    // Readers and refused commands leave a missing or empty cache directory as they found it: the
    // layout is created by the first write (an import with entries to merge), never by export,
    // prune or gc (which have nothing to remove in an empty cache).
    cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);
    std::optional<cache::DeviceFingerprint> holder;
    if (*exp) {
      auto entries = matching(store, pattern);
      if (!all_devices) {
        const auto* local = local_fingerprint(holder);
        if (!local) throw Error("export: no GPU to tell this device's entries apart; pass --all-devices");
        std::erase_if(entries, [&](const auto& l) { return l.fingerprint.id() != local->id() && l.fingerprint.gpu_name != local->gpu_name; });
      }
      const std::optional<cache::PrivateKey> signer = export_signing_key(sign_key);  // before anything is written
      const cache::ExportReport r = store.export_bundle(bundle, entries, signer ? &*signer : nullptr);
      // With "-" the bundle is stdout: the summary goes to stderr.
      fmt::print(bundle == "-" ? stderr : stdout, "exported {} entries to {}{}{}\n", r.exported, bundle == "-" ? "stdout" : bundle,
                 signer ? fmt::format("; {} signed by key {}{}", r.signed_entries, cache::key_id_short(signer->key_id()),
                                      r.unsigned_claims ? fmt::format(", {} claims unsigned (a claim is never re-signed)", r.unsigned_claims) : "")
                        : "",
                 r.skipped ? fmt::format("; skipped {} whose cubin is missing or corrupted (`sigjit verify` lists them)", r.skipped) : "");
      return r.skipped ? 1 : 0;
    }
    if (*imp) {
      require_regular_file(bundle, "import");
      const auto* local = local_fingerprint(holder);
      if (!local && !allow_foreign) {
        throw Error("import: no GPU here to check the bundle's device fingerprints against; pass --allow-foreign to import them anyway");
      }
      cache::ImportOptions options;
      options.require_signed = require_signed;
      const auto r = store.import_bundle(bundle, local, allow_foreign, options);
      // Why each replacement won (F17): a tuned entry over our untuned default is not a speed-up.
      std::string why;
      for (const auto& [n, reason] :
           {std::pair{r.replaced_faster, "faster"}, std::pair{r.replaced_untuned, "tuned over our untuned default"},
            std::pair{r.replaced_cubin_missing, "over ours whose cubin was missing"}})
        if (n > 0) why += fmt::format("{}{} {}", why.empty() ? " (" : ", ", n, reason);
      if (!why.empty()) why += ")";
      fmt::print("added {}, replaced {}{}, kept {} (ours faster, or measured here), refused {} foreign\n", r.added, r.replaced, why, r.kept,
                 r.refused_foreign);
      if (r.kept_local > 0)
        fmt::print("  kept {} measured on this machine: an imported entry is a claim and never displaces a local measurement, "
                   "whatever time it claims\n",
                   r.kept_local);
      if (r.kept_local_cubin_missing > 0)
        fmt::print("  {} of them: our cubin is missing or unreadable; the entry stays ours, and the next use (or `sigjit verify "
                   "--gpu`) recompiles its config\n",
                   r.kept_local_cubin_missing);
      if (r.signed_trusted + r.refused_signature + r.refused_unsigned > 0)
        fmt::print("  signatures: {} verified by a trusted key (provenance bundle:<key id>), {} refused (untrusted key or signature "
                   "not over the entry and cubin), {} unsigned refused (--require-signed)\n",
                   r.signed_trusted, r.refused_signature, r.refused_unsigned);
      for (const auto& p : r.problems) fmt::print(stderr, "  problem: {}\n", printable(p));
      if (r.refused_foreign && !allow_foreign) fmt::print(stderr, "  entries for other GPUs/drivers were refused; --allow-foreign imports them\n");
      return r.problems.empty() ? 0 : 1;
    }
    if (*prune) {
      if (prune_keys.empty() && !prune_all) throw Error("prune: give the problem key substrings to remove, or --all to remove every entry");
      for (const auto& k : prune_keys)
        if (k.empty())
          throw Error("prune: an empty pattern matches every entry (an unset shell variable?); refusing. Pass --all (and no "
                      "pattern) to remove every entry");
      if (!prune_all && !prune_keys.empty()) {
        const auto all = store.list();
        const auto hits = std::count_if(all.begin(), all.end(), [&](const auto& l) {
          return std::any_of(prune_keys.begin(), prune_keys.end(), [&](const auto& k) { return l.entry.problem_key.find(k) != std::string::npos; });
        });
        if (all.size() >= 2 && hits == static_cast<std::ptrdiff_t>(all.size()))
          throw Error(fmt::format("prune: the patterns match every entry of the cache ({} of {}); refusing. Pass --all to remove them all, "
                                  "or a narrower pattern (`sigjit list PATTERN` shows what it matches)",
                                  hits, all.size()));
      }
      if (prune_dry_run) return sigjit::cli::preview_prune(prune_keys, json);
      fmt::print("removed {} entries\n", store.prune(prune_keys, nullptr));
      return 0;
    }
    if (*gc) {
      const auto* local = local_fingerprint(holder);
      if (foreign && !local) throw Error("gc --foreign: no GPU to tell which entries are foreign");
      const auto r = store.gc(foreign, local, temp_age);
      fmt::print("removed {} temp files, {} unreferenced blobs, {} entries{}; freed {:.1f} MB\n", r.temp_files_removed, r.blobs_removed,
                 r.entries_removed, r.links_removed ? fmt::format(", {} symbolic links (never followed)", r.links_removed) : "",
                 r.bytes_freed / 1e6);
      return 0;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "sigjit: error: %s\n", printable(e.what(), true).c_str());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "sigjit: error: %s\n", printable(e.what()).c_str());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "sigjit: error: out of memory (the input may be too large for this machine)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigjit: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
