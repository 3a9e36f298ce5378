// The Hopper fused backward family's own decisions, for its file (kernels/sm90_bwd.cpp) and tests.
#pragma once

#include "kernels/tile_config.hpp"
#include "problem/spec.hpp"

#include <vector>

namespace sigjit {

// True when the sm90_bwd family can serve the spec (backward_fused, sm_90a, head dim 64/128).
bool sm90_backward_supports(const KernelSpec& spec);
// The sm90_bwd config used without tuning (also what the GPU tests force).
TileConfig default_sm90_backward_config(const KernelSpec& spec);
// The default's shape (query block, consumers, stages, overlap) with the dQ path and levers of
// `levers` (bulk_dq, early_scores, dq_writer, ordered_dq, local_dq; its other fields are ignored):
// the deterministic mode's tile and each forced GPU suite's. At hd 64 only the default itself
// overlaps: with atomics or bulk rows it spills 4-36 B with the exact sigmoid, and with early
// scores (oe_w against o_w) it measured 4-5 % slower (H200, 2026-12-06).
TileConfig sm90_backward_variant(const KernelSpec& spec, const Sm90BwdTile& levers);

// Whether the tuner times the issue 21 levers (early scores e, the dQ writer _w) and the
// deterministic mode uses the ordered dQ reduction (_wd). True since their GPU suites (the whole
// backward matrix for e, _w, e_w and the ordered mode, bitwise run to run), compute-sanitizer
// (memcheck, racecheck, synccheck) and the top-left cases passed on an H100 (2026-12-05,
// scripts/device/bwd_levers.sh check and sanitize): a tune must never run a kernel that could hang.
inline constexpr bool kSm90BackwardLeversVerified = true;
// Warpgroup-local dQ (_wl, issue 21 lever 3) is not timed by the tuner: its GPU suite
// (BackwardMatrixSm90DqWriterLocal) and compute-sanitizer passed on an H100 (2026-12-06), but it
// measured 0.84-0.97x the default at every point (bench/PROFILE-backward.md), so timing it would
// only lengthen tunes. Forcing the tile (SIGJIT_FORCE_TILE) works.
inline constexpr bool kSm90BackwardLocalDqVerified = false;
// The persistent schedule (_wp) is a tuner candidate since its forced GPU suite passed on an H100
// (2026-12-06: BackwardMatrixSm90DqWriterPersistent, 210 cases over every layout, causal
// alignment, GQA and score bias, with the grid capped at 3 CTAs so that each walks many key
// tiles). compute-sanitizer has not yet run on it (the session's device time was spent).
inline constexpr bool kSm90BackwardPersistentVerified = true;

// Every valid tile the tuner could time for the spec, the levers included when with_levers, the
// warpgroup-local dQ tiles when with_local_dq, the persistent ones when with_persistent (the
// family's candidates pass the three gates above).
std::vector<TileConfig> sm90_backward_tiles(const KernelSpec& spec, bool with_levers, bool with_local_dq, bool with_persistent = true);

}  // namespace sigjit
