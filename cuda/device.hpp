// Device and context discovery. sigjit works in whatever context is current on the calling
// thread (what the CUDA runtime and PyTorch leave current); if none is, it makes the primary
// context of the first device current, as the CUDA runtime itself would. It never creates a
// private context, so memory and streams are shared with the host application.
#pragma once

#include "problem/spec.hpp"

#include <cuda.h>

#include <string>

namespace sigjit::detail {

struct DeviceInfo {
  CUcontext context = nullptr;
  CUdevice device = 0;
  std::string name;
  int cc_major = 0;
  int cc_minor = 0;
  int sm_count = 0;
  int max_smem_per_block_optin = 0;
  int driver_version = 0;
  Arch arch() const;  // the compile target for this device
};

// Throws Error("no CUDA device ...") when the driver or a device is missing.
DeviceInfo current_device();

}  // namespace sigjit::detail
