// GPU test entry point. Without a usable CUDA device the whole binary is one skip with the
// reason (exit code 77, which CTest reports as "Skipped"), instead of a thousand per-case skips
// that bury the CPU results; on the device every case runs and reports on its own.
#include "tests/common/gpu_env.hpp"

#include <gtest/gtest.h>

#include <cstdio>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();
  if (const std::string why = sigjit::testing::gpu_unavailable_reason(); !why.empty()) {
    std::printf("SKIPPED: all %d GPU tests: %s. Run them on a machine with an NVIDIA GPU "
                "(scripts/device_run.sh).\n",
                ::testing::UnitTest::GetInstance()->total_test_count(), why.c_str());
    return 77;
  }
  return RUN_ALL_TESTS();
}
