#include "cuda/device.hpp"

#include "cuda/check.hpp"

#include <mutex>

namespace sigjit::detail {

// Compute capability 9.0 compiles for sm_90a: the sm90 family needs wgmma and setmaxnreg, and
// an sm_90a cubin runs only on 9.0 devices, which is exactly where this arch is chosen. The
// sm80 family's code is the same for sm_90 and sm_90a (both compiled in CI).
Arch DeviceInfo::arch() const { return Arch{cc_major, cc_minor, cc_major == 9 && cc_minor == 0}; }

namespace {
void init_driver() {
  static std::once_flag once;
  static CUresult status = CUDA_SUCCESS;
  std::call_once(once, [] { status = driver().cuInit(0); });
  if (status != CUDA_SUCCESS) {
    throw Error(fmt::format("no CUDA device: cuInit failed with {}; check that an NVIDIA GPU and driver are present (nvidia-smi)",
                            cu_error_text(status)), ErrorKind::cuda);
  }
}
}  // namespace

DeviceInfo current_device() {
  init_driver();
  DeviceInfo info;
  SIGJIT_CHECK_CU(driver().cuCtxGetCurrent(&info.context));
  if (info.context == nullptr) {
    int count = 0;
    SIGJIT_CHECK_CU(driver().cuDeviceGetCount(&count));
    if (count == 0) throw Error("no CUDA device: the driver reports 0 devices", ErrorKind::cuda);
    CUdevice dev = 0;
    SIGJIT_CHECK_CU(driver().cuDeviceGet(&dev, 0));
    SIGJIT_CHECK_CU(driver().cuDevicePrimaryCtxRetain(&info.context, dev));  // kept for the process lifetime, like the runtime's
    SIGJIT_CHECK_CU(driver().cuCtxSetCurrent(info.context));
  }
  SIGJIT_CHECK_CU(driver().cuCtxGetDevice(&info.device));
  char name[256] = {};
  SIGJIT_CHECK_CU(driver().cuDeviceGetName(name, sizeof(name), info.device));
  info.name = name;
  SIGJIT_CHECK_CU(driver().cuDeviceGetAttribute(&info.cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, info.device));
  SIGJIT_CHECK_CU(driver().cuDeviceGetAttribute(&info.cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, info.device));
  SIGJIT_CHECK_CU(driver().cuDeviceGetAttribute(&info.sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, info.device));
  SIGJIT_CHECK_CU(driver().cuDeviceGetAttribute(&info.max_smem_per_block_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, info.device));
  SIGJIT_CHECK_CU(driver().cuDriverGetVersion(&info.driver_version));
  if (info.cc_major < 8) {
    throw Error(fmt::format("device {} has compute capability {}.{}; sigjit needs 8.0 or newer (Ampere, Ada, Hopper, Blackwell)", info.name,
                            info.cc_major, info.cc_minor), ErrorKind::cuda);
  }
  return info;
}

}  // namespace sigjit::detail
