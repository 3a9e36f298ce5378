#include "cuda/workspace.hpp"

#include "cuda/check.hpp"
#include "cuda/driver_api.hpp"

#include <atomic>
#include <map>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace sigjit::detail {

namespace {

struct Buffer {
  std::mutex mutex;  // held by the lease of the call using it
  CUdeviceptr ptr = 0;
  std::size_t bytes = 0;
  unsigned long long buffer_id = 0;  // the driver's process-unique id of the allocation
};

std::mutex g_table_mutex;
std::map<std::pair<CUcontext, CUstream>, std::shared_ptr<Buffer>>& table() {
  static auto* t = new std::map<std::pair<CUcontext, CUstream>, std::shared_ptr<Buffer>>;  // never destroyed: see the header
  return *t;
}
std::atomic<long> g_allocations{0};

unsigned long long buffer_id(CUdeviceptr ptr) {
  unsigned long long id = 0;
  if (driver().cuPointerGetAttribute(&id, CU_POINTER_ATTRIBUTE_BUFFER_ID, ptr) != CUDA_SUCCESS) return 0;
  return id;
}

std::shared_ptr<Buffer> buffer_for(CUcontext context, CUstream stream) {
  std::lock_guard<std::mutex> lock(g_table_mutex);
  auto& slot = table()[{context, stream}];
  if (!slot) slot = std::make_shared<Buffer>();
  return slot;
}

}  // namespace

WorkspaceLease acquire_workspace(CUcontext context, CUstream stream, std::size_t bytes, const char* purpose, const char* instead) {
  const std::shared_ptr<Buffer> b = buffer_for(context, stream);
  std::unique_lock<std::mutex> lock(b->mutex);
  // A context destroyed and re-created (cudaDeviceReset) took the old allocation with it.
  if (b->ptr != 0 && buffer_id(b->ptr) != b->buffer_id) b->ptr = 0, b->bytes = 0;
  if (b->bytes < bytes) {
    if (b->ptr != 0) {
      SIGJIT_CHECK_CU(driver().cuCtxSynchronize());  // earlier calls may still read it
      driver().cuMemFree(b->ptr);
      b->ptr = 0, b->bytes = 0;
    }
    if (const CUresult st = driver().cuMemAlloc(&b->ptr, bytes); st != CUDA_SUCCESS) {
      b->ptr = 0;
      throw Error(fmt::format("workspace: could not allocate {} B for {}: {}; {}", bytes, purpose, cu_error_text(st), instead), ErrorKind::cuda);
    }
    ++g_allocations;
    b->bytes = bytes;
    b->buffer_id = buffer_id(b->ptr);
  }
  return WorkspaceLease(b->ptr, std::move(lock));
}

void release_workspaces(CUcontext context) {
  std::vector<std::shared_ptr<Buffer>> mine;
  {
    std::lock_guard<std::mutex> lock(g_table_mutex);
    for (auto it = table().begin(); it != table().end();) {
      if (it->first.first == context) {
        mine.push_back(it->second);
        it = table().erase(it);
      } else {
        ++it;
      }
    }
  }
  if (mine.empty()) return;
  SIGJIT_CHECK_CU(driver().cuCtxSynchronize());
  for (const auto& b : mine) {
    std::lock_guard<std::mutex> lock(b->mutex);
    if (b->ptr != 0 && buffer_id(b->ptr) == b->buffer_id) driver().cuMemFree(b->ptr);
    b->ptr = 0, b->bytes = 0;
  }
}

long workspace_allocation_count() { return g_allocations.load(); }

}  // namespace sigjit::detail
