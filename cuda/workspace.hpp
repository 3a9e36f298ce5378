// The fused backward's fp32 dQ workspace when the caller passes none (and the FP8 forward's V^T): one device buffer per
// (context, stream), grown when a call needs more and otherwise reused, so the steady state
// allocates nothing.
// Why per stream: calls on different streams may run concurrently and must not share a buffer;
// calls on one stream are ordered by it. A buffer is locked while a call enqueues its zeroing,
// fused kernel and convert kernel, so two threads sharing a stream cannot interleave them.
// Lifetime: growing frees the old buffer after cuCtxSynchronize (rare: a bigger shape than ever
// before). Buffers are never freed at process exit (the driver frees them with the context; the
// driver may already be unloading when static destructors run); a buffer whose context was
// destroyed is detected by its allocation id and replaced, never freed or reused.
// Cost per call in the steady state: one map lookup and one cuPointerGetAttribute.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <memory>
#include <mutex>

namespace sigjit::detail {

// A workspace locked for one backward call: the pointer stays valid and unshared while held.
class WorkspaceLease {
 public:
  WorkspaceLease(CUdeviceptr ptr, std::unique_lock<std::mutex> lock) : ptr_(ptr), lock_(std::move(lock)) {}
  CUdeviceptr ptr() const { return ptr_; }

 private:
  CUdeviceptr ptr_;
  std::unique_lock<std::mutex> lock_;
};

// At least `bytes` bytes (256-byte aligned) for work on `stream` in `context` (current on the
// calling thread), locked until the lease is destroyed. `purpose` and `instead` complete the
// out-of-memory error: what the buffer is for, and what the caller can do.
WorkspaceLease acquire_workspace(CUcontext context, CUstream stream, std::size_t bytes, const char* purpose = "the backward's dQ workspace",
                                 const char* instead = "pass BackwardOptions::workspace or use deterministic mode (no workspace)");

// Frees every workspace of `context` after synchronising it (waits for calls in flight).
void release_workspaces(CUcontext context);

// Device allocations the pool has made in this process (tests: the steady state makes none).
long workspace_allocation_count();

}  // namespace sigjit::detail
