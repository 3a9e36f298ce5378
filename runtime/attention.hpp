#pragma once

#include "jit/binaries.hpp"
#include "jit/kernel_table.hpp"
#include "kernels/registry.hpp"
#include "problem/call.hpp"
#include "problem/spec.hpp"
#include "sigjit/common/params.h"

#include <cuda.h>

#include <cstddef>

namespace sigjit::detail {

// The kernel spec that serves a (validated) call on a device of the given arch.
KernelSpec forward_spec(const Resolved& r, const Arch& arch);

// The kernel forward() launches for a validated call on `dev`: the spec's resolved kernel, or
// the portable family's default when TMA cannot describe the tensors.
struct DeviceInfo;
struct ResolvedKernel;
ResolvedKernel forward_kernel(const DeviceInfo& dev, const Resolved& r);

// The varlen layout's rows outside the sequences (past cu_seqlens[batch]) of the call's outputs:
// zeros (kernels::enqueue_varlen_tail_zero); params: the backward's, or output_tail(r) for O.
void zero_varlen_tails(const DeviceInfo& dev, const Resolved& r, const SigjitBwdParams& params, CUstream stream);
SigjitBwdParams output_tail(const Resolved& r);

// ForwardOptions::fp8's kernels for the bf16 call r: the quantization, and the FP8 forward on
// the copies at `base` (call: r as that FP8 call). base null: a placeholder address, for
// prepare(), which loads the kernels without launching them.
struct Fp8Kernels {
  ResolvedKernel quantize;
  ResolvedKernel forward;
  Resolved call;
};
Fp8Kernels fp8_kernels(const DeviceInfo& dev, const Resolved& r, unsigned char* base = nullptr);

}  // namespace sigjit::detail
