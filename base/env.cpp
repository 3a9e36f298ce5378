#include "base/env.hpp"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace sigjit::env {

const std::vector<Switch>& switches() {
  static const std::vector<Switch> table{
      // Kernel resolution and the cache
      {"SIGJIT_CACHE_DIR", "the kernel cache's directory (default $XDG_CACHE_HOME/sigjit, else ~/.cache/sigjit)"},
      {"SIGJIT_DISABLE_CACHE", "1: never read or write the on-disk cache (compile every kernel)"},
      {"SIGJIT_AUTOTUNE", "1: tune a spec on first use when the cache has no measured entry for it"},
      {"SIGJIT_FORCE_TILE", "a tile config (e.g. h128x128c2s3o) used for every tunable kernel, bypassing the cache"},
      {"SIGJIT_BACKWARD_PATH", "fused (default) or two_kernel: the non-deterministic backward's kernels"},
      {"SIGJIT_BWD_DQ_ZERO",
       "kernel (default), paced or memset: who zeroes the persistent Hopper backward's (_wp) dQ workspace (paced: each "
       "sequence once its first key tile is claimed; no faster on an H100)"},
      {"SIGJIT_BWD_DQ_CONVERT",
       "overlap (default) or after: whether the dQ convert starts on the SMs the Hopper backward's dQ writer tiles (_w, _wp) "
       "free, converting each sequence once its key tiles are done, or runs after them"},
      {"SIGJIT_PADDED_DQ_ZERO", "fused (default) or convert: which kernel writes the padded layout's zero dQ rows on the Hopper backward"},
      {"SIGJIT_PERSISTENT_BWD_CTAS",
       "test hook: at most this many CTAs for the persistent Hopper backward (_wp), so that each walks many key tiles"},
      {"SIGJIT_VERBOSE_CACHE", "1: log every cache miss and remote-tier event"},
      {"SIGJIT_CACHE_LOCK_TIMEOUT", "seconds a writer waits for a per-key lock (default 30)"},
      {"SIGJIT_CACHE_NO_FSYNC", "1: skip fsync of cache writes (tests; a crash may then lose an entry)"},
      {"SIGJIT_CACHE_FAULT", "test hook: exit_before_rename makes the next cache write die before its rename"},
      {"SIGJIT_MAX_BUNDLE_BYTES", "largest bundle `sigjit import` reads (default 1 GiB)"},
      // The remote tier
      {"SIGJIT_REMOTE_CACHE", "redis://[user:password@]host:port[/db]: the shared Redis tier"},
      {"SIGJIT_REMOTE_CACHE_WRITE", "1: publish to the remote tier (tuning nodes); default read-only"},
      {"SIGJIT_REMOTE_CACHE_PASSWORD_FILE", "a file whose first line is the remote tier's password"},
      {"SIGJIT_REMOTE_CACHE_CONNECT_TIMEOUT_MS", "remote connect timeout (default 200)"},
      {"SIGJIT_REMOTE_CACHE_TIMEOUT_MS", "remote command deadline (default 1000)"},
      {"SIGJIT_REMOTE_CACHE_BACKOFF_S", "seconds the remote tier stays off after a failure (default 60, or inf)"},
      {"SIGJIT_TRUSTED_KEYS",
       "':'-separated Ed25519 public keys (files or directories) whose signed entries are loaded (remote tier, bundles)"},
      {"SIGJIT_SIGNING_KEY",
       "an Ed25519 private key file (`sigjit keygen`): with SIGJIT_REMOTE_CACHE_WRITE=1, what this process compiles or tunes is signed and "
       "published; `sigjit export` signs the bundle's entries made here with it"},
      // Compilation
      {"SIGJIT_NVRTC_LIBRARY", "the NVRTC library to load (a path), before the usual search"},
      {"SIGJIT_TEMPLATE_DIR", "read the kernel templates from this directory instead of the embedded copies", true},
      {"SIGJIT_LINEINFO", "1: compile with -lineinfo (profilers map SASS to template lines)", true},
      {"SIGJIT_DUMP_DIR", "write each compiled kernel's .cu, .ptx and ptxas report there"},
      {"SIGJIT_MAX_PARALLEL_COMPILES", "NVRTC compiles one process runs at once (default: the cores)"},
      {"SIGJIT_VERBOSE_COMPILE", "1: print each compile's spec, time and resources"},
      {"SIGJIT_FAIL_ON_SPILLS", "1: a kernel that spills registers is a compile error"},
      {"SIGJIT_TRACE_TILES",
       "a CSV path: the Hopper backward records each key tile's SM and %globaltimer times, and every launch that recorded "
       "tiles synchronizes its stream and overwrites the file (bench/tile_timeline.py reads it; slows every launch)",
       true},
  };
  return table;
}

namespace {

const Switch& find(std::string_view name) {
  const auto& t = switches();
  const auto it = std::find_if(t.begin(), t.end(), [&](const Switch& s) { return s.name == name; });
  if (it == t.end()) throw std::logic_error("sigjit: environment switch " + std::string(name) + " is not in base/env.cpp's table");
  return *it;
}

}  // namespace

const char* raw(std::string_view name) { return std::getenv(std::string(find(name).name).c_str()); }

std::optional<std::string> text(std::string_view name) {
  const char* v = raw(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::optional<long long> parse_int(std::string_view s, long long lo, long long hi) {
  if (s.empty() || s.size() > 12 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  const long long v = std::stoll(std::string(s));
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

bool flag(std::string_view name) {
  const auto v = text(name);
  return v && *v != "0";
}

}  // namespace sigjit::env
