// Code generation: a (KernelSpec, TileConfig) pair becomes a tiny translation unit that
// instantiates the templated kernel of templates/ with compile-time constants and exposes it
// under an extern "C" entry point named by kernel_name(). All kernel logic lives in the
// templates; this emits only constants, so the generated text is short and easy to read in a
// SIGJIT_DUMP_DIR dump.
#pragma once

#include "compiler/kernel_spec.hpp"
#include "kernels/tile_config.hpp"

#include <string>

namespace sigjit {

// Bumped whenever the emitted translation units change meaning; part of every cache
// fingerprint (template edits are covered separately by a digest of their text).
inline constexpr int kCodegenVersion = 2;  // 2: the sm90 family

// The family of `config` writes it (kernels/<family>.cpp; dispatched in kernels/registry.cpp).
std::string emit_source(const KernelSpec& spec, const TileConfig& config);

}  // namespace sigjit
