// Code generation: a (KernelSpec, TileConfig) pair becomes a tiny translation unit that
// instantiates the templated kernel of templates/ with compile-time constants and exposes it
// under an extern "C" entry point named by kernel_name(). All kernel logic lives in the
// templates; each family's file (kernels/<family>.cpp) emits only constants, so the generated
// text is short and easy to read in a SIGJIT_DUMP_DIR dump. emit_source: kernels/registry.hpp.
#pragma once

#include "kernels/registry.hpp"

namespace sigjit {

// Bumped whenever the emitted translation units change meaning; part of every cache
// fingerprint (template edits are covered separately by a digest of their text).
inline constexpr int kCodegenVersion = 2;  // 2: the sm90 family

}  // namespace sigjit
