#include "cuda/driver_api.hpp"

#include <sigjit/sigjit.hpp>

#include <dlfcn.h>
#include <fmt/format.h>

#include <mutex>
#include <string>

namespace sigjit::detail {

namespace {

struct Loaded {
  DriverApi api;
  std::string error;  // empty when every entry point resolved
};

// Entry points are requested at the ABI of CUDA 12.0, the version whose signatures the
// declarations used for DriverApi's member types match. Asking for the header's CUDA_VERSION
// instead returns newer variants with other signatures (CUDA 13 maps cuCtxGetDevice to
// cuCtxGetDevice_v2, which takes a context argument): calling those through the old types
// crashed on the H100 machine.
constexpr int kDriverAbiVersion = 12000;

using GetProcAddress = CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);

Loaded load_driver() {
  Loaded out;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    out.error = fmt::format("no CUDA driver: cannot load libcuda.so.1 ({}); install the NVIDIA driver or run on a GPU machine", dlerror());
    return out;
  }
  auto get_proc = reinterpret_cast<GetProcAddress>(dlsym(lib, "cuGetProcAddress_v2"));
  if (!get_proc) {
    out.error = "no usable CUDA driver: libcuda.so.1 lacks cuGetProcAddress_v2; sigjit needs a driver for CUDA 12.5 or newer";
    return out;
  }
#define SIGJIT_RESOLVE(name)                                                                                   \
  {                                                                                                            \
    void* fn = nullptr;                                                                                        \
    CUdriverProcAddressQueryResult found{};                                                                   \
    if (get_proc(#name, &fn, kDriverAbiVersion, CU_GET_PROC_ADDRESS_DEFAULT, &found) != CUDA_SUCCESS || !fn) {      \
      out.error = fmt::format("CUDA driver too old: it lacks {} (CUDA 12.0 ABI); update the NVIDIA driver", #name); \
      return out;                                                                                              \
    }                                                                                                          \
    out.api.name = reinterpret_cast<decltype(out.api.name)>(fn);                                               \
  }
  SIGJIT_DRIVER_FUNCTIONS(SIGJIT_RESOLVE)
#undef SIGJIT_RESOLVE
  return out;
}

const Loaded& loaded() {
  static const Loaded instance = load_driver();
  return instance;
}

}  // namespace

const DriverApi& driver() {
  const Loaded& l = loaded();
  if (!l.error.empty()) throw Error(l.error, ErrorKind::cuda);
  return l.api;
}

bool driver_available() { return loaded().error.empty(); }

}  // namespace sigjit::detail
