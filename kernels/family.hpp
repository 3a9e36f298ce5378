// A kernel family's host side behind one small interface (DeepGEMM keeps a kernel's host side in
// one file the same way): its tile grammar, limits, shared memory, default, tuning candidates and
// the translation unit that instantiates its template, and its launch. kernels/registry.cpp lists the families
// and is the only code that chooses between them; each family lives in kernels/<family>.cpp next
// to its template under templates/sigjit/. Adding a tunable touches its template, its family's
// file and tests.
#pragma once

#include "kernels/launch.hpp"
#include "kernels/tile_config.hpp"
#include "problem/spec.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sigjit::kernels {

class Family {
 public:
  virtual ~Family() = default;
  virtual KernelFamily id() const = 0;
  // The config grammar as the parse error shows it, with examples.
  virtual std::string_view grammar() const = 0;
  // Whether the family can run the spec at all (direction, arch, head dim).
  virtual bool serves(const KernelSpec& spec) const = 0;
  // nullopt when `text` is not in this family's grammar; throws Error (naming `what`) for text
  // that is, but names an impossible tile.
  virtual std::optional<TileConfig> parse(std::string_view text, const std::string& what) const = 0;
  virtual std::string describe(const TileConfig& config) const = 0;
  // Empty when the config builds for the spec (the template's static_asserts) and fits the arch;
  // else the reason. The tuner drops a config on it before paying for a compile.
  virtual std::string check(const KernelSpec& spec, const TileConfig& config) const = 0;
  virtual int smem_bytes(const KernelSpec& spec, const TileConfig& config) const = 0;
  virtual int threads(const TileConfig& config) const = 0;
  // The config used without tuning; only where serves(spec).
  virtual TileConfig default_config(const KernelSpec& spec) const = 0;
  // Configs worth measuring (all pass check); the registry adds the default where they lack it.
  virtual std::vector<TileConfig> candidates(const KernelSpec& spec) const = 0;
  // The translation unit: one include, the config alias, one extern "C" entry named `name`.
  virtual std::string emit(const KernelSpec& spec, const TileConfig& config, const std::string& name) const = 0;
  // Empty when the family's kernels can run this call (the Hopper families: tensors TMA can
  // describe); otherwise why not, and the portable family serves the call.
  virtual std::string unsupported(const detail::Resolved& call, const SigjitBwdParams* backward) const = 0;
  // Fills the parameter block and launches (grid from the config and the call); nothing when the
  // grid is empty.
  virtual void launch(const Launch& l, const TileConfig& config) const = 0;
};

const Family& sm80_family();
const Family& sm90_fwd_family();
const Family& sm90_bwd_family();

}  // namespace sigjit::kernels
