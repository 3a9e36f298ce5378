// sigjit::validate() and sigjit_validate(): every host-side argument check, with fake (never
// dereferenced) 16-byte-aligned device pointers. Each failing case asserts that sigjit::Error of
// kind invalid_argument is thrown and that its message names the offending argument.
#include <sigjit/sigjit.h>
#include <sigjit/sigjit.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

void* fake_ptr(std::uintptr_t address) { return reinterpret_cast<void*>(address); }
const std::int32_t* fake_lens(std::uintptr_t address) { return reinterpret_cast<const std::int32_t*>(address); }

// A valid dense problem: B=2, L=16, H=4, D=64.
sigjit::AttentionArgs dense_args() {
  sigjit::AttentionArgs a;
  a.batch = 2;
  a.seqlen_q = 16;
  a.seqlen_k = 16;
  a.heads_q = 4;
  a.head_dim = 64;
  a.q = fake_ptr(0x10000);
  a.k = fake_ptr(0x20000);
  a.v = fake_ptr(0x30000);
  a.o = fake_ptr(0x40000);
  return a;
}

const std::int32_t kPaddedLensQ[2] = {16, 5};
const std::int32_t kPaddedLensK[2] = {3, 16};

sigjit::AttentionArgs padded_args() {
  sigjit::AttentionArgs a = dense_args();
  a.layout = sigjit::Layout::padded;
  a.seq_lens_q = fake_lens(0x50000);
  a.seq_lens_k = fake_lens(0x60000);
  a.host_seq_lens_q = kPaddedLensQ;
  a.host_seq_lens_k = kPaddedLensK;
  return a;
}

const std::int32_t kCuQ[3] = {0, 7, 20};   // lengths 7, 13
const std::int32_t kCuK[3] = {0, 30, 31};  // lengths 30, 1

sigjit::AttentionArgs varlen_args() {
  sigjit::AttentionArgs a = dense_args();
  a.layout = sigjit::Layout::varlen;
  a.seqlen_q = 13;  // max over the batch
  a.seqlen_k = 30;
  a.total_q = 20;
  a.total_k = 32;
  a.cu_seqlens_q = fake_lens(0x50000);
  a.cu_seqlens_k = fake_lens(0x60000);
  a.host_cu_seqlens_q = kCuQ;
  a.host_cu_seqlens_k = kCuK;
  return a;
}

// Runs validate() and returns the message of the sigjit::Error it must throw (fails otherwise).
std::string validation_error(const sigjit::AttentionArgs& a) {
  try {
    sigjit::validate(a);
  } catch (const sigjit::Error& e) {
    EXPECT_EQ(e.kind(), sigjit::ErrorKind::invalid_argument) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "validate threw a std::exception that is not sigjit::Error: " << e.what();
    return {};
  }
  ADD_FAILURE() << "validate accepted invalid arguments";
  return {};
}

#define EXPECT_VALID(args) EXPECT_NO_THROW(sigjit::validate(args))

// ---- valid arguments ---------------------------------------------------------------------------

TEST(Validation, DenseDefaultsPass) { EXPECT_VALID(dense_args()); }

TEST(Validation, EverySupportedHeadDimPasses) {
  for (int d : {32, 64, 96, 128, 256}) {
    auto a = dense_args();
    a.head_dim = d;
    EXPECT_VALID(a) << "head_dim " << d;
  }
}

TEST(Validation, BothDtypesAndSigmoidModesPass) {
  for (auto dtype : {sigjit::DType::bf16, sigjit::DType::fp16})
    for (auto sig : {sigjit::SigmoidMode::fast, sigjit::SigmoidMode::exact}) {
      auto a = dense_args();
      a.dtype = dtype;
      a.sigmoid = sig;
      EXPECT_VALID(a);
    }
}

TEST(Validation, PaddedWithHostLengthsPasses) { EXPECT_VALID(padded_args()); }

TEST(Validation, PaddedWithoutHostLengthsPasses) {
  auto a = padded_args();  // device arrays only: nothing to check on the host
  a.host_seq_lens_q = nullptr;
  a.host_seq_lens_k = nullptr;
  EXPECT_VALID(a);
}

TEST(Validation, VarlenWithHostOffsetsPasses) { EXPECT_VALID(varlen_args()); }

TEST(Validation, VarlenSelfAttentionSharingOneOffsetArrayPasses) {
  auto a = varlen_args();
  a.seqlen_k = a.seqlen_q;
  a.total_k = a.total_q;
  a.cu_seqlens_k = a.cu_seqlens_q;
  a.host_cu_seqlens_k = a.host_cu_seqlens_q;
  EXPECT_VALID(a);
}

TEST(Validation, GqaAndMqaPass) {
  for (int kv : {1, 2, 4}) {
    auto a = dense_args();
    a.heads_q = 8;
    a.heads_kv = kv;
    EXPECT_VALID(a) << "heads_kv " << kv;
  }
}

TEST(Validation, EmptyProblemsPass) {
  auto a = dense_args();
  a.batch = 0;
  EXPECT_VALID(a);
  a = dense_args();
  a.seqlen_q = 0;
  EXPECT_VALID(a);
  a = dense_args();
  a.seqlen_k = 0;
  EXPECT_VALID(a);
}

TEST(Validation, CustomStridesPass) {
  // [B, H, L, D] (heads outer), sliced from a larger padded buffer.
  auto a = dense_args();
  a.q_strides = {/*batch*/ 4 * 16 * 72, /*token*/ 72, /*head*/ 16 * 72};
  a.k_strides = a.q_strides;
  a.v_strides = a.q_strides;
  a.o_strides = a.q_strides;
  EXPECT_VALID(a);
  // Q, K and V as slices of one packed [B, L, 3, H, D] buffer.
  a = dense_args();
  const std::int64_t token = 3 * 4 * 64;
  a.q_strides = a.k_strides = a.v_strides = {16 * token, token, 64};
  EXPECT_VALID(a);
}

TEST(Validation, OutputInSequenceMajorLayoutPasses) {
  // O as [L, B, H, D] (Megatron's "sbhd"): the batch stride is smaller than the token stride,
  // yet no two output elements share memory.
  auto a = dense_args();
  a.o_strides = {/*batch*/ 4 * 64, /*token*/ 2 * 4 * 64, /*head*/ 64};
  EXPECT_VALID(a);
}

TEST(Validation, TightlyPaddedHeadStridePasses) {
  // Head stride 72 > head_dim 64; tokens start right after the last head's 64 elements.
  auto a = dense_args();
  a.q_strides = {16 * 280, 3 * 72 + 64, 72};  // 280: the extent of 4 heads
  EXPECT_VALID(a);
}

TEST(Validation, ScoreBiasWithWideStridePasses) {
  auto a = dense_args();
  a.score_bias = reinterpret_cast<const float*>(fake_ptr(0x70000));
  EXPECT_VALID(a);  // stride 0: seqlen_k
  a.score_bias_stride = 64;
  EXPECT_VALID(a);
}

TEST(Validation, ExplicitScaleAndScalarBiasPass) {
  auto a = dense_args();
  a.scale = 0.5f;
  a.bias_mode = sigjit::BiasMode::scalar;
  a.bias = -3.0f;
  EXPECT_VALID(a);
}

// ---- pointers ----------------------------------------------------------------------------------

TEST(Validation, NullTensorPointers) {
  for (const char* name : {"q", "k", "v", "o"}) {
    auto a = dense_args();
    if (name == std::string("q")) a.q = nullptr;
    if (name == std::string("k")) a.k = nullptr;
    if (name == std::string("v")) a.v = nullptr;
    if (name == std::string("o")) a.o = nullptr;
    EXPECT_THAT(validation_error(a), AllOf(StartsWith(std::string(name) + ":"), HasSubstr("null pointer"))) << name;
  }
}

TEST(Validation, MisalignedTensorPointers) {
  for (const char* name : {"q", "k", "v", "o"}) {
    auto a = dense_args();
    if (name == std::string("q")) a.q = fake_ptr(0x10008);
    if (name == std::string("k")) a.k = fake_ptr(0x20002);
    if (name == std::string("v")) a.v = fake_ptr(0x30004);
    if (name == std::string("o")) a.o = fake_ptr(0x40001);
    EXPECT_THAT(validation_error(a), AllOf(StartsWith(std::string(name) + ":"), HasSubstr("16-byte aligned"))) << name;
  }
}

TEST(Validation, MisalignedScoreBias) {
  auto a = dense_args();
  a.score_bias = reinterpret_cast<const float*>(fake_ptr(0x70002));
  EXPECT_THAT(validation_error(a), AllOf(HasSubstr("score_bias"), HasSubstr("4-byte aligned")));
}

// ---- shapes and enums --------------------------------------------------------------------------

TEST(Validation, UnsupportedHeadDimListsSupportedDims) {
  for (int d : {0, 16, 48, 100, 160, 512, -64}) {
    auto a = dense_args();
    a.head_dim = d;
    EXPECT_THAT(validation_error(a), AllOf(HasSubstr("head_dim=" + std::to_string(d)), HasSubstr("32, 64, 96, 128, 256"))) << d;
  }
}

TEST(Validation, BadDtypeEnum) {
  auto a = dense_args();
  a.dtype = static_cast<sigjit::DType>(7);
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("dtype"), HasSubstr("bf16, fp16 or fp8_e4m3")));
}

// FP8 (issue 22): what the FP8 forward cannot take is refused by name, before any device access.
TEST(Validation, Fp8HeadDimsAre64And128) {
  auto a = dense_args();
  a.dtype = sigjit::DType::fp8_e4m3;
  a.head_dim = 128;
  EXPECT_NO_THROW(sigjit::validate(a));
  for (int hd : {32, 96, 256}) {
    a.head_dim = hd;
    EXPECT_THAT(validation_error(a), AllOf(StartsWith("head_dim=" + std::to_string(hd)), HasSubstr("fp8_e4m3 supports head dims 64 and 128")));
  }
}

TEST(Validation, Fp8StridesAreMultiplesOf16Elements) {
  auto a = dense_args();
  a.dtype = sigjit::DType::fp8_e4m3;
  a.k_strides.token = 4 * 64 + 8;  // fine for 16-bit elements, not for one-byte ones
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("k_strides.token=264"), HasSubstr("multiples of 16 elements")));
  a.dtype = sigjit::DType::bf16;
  EXPECT_NO_THROW(sigjit::validate(a));
}

TEST(Validation, DescaleFactorsBelongToFp8AndAreChecked) {
  auto a = dense_args();
  static const float factors[4] = {1.f, 2.f, 3.f, 4.f};
  a.v_descale = factors;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("q_descale/k_descale/v_descale"), HasSubstr("fp8_e4m3")));
  a.dtype = sigjit::DType::fp8_e4m3;
  EXPECT_NO_THROW(sigjit::validate(a));
  a.k_descale = reinterpret_cast<const float*>(reinterpret_cast<const char*>(factors) + 2);
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("k_descale"), HasSubstr("4-byte aligned")));
  a.k_descale = factors;
  a.descale_stride_head = -1;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("descale_stride_batch=0, descale_stride_head=-1"), HasSubstr(">= 0")));
}

TEST(Validation, BadLayoutEnum) {
  auto a = dense_args();
  a.layout = static_cast<sigjit::Layout>(-1);
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("layout"), HasSubstr("dense, padded or varlen")));
}

// One bad field per case: the error starts with the field (and its value) and says `hint`.
struct BadField {
  sigjit::AttentionArgs (*make)();
  void (*mutate)(sigjit::AttentionArgs&);
  const char* starts_with;
  const char* hint = "";
};

void expect_each_rejected(std::initializer_list<BadField> cases) {
  for (const BadField& c : cases) {
    sigjit::AttentionArgs a = c.make();
    c.mutate(a);
    EXPECT_THAT(validation_error(a), AllOf(StartsWith(c.starts_with), HasSubstr(c.hint))) << c.starts_with;
  }
}

using Args = sigjit::AttentionArgs;

TEST(Validation, BadBiasModeAndSigmoidEnums) {
  expect_each_rejected({
      {dense_args, [](Args& a) { a.bias_mode = static_cast<sigjit::BiasMode>(2); }, "bias_mode"},
      {dense_args, [](Args& a) { a.sigmoid = static_cast<sigjit::SigmoidMode>(5); }, "sigmoid"},
  });
}

TEST(Validation, BothCausalAlignmentsPass) {
  for (bool causal : {false, true})
    for (auto align : {sigjit::CausalAlign::bottom_right, sigjit::CausalAlign::top_left}) {
      auto a = padded_args();
      a.causal = causal;
      a.causal_align = align;
      EXPECT_VALID(a);
    }
}

TEST(Validation, BadCausalAlignEnumNamesTheAllowedValues) {
  for (bool causal : {false, true}) {  // checked even where it is ignored, like every enum
    auto a = dense_args();
    a.causal = causal;
    a.causal_align = static_cast<sigjit::CausalAlign>(2);
    EXPECT_THAT(validation_error(a), AllOf(StartsWith("causal_align=2"), HasSubstr("bottom_right"), HasSubstr("top_left")));
  }
}

TEST(Validation, NegativeBatchAndSequenceLengths) {
  expect_each_rejected({
      {dense_args, [](Args& a) { a.batch = -1; }, "batch=-1"},
      {dense_args, [](Args& a) { a.seqlen_q = -5; }, "seqlen_q=-5"},
      {dense_args, [](Args& a) { a.seqlen_k = -1; }, "seqlen_k=-1"},
      {varlen_args, [](Args& a) { a.total_q = -1; }, "total_q=-1"},
      {varlen_args, [](Args& a) { a.total_k = -3; }, "total_k=-3"},
  });
}

TEST(Validation, BatchBeyondGridLimit) {
  expect_each_rejected({{dense_args, [](Args& a) { a.batch = 65536; }, "batch=65536", "65535"}});
}

TEST(Validation, HeadsOutOfRangeOrNotGrouped) {
  expect_each_rejected({
      {dense_args, [](Args& a) { a.heads_q = 0; }, "heads_q=0"},
      {dense_args, [](Args& a) { a.heads_kv = -2; }, "heads_kv=-2"},
      {dense_args, [](Args& a) { a.heads_q = 6, a.heads_kv = 4; }, "heads_kv=4", "heads_q=6 must be a positive multiple"},
      {dense_args, [](Args& a) { a.heads_q = 2, a.heads_kv = 4; }, "heads_kv=4"},  // more kv heads than query heads
  });
}

// ---- strides -----------------------------------------------------------------------------------

TEST(Validation, StridesNotMultipleOf8) {
  struct Case {
    const char* expected;
    sigjit::Strides sigjit::AttentionArgs::*member;
    sigjit::Strides strides;
  };
  const Case cases[] = {
      {"q_strides.head=68", &sigjit::AttentionArgs::q_strides, {0, 0, 68}},
      {"k_strides.token=260", &sigjit::AttentionArgs::k_strides, {0, 260, 0}},
      {"v_strides.batch=4100", &sigjit::AttentionArgs::v_strides, {4100, 0, 0}},
      {"o_strides.token=257", &sigjit::AttentionArgs::o_strides, {0, 257, 0}},
  };
  for (const Case& c : cases) {
    auto a = dense_args();
    a.*c.member = c.strides;
    EXPECT_THAT(validation_error(a), AllOf(StartsWith(c.expected), HasSubstr("multiples of 8"))) << c.expected;
  }
}

TEST(Validation, NegativeStrides) {
  auto a = dense_args();
  a.k_strides.token = -256;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("k_strides.token=-256"), HasSubstr("positive")));
}

// Strides that would make heads, tokens or (for the written O) batch entries overlap.
TEST(Validation, OverlappingStrides) {
  expect_each_rejected({
      {dense_args, [](Args& a) { a.q_strides = {0, 0, 32}; }, "q_strides.head=32", "heads would overlap"},  // 32 < head_dim 64
      {dense_args, [](Args& a) { a.heads_q = 1, a.v_strides = {0, 16, 0}; }, "v_strides.token=16", "tokens would overlap"},
      // 4 heads of stride 64 need 256 elements per token; a token stride of 128 overlaps them.
      {dense_args, [](Args& a) { a.k_strides = {0, 128, 64}; }, "k_strides", "overlap"},
      // Heads outer: 16 tokens of stride 64 need 1024 elements per head; head stride 512 overlaps.
      {dense_args, [](Args& a) { a.o_strides = {0, 64, 512}; }, "o_strides", "overlap"},
      // One batch entry of O spans 16 * 256 = 4096 elements; a batch stride of 2048 overlaps.
      {dense_args, [](Args& a) { a.o_strides = {2048, 0, 0}; }, "o_strides.batch=2048", "overlap"},
      // Batch between heads and tokens ([L, B, H, D]-like), but one batch entry's 4 heads span
      // 256 elements and the batch stride is 128.
      {dense_args, [](Args& a) { a.o_strides = {128, 2 * 4 * 64, 64}; }, "o_strides.batch=128", "overlap"},
      // Batch stride equal to the head stride: batch 1 head 0 == batch 0 head 1.
      {dense_args, [](Args& a) { a.o_strides = {64, 0, 0}; }, "o_strides.batch=64"},
  });
}

TEST(Validation, OverlappingInputBatchesAreAllowed) {
  // Inputs are only read, so batches may alias (e.g. one K/V broadcast over a batch of queries).
  auto a = dense_args();
  a.k_strides = {8, 0, 0};
  a.v_strides = {8, 0, 0};
  EXPECT_VALID(a);
}

TEST(Validation, VarlenIgnoresBatchStride) {
  auto a = varlen_args();
  a.q_strides.batch = 3;  // meaningless for a packed buffer
  EXPECT_VALID(a);
}

// ---- layouts and their length arrays -----------------------------------------------------------

// Each layout needs its own length arrays and rejects the other's, naming the array.
TEST(Validation, LengthArraysMatchTheLayout) {
  expect_each_rejected({
      {padded_args, [](Args& a) { a.seq_lens_q = nullptr; }, "seq_lens_q/seq_lens_k: ", "padded layout needs"},
      {padded_args, [](Args& a) { a.seq_lens_k = nullptr; }, "seq_lens_q/seq_lens_k: ", "padded layout needs"},
      {dense_args, [](Args& a) { a.seq_lens_k = fake_lens(0x60000); }, "seq_lens_q/seq_lens_k: ", "only used by layout padded"},
      {varlen_args, [](Args& a) { a.seq_lens_q = fake_lens(0x60000); }, "seq_lens_q/seq_lens_k: ", "only used by layout padded"},
      {varlen_args, [](Args& a) { a.cu_seqlens_q = nullptr; }, "cu_seqlens_q/cu_seqlens_k: ", "varlen layout needs"},
      {varlen_args, [](Args& a) { a.cu_seqlens_k = nullptr; }, "cu_seqlens_q/cu_seqlens_k: ", "varlen layout needs"},
      {dense_args, [](Args& a) { a.cu_seqlens_q = fake_lens(0x50000); }, "cu_seqlens_q/cu_seqlens_k: ", "only used by layout varlen"},
  });
}

TEST(Validation, HostSeqLensBeyondBuffer) {
  const std::int32_t too_long_q[2] = {16, 17};
  auto a = padded_args();
  a.host_seq_lens_q = too_long_q;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("seq_lens_q[1]=17"), HasSubstr("seqlen_q=16")));
  const std::int32_t too_long_k[2] = {99, 1};
  a = padded_args();
  a.host_seq_lens_k = too_long_k;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("seq_lens_k[0]=99"), HasSubstr("seqlen_k=16")));
  const std::int32_t negative[2] = {1, -1};
  a = padded_args();
  a.host_seq_lens_q = negative;
  EXPECT_THAT(validation_error(a), StartsWith("seq_lens_q[1]=-1"));
}

TEST(Validation, HostCuSeqlensNotStartingAtZero) {
  const std::int32_t cu[3] = {1, 7, 20};
  auto a = varlen_args();
  a.host_cu_seqlens_q = cu;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("cu_seqlens_q[0]=1"), HasSubstr("must be 0")));
}

TEST(Validation, HostCuSeqlensNotMonotonic) {
  const std::int32_t cu[3] = {0, 20, 19};
  auto a = varlen_args();
  a.host_cu_seqlens_k = cu;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("cu_seqlens_k"), HasSubstr("not monotonic")));
}

TEST(Validation, HostCuSeqlensBeyondTotal) {
  const std::int32_t cu[3] = {0, 8, 21};  // total_q = 20; lengths 8 and 13 fit max_seqlen_q
  auto a = varlen_args();
  a.host_cu_seqlens_q = cu;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("cu_seqlens_q[2]=21"), HasSubstr("total_q=20")));
  const std::int32_t cu_k[3] = {0, 30, 33};  // total_k = 32
  a = varlen_args();
  a.host_cu_seqlens_k = cu_k;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("cu_seqlens_k[2]=33"), HasSubstr("total_k=32")));
}

TEST(Validation, HostCuSeqlensLongerThanMaxSeqlen) {
  auto a = varlen_args();
  a.seqlen_q = 12;  // the second sequence has 13 tokens
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("cu_seqlens_q"), HasSubstr("sequence 1 has 13 tokens"), HasSubstr("max_seqlen_q=12")));
  a = varlen_args();
  a.seqlen_k = 29;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("cu_seqlens_k"), HasSubstr("sequence 0 has 30 tokens"), HasSubstr("max_seqlen_k=29")));
}

TEST(Validation, SharedHostCuSeqlensCheckedAgainstKeyLimits) {
  // Self-attention often passes one offsets array for both; the key side must still be checked
  // against total_k and max_seqlen_k.
  auto a = varlen_args();
  a.cu_seqlens_k = a.cu_seqlens_q;
  a.host_cu_seqlens_k = a.host_cu_seqlens_q;  // {0, 7, 20}
  a.seqlen_k = 13;
  a.total_k = 19;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("cu_seqlens_k[2]=20"), HasSubstr("total_k=19")));
  a.total_k = 20;
  a.seqlen_k = 12;
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("cu_seqlens_k"), HasSubstr("max_seqlen_k=12")));
}

TEST(Validation, HostLengthsOfTheOtherLayoutAreIgnored) {
  // Host cu_seqlens are irrelevant to a padded problem (and vice versa).
  const std::int32_t garbage[3] = {5, -1, 1000};
  auto a = padded_args();
  a.host_cu_seqlens_q = garbage;
  a.host_cu_seqlens_k = garbage;
  EXPECT_VALID(a);
  a = varlen_args();
  a.host_seq_lens_q = garbage;
  a.host_seq_lens_k = garbage;
  EXPECT_VALID(a);
}

// ---- score bias, scale, bias -------------------------------------------------------------------

TEST(Validation, ScoreBiasStrideTooSmall) {
  auto a = dense_args();
  a.score_bias = reinterpret_cast<const float*>(fake_ptr(0x70000));
  a.score_bias_stride = 8;  // < seqlen_k 16
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("score_bias_stride=8"), HasSubstr("seqlen_k=16")));
}

TEST(Validation, NonFiniteScale) {
  for (float s : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    auto a = dense_args();
    a.scale = s;
    EXPECT_THAT(validation_error(a), AllOf(StartsWith("scale="), HasSubstr("finite"))) << s;
  }
}

TEST(Validation, NonFiniteScalarBias) {
  auto a = dense_args();
  a.bias_mode = sigjit::BiasMode::scalar;
  a.bias = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("bias="), HasSubstr("finite")));
  a.bias = -std::numeric_limits<float>::infinity();
  EXPECT_THAT(validation_error(a), AllOf(StartsWith("bias="), HasSubstr("finite")));
  // Under log_n the scalar bias is unused and not checked.
  a.bias_mode = sigjit::BiasMode::log_n;
  EXPECT_VALID(a);
}

// ---- C API -------------------------------------------------------------------------------------

sigjit_attention_args c_dense_args() {
  sigjit_attention_args a = sigjit_attention_args_default();
  a.batch = 2;
  a.seqlen_q = 16;
  a.seqlen_k = 16;
  a.heads_q = 4;
  a.head_dim = 64;
  a.q = fake_ptr(0x10000);
  a.k = fake_ptr(0x20000);
  a.v = fake_ptr(0x30000);
  a.o = fake_ptr(0x40000);
  return a;
}

TEST(CApi, DefaultsMatchTheCppDefaults) {
  const sigjit_attention_args a = sigjit_attention_args_default();
  EXPECT_EQ(a.struct_size, static_cast<int32_t>(sizeof(sigjit_attention_args)));
  EXPECT_EQ(a.dtype, SIGJIT_BF16);
  EXPECT_EQ(a.layout, SIGJIT_DENSE);
  EXPECT_EQ(a.validate_lengths, 1);
  EXPECT_EQ(a.has_scale, 0);
  EXPECT_EQ(a.bias_mode, SIGJIT_BIAS_LOG_N);
  EXPECT_EQ(a.sigmoid, SIGJIT_SIGMOID_FAST);
  EXPECT_EQ(a.causal_align, SIGJIT_CAUSAL_BOTTOM_RIGHT);
  EXPECT_EQ(a.reserved0, 0);
  EXPECT_EQ(a.q, nullptr);
}

TEST(CApi, ValidArgumentsReturnOk) {
  sigjit_attention_args a = c_dense_args();
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_OK) << sigjit_last_error();
  a.heads_q = 8;
  a.heads_kv = 2;
  a.dtype = SIGJIT_FP16;
  a.causal = 1;
  a.has_scale = 1;
  a.scale = 0.25f;
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_OK) << sigjit_last_error();
}

TEST(CApi, ValidPaddedAndVarlenReturnOk) {
  sigjit_attention_args a = c_dense_args();
  a.layout = SIGJIT_PADDED;
  a.seq_lens_q = fake_lens(0x50000);
  a.seq_lens_k = fake_lens(0x60000);
  a.host_seq_lens_q = kPaddedLensQ;
  a.host_seq_lens_k = kPaddedLensK;
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_OK) << sigjit_last_error();

  a = c_dense_args();
  a.layout = SIGJIT_VARLEN;
  a.seqlen_q = 13;
  a.seqlen_k = 30;
  a.total_q = 20;
  a.total_k = 32;
  a.cu_seqlens_q = fake_lens(0x50000);
  a.cu_seqlens_k = fake_lens(0x60000);
  a.host_cu_seqlens_q = kCuQ;
  a.host_cu_seqlens_k = kCuK;
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_OK) << sigjit_last_error();
}

TEST(CApi, InvalidArgumentNamesTheArgument) {
  sigjit_attention_args a = c_dense_args();
  a.head_dim = 80;
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), AllOf(HasSubstr("head_dim=80"), HasSubstr("32, 64, 96, 128, 256")));

  a = c_dense_args();
  a.v = nullptr;
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("v: null pointer"));

  a = c_dense_args();
  a.has_scale = 1;
  a.scale = std::numeric_limits<float>::infinity();
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("scale=inf"));

  a = c_dense_args();
  a.layout = static_cast<sigjit_layout>(9);
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("layout"));

  const std::int32_t cu_bad[3] = {0, 9, 8};
  a = c_dense_args();
  a.layout = SIGJIT_VARLEN;
  a.total_q = a.total_k = 20;
  a.cu_seqlens_q = a.cu_seqlens_k = fake_lens(0x50000);
  a.host_cu_seqlens_q = a.host_cu_seqlens_k = cu_bad;
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), AllOf(StartsWith("cu_seqlens_q"), HasSubstr("not monotonic")));
}

TEST(CApi, ScaleIsOnlyUsedWithHasScale) {
  sigjit_attention_args a = c_dense_args();
  a.scale = std::numeric_limits<float>::quiet_NaN();  // ignored: has_scale = 0
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_OK) << sigjit_last_error();
}

TEST(CApi, NullArgs) {
  EXPECT_EQ(sigjit_validate(nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), AllOf(StartsWith("args"), HasSubstr("null pointer")));
  EXPECT_EQ(sigjit_forward(nullptr, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), AllOf(StartsWith("args"), HasSubstr("null pointer")));
}

// sizeof(sigjit_attention_args) before causal_align and reserved0 were appended: the struct up to
// and including `sigmoid`, rounded up to its 8-byte alignment (288 on LP64).
constexpr std::size_t kPreviousArgsSize = (offsetof(sigjit_attention_args, causal_align) + 7) / 8 * 8;
static_assert(kPreviousArgsSize < sizeof(sigjit_attention_args), "the two versions must differ in struct_size");

TEST(CApi, CausalAlignTopLeftIsAccepted) {
  sigjit_attention_args a = c_dense_args();
  a.causal = 1;
  a.causal_align = SIGJIT_CAUSAL_TOP_LEFT;
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_OK) << sigjit_last_error();
}

TEST(CApi, CausalAlignOutOfRangeNamesTheAllowedValues) {
  sigjit_attention_args a = c_dense_args();
  a.causal = 1;
  a.causal_align = static_cast<sigjit_causal_align>(3);
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), AllOf(StartsWith("causal_align=3"), HasSubstr("bottom_right (0) or top_left (1)")));
}

TEST(CApi, ReservedFieldMustBeZero) {
  sigjit_attention_args a = c_dense_args();
  a.reserved0 = 1;
  EXPECT_EQ(sigjit_validate(&a), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("args.reserved0"));
}

// A caller built against the header before causal_align: its struct is kPreviousArgsSize bytes,
// and the library reads no byte past them (the buffer below ends there; bytes that would be
// causal_align and reserved0 in this version hold values that would be rejected if read).
TEST(CApi, PreviousStructSizeIsAcceptedAndReadsBottomRight) {
  struct alignas(8) Previous {
    unsigned char bytes[kPreviousArgsSize];
  };
  const sigjit_attention_args current = c_dense_args();
  auto old = std::make_unique<Previous>();
  std::memcpy(old->bytes, &current, kPreviousArgsSize);
  const int32_t size = static_cast<int32_t>(kPreviousArgsSize);
  std::memcpy(old->bytes + offsetof(sigjit_attention_args, struct_size), &size, sizeof(size));
  const auto* args = reinterpret_cast<const sigjit_attention_args*>(old->bytes);
  EXPECT_EQ(sigjit_validate(args), SIGJIT_OK) << sigjit_last_error();

  // Same size, with garbage where the new fields would be: still not read.
  sigjit_attention_args padded = current;
  padded.struct_size = size;
  padded.causal = 1;
  padded.causal_align = static_cast<sigjit_causal_align>(77);
  padded.reserved0 = 5;
  EXPECT_EQ(sigjit_validate(&padded), SIGJIT_OK) << sigjit_last_error();
  // The full size reads them, and rejects both.
  padded.struct_size = sizeof(sigjit_attention_args);
  EXPECT_EQ(sigjit_validate(&padded), SIGJIT_ERROR_INVALID_ARGUMENT);
  padded.reserved0 = 0;
  EXPECT_EQ(sigjit_validate(&padded), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("causal_align=77"));
  // Every entry point takes the previous size (forward fails later, on the missing driver or
  // device pointers, never on the size).
  padded.struct_size = size;
  EXPECT_NE(sigjit_forward(&padded, nullptr), SIGJIT_OK);
  EXPECT_THAT(sigjit_last_error(), ::testing::Not(StartsWith("args.struct_size")));
}

// A caller built against the header before the FP8 descale factors (struct up to reserved0):
// accepted, and the library reads nothing past it; the full size reads the factors.
TEST(CApi, StructSizeBeforeTheDescaleFactorsIsAcceptedAndReadsNone) {
  constexpr std::size_t kV2 = offsetof(sigjit_attention_args, q_descale);
  struct alignas(8) Previous {
    unsigned char bytes[kV2];
  };
  sigjit_attention_args current = c_dense_args();
  auto old = std::make_unique<Previous>();
  std::memcpy(old->bytes, &current, kV2);
  const int32_t size = static_cast<int32_t>(kV2);
  std::memcpy(old->bytes + offsetof(sigjit_attention_args, struct_size), &size, sizeof(size));
  EXPECT_EQ(sigjit_validate(reinterpret_cast<const sigjit_attention_args*>(old->bytes)), SIGJIT_OK) << sigjit_last_error();
  // Garbage where the factors would be (a misaligned pointer, a negative stride): not read at the
  // old size, refused at the full size.
  current.k_descale = reinterpret_cast<const float*>(std::uintptr_t{0x10002});
  current.descale_stride_head = -3;
  current.struct_size = size;
  EXPECT_EQ(sigjit_validate(&current), SIGJIT_OK) << sigjit_last_error();
  current.struct_size = sizeof(sigjit_attention_args);
  EXPECT_EQ(sigjit_validate(&current), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("q_descale/k_descale/v_descale"));  // bf16 with descales
  current.dtype = SIGJIT_FP8_E4M3;
  EXPECT_EQ(sigjit_validate(&current), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("k_descale"));
}

TEST(CApi, WrongStructSize) {
  sigjit_attention_args a = c_dense_args();
  for (int32_t size : {0, static_cast<int32_t>(sizeof(a)) - 4, static_cast<int32_t>(sizeof(a)) - 16, static_cast<int32_t>(sizeof(a)) + 8}) {
    a.struct_size = size;
    EXPECT_EQ(sigjit_validate(&a), SIGJIT_ERROR_INVALID_ARGUMENT) << size;
    EXPECT_THAT(sigjit_last_error(), StartsWith("args.struct_size")) << size;
    EXPECT_EQ(sigjit_forward(&a, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT) << size;
    EXPECT_THAT(sigjit_last_error(), StartsWith("args.struct_size")) << size;
  }
}

TEST(CApi, LastErrorIsPerThreadAndKeptUntilTheNextFailure) {
  sigjit_attention_args bad = c_dense_args();
  bad.head_dim = 7;
  ASSERT_EQ(sigjit_validate(&bad), SIGJIT_ERROR_INVALID_ARGUMENT);
  std::string other_thread;
  std::thread([&] {
    sigjit_attention_args b = c_dense_args();
    b.o = nullptr;
    EXPECT_EQ(sigjit_validate(&b), SIGJIT_ERROR_INVALID_ARGUMENT);
    other_thread = sigjit_last_error();
  }).join();
  EXPECT_THAT(other_thread, StartsWith("o: null pointer"));
  EXPECT_THAT(sigjit_last_error(), StartsWith("head_dim=7"));  // untouched by the other thread
}

TEST(CApi, ForwardValidatesBeforeTouchingTheDriver) {
  // An invalid argument is reported as such even where no driver exists.
  sigjit_attention_args a = c_dense_args();
  a.heads_kv = 3;
  EXPECT_EQ(sigjit_forward(&a, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("heads_kv=3"));
}

TEST(CApi, ForwardWithoutDriverReportsCudaError) {
  if (void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    dlclose(lib);
    GTEST_SKIP() << "libcuda.so.1 loads on this machine, so the no-driver path cannot be exercised here";
  }
  sigjit_attention_args a = c_dense_args();
  EXPECT_EQ(sigjit_forward(&a, nullptr), SIGJIT_ERROR_CUDA);
  EXPECT_THAT(sigjit_last_error(), AllOf(HasSubstr("no CUDA driver"), HasSubstr("libcuda.so.1")));

  sigjit::AttentionArgs cpp = dense_args();
  try {
    sigjit::forward(cpp, nullptr);
    FAIL() << "forward succeeded without a CUDA driver";
  } catch (const sigjit::Error& e) {
    EXPECT_EQ(e.kind(), sigjit::ErrorKind::cuda);
    EXPECT_THAT(e.what(), HasSubstr("no CUDA driver"));
  }
}

// Host-checkable errors (here: host length arrays that do not fit the buffer) are reported by
// forward() as argument errors before any CUDA call: on a machine without a GPU or driver the
// caller gets the argument's name, not "no CUDA driver".
TEST(CApi, ForwardChecksHostLengthsBeforeTouchingTheDriver) {
  const auto forward_error = [](const sigjit::AttentionArgs& a) {
    try {
      sigjit::forward(a, nullptr);
    } catch (const sigjit::Error& e) {
      EXPECT_EQ(e.kind(), sigjit::ErrorKind::invalid_argument) << e.what();
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::int32_t too_long_q[2] = {16, 17};
  auto a = padded_args();
  a.host_seq_lens_q = too_long_q;
  EXPECT_THAT(forward_error(a), StartsWith("seq_lens_q[1]=17"));
  const std::int32_t beyond_total[3] = {0, 8, 21};  // total_q = 20
  a = varlen_args();
  a.host_cu_seqlens_q = beyond_total;
  EXPECT_THAT(forward_error(a), StartsWith("cu_seqlens_q[2]=21"));
  const std::int32_t not_monotonic[3] = {0, 20, 19};
  a = varlen_args();
  a.host_cu_seqlens_k = not_monotonic;
  EXPECT_THAT(forward_error(a), AllOf(StartsWith("cu_seqlens_k"), HasSubstr("not monotonic")));

  sigjit_attention_args c = c_dense_args();
  c.layout = SIGJIT_PADDED;
  c.seq_lens_q = fake_lens(0x50000);
  c.seq_lens_k = fake_lens(0x60000);
  const std::int32_t too_long_k[2] = {99, 1};
  c.host_seq_lens_q = kPaddedLensQ;
  c.host_seq_lens_k = too_long_k;
  EXPECT_EQ(sigjit_forward(&c, nullptr), SIGJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(sigjit_last_error(), StartsWith("seq_lens_k[0]=99"));
}

TEST(CApi, VersionNamesLibraryAndNvrtc) {
  EXPECT_THAT(sigjit_version(), AllOf(StartsWith("sigjit "), HasSubstr("NVRTC")));
  EXPECT_THAT(sigjit::version(), AllOf(StartsWith("sigjit "), HasSubstr("NVRTC")));
}

}  // namespace
