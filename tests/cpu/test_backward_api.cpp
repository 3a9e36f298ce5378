// backward() argument validation and its experimental guard, without a GPU.
#include <sigjit/sigjit.h>
#include <sigjit/sigjit.hpp>

#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace {

using ::testing::HasSubstr;

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

std::string backward_error(const sigjit::AttentionArgs& a, const sigjit::Gradients& g) {
  try {
    sigjit::backward(a, g, nullptr);
  } catch (const sigjit::Error& e) {
    return e.what();
  }
  return "no error";
}

class BackwardApi : public ::testing::Test {};

TEST_F(BackwardApi, EachGradientPointerIsCheckedByName) {
  for (const char* name : {"dout", "dq", "dk", "dv"}) {
    sigjit::Gradients g = valid_grads();
    const std::string which = name;
    if (which == "dout") g.dout = nullptr;
    if (which == "dq") g.dq = nullptr;
    if (which == "dk") g.dk = nullptr;
    if (which == "dv") g.dv = nullptr;
    EXPECT_THAT(backward_error(valid_args(), g), HasSubstr(which + ": null pointer"));
  }
  sigjit::Gradients g = valid_grads();
  g.dq = fake(0x50008);
  EXPECT_THAT(backward_error(valid_args(), g), HasSubstr("dq: pointer"));
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

}  // namespace
