// Finding F13: the C API's validation arithmetic with extreme strides and sizes, and C enum
// fields holding values outside their enums. Every case must be a named invalid-argument error,
// with no signed overflow or out-of-range enum load on the way (the sanitizer build, setup.sh
// --test's build/asan, runs this file under UBSan, where either would abort).
#include <sigjit/sigjit.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

namespace {

using ::testing::HasSubstr;

void* fake(std::uintptr_t address) { return reinterpret_cast<void*>(address); }

sigjit_attention_args small_args() {
  sigjit_attention_args a = sigjit_attention_args_default();
  a.batch = 2;
  a.seqlen_q = a.seqlen_k = 16;
  a.heads_q = 3;
  a.head_dim = 64;
  a.q = a.k = a.v = fake(0x100000);
  a.o = fake(0x200000);
  return a;
}

std::string error_of(const sigjit_attention_args& a) {
  const sigjit_status st = sigjit_validate(&a);
  EXPECT_EQ(st, SIGJIT_ERROR_INVALID_ARGUMENT);
  return st == SIGJIT_OK ? std::string() : std::string(sigjit_last_error());
}

TEST(CApiBounds, StridesWhoseOverlapCheckWouldOverflowAreRefused) {
  // Heads 0 and 2 are 2^63 elements apart: the same address once the offset wraps.
  sigjit_attention_args a = small_args();
  a.q_strides.head = std::int64_t{1} << 62;
  a.q_strides.token = (std::int64_t{1} << 62) + 64;
  EXPECT_THAT(error_of(a), HasSubstr("q_strides"));
}

TEST(CApiBounds, AHugeHeadStrideIsNamedNotTheTokenStrideDerivedFromIt) {
  sigjit_attention_args a = small_args();
  a.heads_q = 2;
  a.v_strides.head = std::numeric_limits<std::int64_t>::max() - 7;
  const std::string e = error_of(a);
  EXPECT_THAT(e, HasSubstr("v_strides"));
  EXPECT_THAT(e, HasSubstr("v_strides.head=9223372036854775800"));
  EXPECT_THAT(e, ::testing::Not(HasSubstr("token=-")));
}

TEST(CApiBounds, ATensorBeyondTheAddressSpaceIsRefused) {
  sigjit_attention_args a = small_args();
  a.q_strides.batch = std::int64_t{1} << 62;
  EXPECT_THAT(error_of(a), HasSubstr("q_strides"));
  sigjit_attention_args b = small_args();
  b.k_strides.token = std::numeric_limits<std::int64_t>::max() / 8 * 8;
  EXPECT_THAT(error_of(b), HasSubstr("k_strides"));
}

TEST(CApiBounds, TheWorkspaceSizeNeverWrapsToZero) {
  // 16384 x 2^30 x 4096 x 64 x 4 B = 2^64 B: wrapped to 0 before, which a 16-byte workspace met.
  sigjit_attention_args b = sigjit_attention_args_default();
  b.batch = 16384;
  b.seqlen_q = b.seqlen_k = 1 << 30;
  b.heads_q = 4096;
  b.head_dim = 64;
  b.q = b.k = b.v = fake(0x100000);
  b.o = fake(0x200000);
  std::size_t n = 1;
  const sigjit_status st = sigjit_backward_workspace_size(&b, 0, &n);
  EXPECT_NE(st, SIGJIT_OK) << "n=" << n;
  if (st != SIGJIT_OK) EXPECT_THAT(sigjit_last_error(), ::testing::AnyOf(HasSubstr("strides"), HasSubstr("workspace")));
}

TEST(CApiBounds, OutOfRangeEnumsAreNamedWithTheirAllowedValues) {
  struct Case {
    const char* field;
    std::size_t offset;
    const char* allowed;
  };
  const Case cases[] = {
      {"dtype", offsetof(sigjit_attention_args, dtype), "bf16, fp16 or fp8_e4m3 (0, 1 or 2)"},
      {"layout", offsetof(sigjit_attention_args, layout), "dense, padded or varlen (0, 1 or 2)"},
      {"bias_mode", offsetof(sigjit_attention_args, bias_mode), "log_n or scalar (0 or 1)"},
      {"sigmoid", offsetof(sigjit_attention_args, sigmoid), "fast or exact (0 or 1)"},
  };
  for (const Case& c : cases) {
    for (const std::int32_t bad : {7, -1, std::numeric_limits<std::int32_t>::max()}) {
      sigjit_attention_args a = small_args();
      std::memcpy(reinterpret_cast<char*>(&a) + c.offset, &bad, sizeof bad);  // as a C caller could store it
      const std::string e = error_of(a);
      EXPECT_THAT(e, HasSubstr(std::string(c.field) + "=" + std::to_string(bad))) << c.field;
      EXPECT_THAT(e, HasSubstr(c.allowed)) << c.field;
    }
  }
}

}  // namespace
