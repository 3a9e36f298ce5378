// forward()'s ForwardOptions: the FP8 forward's caller workspace (what the PyTorch binding passes
// so that a CUDA graph capture allocates nothing outside PyTorch's pool), its size, its checks and
// the C API mirror, without a GPU: every check here comes before the first device call.
#include <sigjit/sigjit.h>
#include <sigjit/sigjit.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

void* fake(std::uintptr_t address) { return reinterpret_cast<void*>(address); }

sigjit::AttentionArgs fp8_args() {
  sigjit::AttentionArgs a;
  a.batch = 2, a.seqlen_q = 100, a.seqlen_k = 100, a.heads_q = 4, a.heads_kv = 2, a.head_dim = 64;
  a.dtype = sigjit::DType::fp8_e4m3;
  a.q = fake(0x10000), a.k = fake(0x20000), a.v = fake(0x30000), a.o = fake(0x40000);
  return a;
}

// V^T as the prologue writes it: per (sequence, kv head) head_dim rows of the keys rounded up
// to the permutation's 16-key groups, one byte each (sm90/fp8_layout.h).
constexpr std::size_t kDenseVt = 2u * 2 * 64 * 112;

// options.fp8's copies before the V^T: Q (2 x 100 rows x 4 heads x 64 B), K and V (2 heads
// each), then amax and descale (3 x 2 x 2 floats each), every part rounded up to 256 B.
constexpr std::size_t kDenseQuantized = 51200 + 25600 + 25600 + 256 + 256;

std::string forward_error(const sigjit::AttentionArgs& a, const sigjit::ForwardOptions& o) {
  try {
    sigjit::forward(a, nullptr, o);
  } catch (const sigjit::Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(ForwardApi, WorkspaceSizeIsTheFp8VtAndZeroFor16Bit) {
  sigjit::AttentionArgs a = fp8_args();
  EXPECT_EQ(sigjit::forward_workspace_size(a), kDenseVt);
  a.layout = sigjit::Layout::varlen;  // one slab over total_k, plus the gaps between sequences
  a.total_q = a.total_k = 150;
  static const std::int32_t cu[3] = {0, 100, 150};
  a.cu_seqlens_q = a.cu_seqlens_k = cu;
  a.host_cu_seqlens_q = a.host_cu_seqlens_k = cu;
  EXPECT_EQ(sigjit::forward_workspace_size(a), 2u * 64 * (160 + 32 * 3));
  for (const auto dtype : {sigjit::DType::bf16, sigjit::DType::fp16}) {
    sigjit::AttentionArgs b = fp8_args();
    b.dtype = dtype;
    EXPECT_EQ(sigjit::forward_workspace_size(b), 0u);
  }
  sigjit::AttentionArgs bad = fp8_args();
  bad.head_dim = 96;  // FP8 serves hd 64 and 128: the size validates like forward()
  EXPECT_THROW(sigjit::forward_workspace_size(bad), sigjit::Error);
}

TEST(ForwardApi, CallerWorkspaceIsCheckedByNameWithTheSizeNeeded) {
  const std::string need = std::to_string(kDenseVt) + " B";
  sigjit::ForwardOptions o;
  o.workspace_bytes = kDenseVt;  // no pointer
  EXPECT_THAT(forward_error(fp8_args(), o),
              AllOf(StartsWith("workspace: null pointer"), HasSubstr(need), HasSubstr("forward_workspace_size")));
  o.workspace = fake(0x90008);  // misaligned
  EXPECT_THAT(forward_error(fp8_args(), o), AllOf(StartsWith("workspace: pointer"), HasSubstr("16-byte aligned")));
  o.workspace = fake(0x90000);
  o.workspace_bytes = kDenseVt - 1;
  EXPECT_THAT(forward_error(fp8_args(), o), AllOf(HasSubstr("too small"), HasSubstr(need)));
  o.workspace_bytes = kDenseVt;  // right: on to the device checks
  EXPECT_THAT(forward_error(fp8_args(), o), Not(HasSubstr("workspace")));
  // A 16-bit forward uses none: whatever is passed is ignored.
  sigjit::AttentionArgs b = fp8_args();
  b.dtype = sigjit::DType::bf16;
  o.workspace = fake(0x90008), o.workspace_bytes = 1;
  EXPECT_THAT(forward_error(b, o), Not(HasSubstr("workspace")));
}

TEST(ForwardApi, CApiOptionsAndWorkspaceSize) {
  const sigjit_forward_options d = sigjit_forward_options_default();
  EXPECT_EQ(d.struct_size, static_cast<int32_t>(sizeof(sigjit_forward_options)));
  EXPECT_EQ(d.fp8, 0);
  EXPECT_EQ(d.workspace, nullptr);
  EXPECT_EQ(d.workspace_bytes, 0u);

  sigjit_attention_args a = sigjit_attention_args_default();
  a.batch = 2, a.seqlen_q = a.seqlen_k = 100, a.heads_q = 4, a.heads_kv = 2, a.head_dim = 64;
  a.dtype = SIGJIT_FP8_E4M3;
  a.q = fake(0x10000), a.k = fake(0x20000), a.v = fake(0x30000), a.o = fake(0x40000);
  size_t bytes = 1;
  ASSERT_EQ(sigjit_forward_workspace_size(&a, &bytes), SIGJIT_OK) << sigjit_last_error();
  EXPECT_EQ(bytes, kDenseVt);
  EXPECT_EQ(sigjit_forward_workspace_size(&a, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("bytes: null pointer"));

  sigjit_forward_options o = sigjit_forward_options_default();
  o.struct_size -= 8;  // built against another version
  EXPECT_EQ(sigjit_forward_ex(&a, &o, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("options.struct_size"));
  o = sigjit_forward_options_default();
  o.fp8 = 1;  // on e4m3 inputs: refused by name
  EXPECT_EQ(sigjit_forward_ex(&a, &o, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("options.fp8: q, k and v are already float8_e4m3fn"));
  a.dtype = SIGJIT_BF16;  // the size with the quantized copies, as the C++ overload reports
  ASSERT_EQ(sigjit_forward_workspace_size_ex(&a, &o, &bytes), SIGJIT_OK) << sigjit_last_error();
  EXPECT_EQ(bytes, kDenseQuantized + kDenseVt);
  ASSERT_EQ(sigjit_forward_workspace_size_ex(&a, nullptr, &bytes), SIGJIT_OK) << sigjit_last_error();
  EXPECT_EQ(bytes, 0u);
  EXPECT_EQ(sigjit_forward_workspace_size_ex(&a, &o, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  a.dtype = SIGJIT_FP8_E4M3;
  o = sigjit_forward_options_default();
  o.workspace = fake(0x90000), o.workspace_bytes = 64;
  EXPECT_EQ(sigjit_forward_ex(&a, &o, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), AllOf(HasSubstr("workspace: workspace_bytes=64"), HasSubstr(std::to_string(kDenseVt) + " B")));
  // NULL options are the defaults: validation reaches the device checks.
  EXPECT_NE(sigjit_forward_ex(&a, nullptr, nullptr), SIGJIT_OK);
  EXPECT_THAT(sigjit_last_error(), Not(HasSubstr("options")));
}

// ForwardOptions::fp8 (bf16 inputs quantized on the fly): what it takes, refused by name before
// any device call, and the workspace its copies add.
TEST(ForwardApi, Fp8OptionTakesBf16InputsWithoutFactors) {
  sigjit::ForwardOptions o;
  o.fp8 = true;
  sigjit::AttentionArgs bf16 = fp8_args();
  bf16.dtype = sigjit::DType::bf16;
  EXPECT_EQ(sigjit::forward_workspace_size(bf16, o), kDenseQuantized + kDenseVt);
  EXPECT_EQ(sigjit::forward_workspace_size(bf16), 0u);  // without the option, a 16-bit forward needs none

  EXPECT_THAT(forward_error(fp8_args(), o), StartsWith("options.fp8: q, k and v are already float8_e4m3fn"));
  sigjit::AttentionArgs fp16 = bf16;
  fp16.dtype = sigjit::DType::fp16;
  EXPECT_THAT(forward_error(fp16, o), AllOf(StartsWith("options.fp8:"), HasSubstr("convert the inputs to bf16")));
  sigjit::AttentionArgs with_factors = bf16;
  static const float one = 1.f;
  with_factors.k_descale = &one;
  EXPECT_THAT(forward_error(with_factors, o), AllOf(StartsWith("options.fp8:"), HasSubstr("k_descale")));
  sigjit::AttentionArgs hd96 = bf16;  // a bf16 head dim the FP8 forward does not serve
  hd96.head_dim = 96;
  EXPECT_THAT(forward_error(hd96, o), AllOf(StartsWith("options.fp8: "), HasSubstr("head_dim")));
  EXPECT_THROW(sigjit::forward_workspace_size(hd96, o), sigjit::Error);

  // Caller workspaces are checked against the whole size, copies included.
  o.workspace = fake(0x90000);
  o.workspace_bytes = kDenseQuantized + kDenseVt - 1;
  EXPECT_THAT(forward_error(bf16, o), AllOf(HasSubstr("too small"), HasSubstr(std::to_string(kDenseQuantized + kDenseVt) + " B")));
  o.workspace_bytes += 1;  // right: on to the device checks
  EXPECT_THAT(forward_error(bf16, o), Not(HasSubstr("workspace")));

  // Varlen: the copies hold total_q and total_k rows.
  sigjit::AttentionArgs varlen = bf16;
  varlen.layout = sigjit::Layout::varlen;
  varlen.total_q = varlen.total_k = 150;
  static const std::int32_t cu[3] = {0, 100, 150};
  varlen.cu_seqlens_q = varlen.cu_seqlens_k = cu;
  varlen.host_cu_seqlens_q = varlen.host_cu_seqlens_k = cu;
  sigjit::AttentionArgs varlen_fp8 = varlen;
  varlen_fp8.dtype = sigjit::DType::fp8_e4m3;
  EXPECT_EQ(sigjit::forward_workspace_size(varlen, sigjit::ForwardOptions{.fp8 = true}),
            38400u + 19200 + 19200 + 256 + 256 + sigjit::forward_workspace_size(varlen_fp8));
}

// prepare() with PrepareOptions::fp8 validates like forward() with ForwardOptions::fp8 (host
// checks first), and the C struct of the previous version (without fp8) is still accepted.
TEST(ForwardApi, PrepareFp8ChecksLikeTheForwardAndTheOldCStructStillWorks) {
  const auto prepare_error = [](const sigjit::AttentionArgs& a, const sigjit::PrepareOptions& p) -> std::string {
    try {
      sigjit::prepare(a, p);
    } catch (const sigjit::Error& e) {
      return e.what();
    }
    return "no error";
  };
  sigjit::PrepareOptions p;
  p.fp8 = true;
  EXPECT_THAT(prepare_error(fp8_args(), p), StartsWith("options.fp8: q, k and v are already float8_e4m3fn"));
  sigjit::AttentionArgs bf16 = fp8_args();
  bf16.dtype = sigjit::DType::bf16;
  bf16.head_dim = 96;
  EXPECT_THAT(prepare_error(bf16, p), AllOf(StartsWith("options.fp8: "), HasSubstr("head_dim")));
  p.forward = false;
  EXPECT_THAT(prepare_error(bf16, p), HasSubstr("set options.forward too"));

  sigjit_attention_args a = sigjit_attention_args_default();
  a.batch = 2, a.seqlen_q = a.seqlen_k = 100, a.heads_q = 4, a.heads_kv = 2, a.head_dim = 64;
  a.dtype = SIGJIT_FP8_E4M3;
  a.q = fake(0x10000), a.k = fake(0x20000), a.v = fake(0x30000), a.o = fake(0x40000);
  sigjit_prepare_options o = sigjit_prepare_options_default();
  EXPECT_EQ(o.fp8, 0);
  o.fp8 = 1;
  EXPECT_EQ(sigjit_prepare(&a, &o), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("options.fp8: q, k and v are already"));
  o.struct_size = static_cast<int32_t>(offsetof(sigjit_prepare_options, fp8));  // built against the previous sigjit.h
  EXPECT_NE(sigjit_prepare(&a, &o), SIGJIT_OK);                                 // no GPU here: the device check, never fp8's refusal
  EXPECT_THAT(sigjit_last_error(), Not(HasSubstr("options")));
  o.struct_size = 12;
  EXPECT_EQ(sigjit_prepare(&a, &o), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), HasSubstr("options.struct_size"));
}

}  // namespace
