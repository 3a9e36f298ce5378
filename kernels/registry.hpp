// The kernel families in one list: which family a config belongs to, which family's default a
// spec gets, every family's candidates. The only place that chooses between families.
#pragma once

#include "kernels/tile_config.hpp"
#include "problem/spec.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace sigjit {

namespace kernels {
class Family;
const Family& family_of(const TileConfig& config);
}  // namespace kernels

// Every family's config grammar with examples, for help texts and parse errors.
std::vector<std::string> tile_grammars();

// Empty when the config satisfies the template's static constraints and fits the arch;
// otherwise the reason. Lets the tuner drop a config before paying for a compile.
std::string check_config(const KernelSpec& spec, const TileConfig& config);

// Dynamic shared memory of the spec's kernel (what the launch requests).
int smem_bytes(const KernelSpec& spec, const TileConfig& config);

// Empty when some family serves the spec; otherwise why none does and what would be served (every
// 16-bit spec has the portable family; FP8 has the Hopper forward only). Front ends check it before
// asking for a default or candidates, which would otherwise hand back a config that cannot build.
std::string unserved_reason(const KernelSpec& spec);

// The config used when nothing better is known (no tuning result): the default of the most
// specialised family that serves the spec.
TileConfig default_config(const KernelSpec& spec);

// The portable family's default: what serves a call whose tensors the specialised family's
// loads (TMA) cannot describe.
TileConfig portable_config(const KernelSpec& spec);

// Configs worth trying for a spec (all pass check_config; the default always among them).
std::vector<TileConfig> candidate_configs(const KernelSpec& spec);

// The translation unit of (spec, config): written by the config's family.
std::string emit_source(const KernelSpec& spec, const TileConfig& config);

// Deterministic entry-point name; distinct for every distinct binary.
std::string kernel_name(const KernelSpec& spec, const TileConfig& config);

// A module's second entry point, `<kernel_name><suffix>`, where the spec has one: the FP8
// forward's V^T prologue ("_vt") and the padded layout's dQ workspace zeroing in the dQ convert
// module ("_zero"), the varlen layout's tail zeroing in it ("_tail"), the FP8 quantization's amax
// pass ("_amax"); empty for none. The loader binds it as LoadedKernel::prologue.
std::string_view second_entry_suffix(const KernelSpec& spec);

// The dQ convert kernel depends only on dtype, head dim and layout, and has one config:
// callers resolve it under this normalised spec so that every backward spec shares one binary.
KernelSpec dq_convert_spec(const KernelSpec& backward_spec);
// The FP8 forward's on-the-fly quantization (ForwardOptions::fp8) for a forward spec: the bf16
// inputs' kernel of its head dim, layout and arch (one config, dq_convert_config's tile).
KernelSpec fp8_quantize_spec(const KernelSpec& forward_spec);
TileConfig dq_convert_config();

}  // namespace sigjit
