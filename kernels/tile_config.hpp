// How a kernel is tiled: a family tag plus that family's own fields. Each kernel family defines
// its tile (kernels/<family>_tile.hpp) and its grammar, limits and meaning (kernels/<family>.cpp);
// nothing outside kernels/ reads a family's fields, and a config of one family cannot carry
// another's tunables.
#pragma once

#include "kernels/sm80_tile.hpp"
#include "kernels/sm90_bwd_tile.hpp"
#include "kernels/sm90_fwd_tile.hpp"

#include <string>
#include <variant>

namespace sigjit {

// The kernel families, in the order of TileConfig's alternatives: the portable mma.sync kernels
// (templates/sigjit/sm80/fwd.cuh, sm80/bwd.cuh; any sm_80+), the Hopper forward (sm90/fwd.cuh:
// TMA, wgmma, warp specialization; sm_90a) and the Hopper fused backward (sm90/bwd.cuh).
enum class KernelFamily { sm80, sm90, sm90_bwd };

class TileConfig {
 public:
  using Tile = std::variant<Sm80Tile, Sm90FwdTile, Sm90BwdTile>;

  TileConfig() = default;
  TileConfig(const Sm80Tile& t) : tile_(t) {}     // NOLINT(google-explicit-constructor): a tile is a config
  TileConfig(const Sm90FwdTile& t) : tile_(t) {}  // NOLINT(google-explicit-constructor)
  TileConfig(const Sm90BwdTile& t) : tile_(t) {}  // NOLINT(google-explicit-constructor)

  KernelFamily family() const { return static_cast<KernelFamily>(tile_.index()); }
  template <class T>
  const T& get() const {
    return std::get<T>(tile_);
  }  // throws std::bad_variant_access for another family's tile
  template <class T>
  T& get() {
    return std::get<T>(tile_);
  }
  template <class T>
  const T* get_if() const {
    return std::get_if<T>(&tile_);
  }

  // The config string (each family's grammar, kernels/<family>.cpp); part of kernel names and
  // cache entries, so stable across versions.
  std::string describe() const;
  // Inverse of describe() for every family; throws Error naming `what` (a flag or variable).
  static TileConfig parse(const std::string& text, const std::string& what);
  int threads() const;

 private:
  Tile tile_;
};

}  // namespace sigjit
