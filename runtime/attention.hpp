#pragma once

#include "compiler/kernel_spec.hpp"
#include "kernels/registry.hpp"
#include "runtime/kernel_cache.hpp"
#include "runtime/validate.hpp"
#include "sigjit/fwd_params.h"

#include <cuda.h>

#include <cstddef>

namespace sigjit::detail {

// The kernel spec that serves a (validated) call on a device of the given arch.
KernelSpec forward_spec(const Resolved& r, const Arch& arch);

// Launches a loaded forward kernel (either family) for a validated call (no further checks
// beyond the sm90 family's TMA requirements).
// `sm_count`: the device's SMs (DeviceInfo::sm_count), which size persistent (_p) grids.
void launch_forward(const Resolved& r, const LoadedKernel& kernel, const TileConfig& config, int sm_count, CUstream stream);

// The kernel forward() launches for a validated call on `dev`: the spec's resolved kernel, or
// the portable family's default when TMA cannot describe the tensors.
struct DeviceInfo;
struct ResolvedKernel;
ResolvedKernel forward_kernel(const DeviceInfo& dev, const Resolved& r);

// The tile config a call uses: SIGJIT_FORCE_TILE if set, else the heuristic default.
TileConfig choose_config(const KernelSpec& spec);

// ---- backward ----------------------------------------------------------------------------------

// Bytes of the fused path's fp32 dQ workspace, contiguous [batch * seqlen_q (varlen: total_q),
// heads_q, head_dim].
std::size_t dq_workspace_bytes(const Resolved& r);

// The kernels' parameter block; dq_accum may be null (deterministic path).
SigjitBwdParams make_bwd_params(const Resolved& r, const Gradients& g, void* dq_accum);

// Launches one backward kernel (any direction but forward) for a validated call; nothing when
// its grid is empty.
void launch_backward_part(const Resolved& r, const SigjitBwdParams& params, Direction part, const LoadedKernel& kernel, const TileConfig& config,
                          CUstream stream);

// The fast path on the stream: zero params.dq_accum, fused kernel, convert kernel.
void enqueue_fused_backward(const Resolved& r, const SigjitBwdParams& params, const LoadedKernel& fused, const TileConfig& fused_config,
                            const LoadedKernel& convert, CUstream stream);

}  // namespace sigjit::detail
