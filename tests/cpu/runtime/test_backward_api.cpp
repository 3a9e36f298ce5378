// backward() argument validation, BackwardOptions/workspace checks and workspace arithmetic, and
// their C API mirror, without a GPU.
#include <sigjit/sigjit.h>
#include <sigjit/sigjit.hpp>

#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

void* fake(std::uintptr_t address) { return reinterpret_cast<void*>(address); }

sigjit::AttentionArgs valid_args() {
  sigjit::AttentionArgs a;
  a.batch = 2, a.seqlen_q = 64, a.seqlen_k = 64, a.heads_q = 4, a.heads_kv = 2, a.head_dim = 64;
  a.q = fake(0x10000), a.k = fake(0x20000), a.v = fake(0x30000);  // o may stay null for backward
  return a;
}

sigjit::Gradients valid_grads() {
  sigjit::Gradients g;
  g.dout = fake(0x40000), g.dq = fake(0x50000), g.dk = fake(0x60000), g.dv = fake(0x70000);
  return g;
}

std::string backward_error(const sigjit::AttentionArgs& a, const sigjit::Gradients& g, const sigjit::BackwardOptions& o = {}) {
  try {
    sigjit::backward(a, g, nullptr, o);
  } catch (const sigjit::Error& e) {
    return e.what();
  }
  return "no error";
}

class BackwardApi : public ::testing::Test {};

// Sets the gradient pointer `name` of g, for the tests that break one at a time.
void set_gradient_pointer(sigjit::Gradients& g, const std::string& name, void* p) {
  if (name == "dout") g.dout = p;
  if (name == "dq") g.dq = p;
  if (name == "dk") g.dk = p;
  if (name == "dv") g.dv = p;
}

TEST_F(BackwardApi, EachGradientPointerIsCheckedByName) {
  const std::pair<std::string, std::uintptr_t> pointers[] = {{"dout", 0x40000}, {"dq", 0x50000}, {"dk", 0x60000}, {"dv", 0x70000}};
  for (const auto& [name, address] : pointers) {
    sigjit::Gradients g = valid_grads();
    set_gradient_pointer(g, name, nullptr);
    EXPECT_THAT(backward_error(valid_args(), g), HasSubstr(name + ": null pointer"));
    // 8 bytes off: the kernels read dout and write dq, dk and dv in 16-byte pieces.
    g = valid_grads();
    set_gradient_pointer(g, name, fake(address + 8));
    EXPECT_THAT(backward_error(valid_args(), g), AllOf(HasSubstr(name + ": pointer"), HasSubstr("16-byte aligned")));
  }
}

TEST_F(BackwardApi, GradientStridesAreCheckedLikeTheirTensors) {
  sigjit::Gradients g = valid_grads();
  g.dk_strides = {0, 4, 64};  // token stride not a multiple of 8
  EXPECT_THAT(backward_error(valid_args(), g), HasSubstr("dk_strides.token"));
  g = valid_grads();
  g.dout_strides = {0, 0, 32};  // heads would overlap
  EXPECT_THAT(backward_error(valid_args(), g), HasSubstr("dout_strides.head"));
}

TEST_F(BackwardApi, ForwardArgumentsAreValidatedToo) {
  sigjit::AttentionArgs a = valid_args();
  a.head_dim = 80;
  EXPECT_THAT(backward_error(a, valid_grads()), HasSubstr("head_dim=80"));
}

TEST_F(BackwardApi, WithoutADriverSaysSo) {
  if (void* h = dlopen("libcuda.so.1", RTLD_NOW)) {
    dlclose(h);
    GTEST_SKIP() << "a CUDA driver is present; this checks the no-driver path";
  }
  EXPECT_THAT(backward_error(valid_args(), valid_grads()), HasSubstr("no CUDA driver"));
}

// Host length arrays are checked before any CUDA call, as forward() does: without a GPU or
// driver the caller gets the argument error, not "no CUDA driver".
TEST_F(BackwardApi, HostLengthsAreCheckedBeforeTheDevice) {
  sigjit::AttentionArgs a = valid_args();
  a.layout = sigjit::Layout::padded;
  a.seq_lens_q = a.seq_lens_k = static_cast<const std::int32_t*>(fake(0x80000));
  const std::int32_t lens_q[2] = {64, 3}, lens_k[2] = {65, 3};  // seqlen_k = 64
  a.host_seq_lens_q = lens_q;
  a.host_seq_lens_k = lens_k;
  EXPECT_THAT(backward_error(a, valid_grads()), AllOf(HasSubstr("seq_lens_k[0]=65"), HasSubstr("seqlen_k=64")));
  a = valid_args();
  a.layout = sigjit::Layout::varlen;
  a.total_q = a.total_k = 100;
  a.cu_seqlens_q = a.cu_seqlens_k = static_cast<const std::int32_t*>(fake(0x80000));
  const std::int32_t cu[3] = {0, 50, 101};
  a.host_cu_seqlens_q = a.host_cu_seqlens_k = cu;
  EXPECT_THAT(backward_error(a, valid_grads()), AllOf(HasSubstr("cu_seqlens_q[2]=101"), HasSubstr("total_q=100")));
  sigjit_attention_args c = sigjit_attention_args_default();
  c.batch = 2, c.seqlen_q = c.seqlen_k = 64, c.heads_q = 4, c.heads_kv = 2, c.head_dim = 64, c.layout = SIGJIT_PADDED;
  c.q = fake(0x10000), c.k = fake(0x20000), c.v = fake(0x30000);
  c.seq_lens_q = c.seq_lens_k = static_cast<const std::int32_t*>(fake(0x80000));
  c.host_seq_lens_q = lens_q;
  c.host_seq_lens_k = lens_k;
  sigjit_gradients g{};
  g.dout = fake(0x40000), g.dq = fake(0x50000), g.dk = fake(0x60000), g.dv = fake(0x70000);
  EXPECT_EQ(sigjit_backward(&c, &g, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("seq_lens_k[0]=65"));
}

TEST_F(BackwardApi, BackwardPathOverrideIsCheckedBeforeTheDevice) {
  setenv("SIGJIT_BACKWARD_PATH", "fastest", 1);
  const std::string error = backward_error(valid_args(), valid_grads());
  unsetenv("SIGJIT_BACKWARD_PATH");
  EXPECT_THAT(error, HasSubstr("SIGJIT_BACKWARD_PATH=fastest: expected fused, two_kernel or ordered"));
}

TEST_F(BackwardApi, CApiReportsNullGradients) {
  sigjit_attention_args a = sigjit_attention_args_default();
  EXPECT_EQ(sigjit_backward(&a, nullptr, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("grads"));
  sigjit_gradients g{};
  a.batch = 1, a.seqlen_q = a.seqlen_k = 16, a.heads_q = 1, a.head_dim = 64;
  a.q = fake(0x10000), a.k = fake(0x20000), a.v = fake(0x30000);
  EXPECT_EQ(sigjit_backward(&a, &g, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("dout: null pointer"));
}

// ---- workspace ------------------------------------------------------------------------------

constexpr std::size_t kDenseWorkspace = 4u * 2 * 64 * 4 * 64;  // fp32 x batch x seqlen_q x heads_q x head_dim
// After the fast path's values, the persistent kernel's counters: 16 bytes (its tile and zeroing
// job counters), then two arrays of one int per sequence (2), each rounded up to 16 bytes.
constexpr std::size_t kTileCounter = 16 + 16 + 16;

TEST_F(BackwardApi, WorkspaceSizeIsOneFp32PerDqElement) {
  sigjit::AttentionArgs a = valid_args();  // 2 x 64 queries, 4 query heads (GQA over 2 kv heads), hd 64
  EXPECT_EQ(sigjit::backward_workspace_size(a), kDenseWorkspace + kTileCounter);
  // Deterministic: the ordered reduction's values and counters (2 sequences x 4 query heads x one
  // 64-row block) at hd 64 and 128; nothing where the two-kernel pair serves every GPU (hd 32).
  EXPECT_EQ(sigjit::backward_workspace_size(a, /*deterministic=*/true), kDenseWorkspace + 4u * 2 * 4 * 1);
  {
    sigjit::AttentionArgs small = a;
    small.head_dim = 32;
    EXPECT_EQ(sigjit::backward_workspace_size(small, /*deterministic=*/true), 0u);
  }
  a.seqlen_k = 333;  // keys do not matter
  EXPECT_EQ(sigjit::backward_workspace_size(a), kDenseWorkspace + kTileCounter);
  a.layout = sigjit::Layout::padded;  // the whole buffer, padding included
  a.seq_lens_q = a.seq_lens_k = static_cast<const std::int32_t*>(fake(0x80000));
  EXPECT_EQ(sigjit::backward_workspace_size(a), kDenseWorkspace + kTileCounter);
  a = valid_args();
  a.layout = sigjit::Layout::varlen;  // packed rows: total_q
  a.total_q = 100, a.total_k = 90;
  a.cu_seqlens_q = a.cu_seqlens_k = static_cast<const std::int32_t*>(fake(0x80000));
  EXPECT_EQ(sigjit::backward_workspace_size(a), 4u * 100 * 4 * 64 + kTileCounter);
  a = valid_args();
  a.batch = 5;  // each array of per-sequence counters: 20 bytes, rounded up to 32
  EXPECT_EQ(sigjit::backward_workspace_size(a), kDenseWorkspace / 2 * 5 + 16 + 2 * 32);
  a.batch = 0;
  EXPECT_EQ(sigjit::backward_workspace_size(a), 0u);
  a = valid_args();
  a.head_dim = 80;  // the arguments are validated
  EXPECT_THROW(sigjit::backward_workspace_size(a), sigjit::Error);
}

TEST_F(BackwardApi, CallerWorkspaceIsCheckedByNameWithTheSizeNeeded) {
  constexpr std::size_t kNeed = kDenseWorkspace + kTileCounter;
  const std::string need = std::to_string(kNeed) + " B";
  sigjit::BackwardOptions o;
  o.workspace_bytes = kNeed;  // no pointer
  EXPECT_THAT(backward_error(valid_args(), valid_grads(), o), AllOf(HasSubstr("workspace: null pointer"), HasSubstr(need)));
  o.workspace = fake(0x90004);  // misaligned
  EXPECT_THAT(backward_error(valid_args(), valid_grads(), o), AllOf(HasSubstr("workspace: pointer"), HasSubstr("16-byte aligned"), HasSubstr(need)));
  o.workspace = fake(0x90000);
  o.workspace_bytes = kDenseWorkspace;  // the values without the counters
  EXPECT_THAT(backward_error(valid_args(), valid_grads(), o),
              AllOf(HasSubstr("workspace: workspace_bytes=" + std::to_string(kDenseWorkspace)), HasSubstr("too small"), HasSubstr(need)));
  // Gradient tensors are checked first, and a valid workspace passes on to the device checks.
  o.workspace_bytes = kNeed;
  sigjit::Gradients g = valid_grads();
  g.dk = nullptr;
  EXPECT_THAT(backward_error(valid_args(), g, o), HasSubstr("dk: null pointer"));
  EXPECT_THAT(backward_error(valid_args(), valid_grads(), o), Not(HasSubstr("workspace")));
}

// Deterministic mode takes a workspace where the ordered reduction may run (hd 64 and 128), checked
// like the fast path's, and ignores one where only the two-kernel pair serves (hd 32).
TEST_F(BackwardApi, DeterministicModeChecksTheWorkspaceWhereItUsesOne) {
  sigjit::BackwardOptions o;
  o.deterministic = true;
  o.workspace = fake(0x90004);
  o.workspace_bytes = 1;
  EXPECT_THAT(backward_error(valid_args(), valid_grads(), o), AllOf(StartsWith("workspace: pointer"), HasSubstr("16-byte aligned")));
  o.workspace = fake(0x90000);
  EXPECT_THAT(backward_error(valid_args(), valid_grads(), o),
              AllOf(StartsWith("workspace: workspace_bytes=1 is too small"), HasSubstr(std::to_string(kDenseWorkspace + 32))));
  sigjit::AttentionArgs a = valid_args();
  a.head_dim = 32;
  o.workspace = fake(0x90004);
  EXPECT_THAT(backward_error(a, valid_grads(), o), Not(HasSubstr("workspace")));
}

TEST_F(BackwardApi, CApiOptionsAndWorkspaceSize) {
  const sigjit_backward_options d = sigjit_backward_options_default();
  EXPECT_EQ(d.struct_size, static_cast<int32_t>(sizeof(sigjit_backward_options)));
  EXPECT_EQ(d.deterministic, 0);
  EXPECT_EQ(d.workspace, nullptr);
  EXPECT_EQ(d.workspace_bytes, 0u);

  sigjit_attention_args a = sigjit_attention_args_default();
  a.batch = 2, a.seqlen_q = a.seqlen_k = 64, a.heads_q = 4, a.heads_kv = 2, a.head_dim = 64;
  a.q = fake(0x10000), a.k = fake(0x20000), a.v = fake(0x30000);
  size_t bytes = 1;
  ASSERT_EQ(sigjit_backward_workspace_size(&a, 0, &bytes), SIGJIT_OK) << sigjit_last_error();
  EXPECT_EQ(bytes, kDenseWorkspace + kTileCounter);
  ASSERT_EQ(sigjit_backward_workspace_size(&a, 1, &bytes), SIGJIT_OK);
  EXPECT_EQ(bytes, kDenseWorkspace + 32u);  // the ordered reduction's counters: 2 x 4 x 1 ints
  EXPECT_EQ(sigjit_backward_workspace_size(&a, 0, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("bytes: null pointer"));
  a.head_dim = 80;
  EXPECT_EQ(sigjit_backward_workspace_size(&a, 0, &bytes), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("head_dim=80"));
  a.head_dim = 64;

  sigjit_gradients g{};
  g.dout = fake(0x40000), g.dq = fake(0x50000), g.dk = fake(0x60000), g.dv = fake(0x70000);
  sigjit_backward_options o = sigjit_backward_options_default();
  o.struct_size -= 8;  // built against another version
  EXPECT_EQ(sigjit_backward_ex(&a, &g, &o, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("options.struct_size"));
  o = sigjit_backward_options_default();
  o.workspace = fake(0x90000), o.workspace_bytes = 64;
  EXPECT_EQ(sigjit_backward_ex(&a, &g, &o, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(),
              AllOf(HasSubstr("workspace: workspace_bytes=64"), HasSubstr(std::to_string(kDenseWorkspace + kTileCounter) + " B")));
  // NULL options are the defaults: validation reaches the device checks (no GPU here, or fake pointers).
  EXPECT_NE(sigjit_backward_ex(&a, &g, nullptr, nullptr), SIGJIT_OK);
  EXPECT_THAT(sigjit_last_error(), Not(HasSubstr("options")));
}

}  // namespace

namespace {

// FP8 is forward only: the backward refuses it by name before any device access.
TEST(BackwardApiFp8, IsRefusedBeforeAnyDeviceAccess) {
  sigjit::AttentionArgs a = valid_args();
  a.dtype = sigjit::DType::fp8_e4m3;
  EXPECT_THAT(backward_error(a, valid_grads()), ::testing::AllOf(::testing::StartsWith("dtype=fp8_e4m3"), ::testing::HasSubstr("forward only")));
}

}  // namespace
