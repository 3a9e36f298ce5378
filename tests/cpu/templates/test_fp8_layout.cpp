// The FP8 forward's P and V^T layouts (templates/sigjit/sm90/fp8_layout.h, the header the kernel
// and its prologue use) on the host: for every thread of a warpgroup, packing its f32 score
// accumulators into e4m3 A-fragment registers (fp8_p_source) and reading V^T columns permuted by
// fp8_pv_key must pair every score with the V row of its own key, in the layouts the PTX ISA gives
// for the f32 accumulator (m64nN) and the 8-bit A fragment (m64k32). And the varlen column
// origins must keep sequences' V^T columns apart and 16-aligned for any lengths.
#include "sigjit/sm90/fp8_layout.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <utility>
#include <vector>

namespace {

namespace sm90 = sigjit::kern::sm90;

struct Cell {
  int row, col;
};

// f32 accumulator s[i] of a thread (warp w of the warpgroup, lane): n8 block j = i / 4, row half
// (i / 2) % 2, column pair element i % 2.
Cell accumulator_cell(int warp, int lane, int i) {
  return {16 * warp + lane / 4 + 8 * ((i / 2) % 2), 8 * (i / 4) + 2 * (lane % 4) + i % 2};
}

// Byte t of register q of an 8-bit m64k32 A fragment: k = 16 (q / 2) + 4 (lane % 4) + t, row
// half q % 2.
Cell fragment_cell(int warp, int lane, int q, int t) { return {16 * warp + lane / 4 + 8 * (q % 2), 16 * (q / 2) + 4 * (lane % 4) + t}; }

TEST(Fp8Layout, KeyPermutationIsABijectionAndItsInverse) {
  std::set<int> keys;
  for (int l = 0; l < sm90::kFp8KeyGroup; ++l) {
    const int n = sm90::fp8_pv_key(l);
    ASSERT_GE(n, 0);
    ASSERT_LT(n, sm90::kFp8KeyGroup);
    keys.insert(n);
    EXPECT_EQ(sm90::fp8_pv_position(n), l) << "key " << n;
  }
  EXPECT_EQ(keys.size(), 16u);
  EXPECT_NE(sm90::fp8_pv_key(2), 2) << "the identity would mean the accumulator already is the A fragment: it is not";
}

TEST(Fp8Layout, EveryPackedScoreMeetsTheVRowOfItsOwnKey) {
  for (int kk = 0; kk < 4; ++kk)  // a 128-key tile: four k32 steps
    for (int warp = 0; warp < 4; ++warp)
      for (int lane = 0; lane < 32; ++lane) {
        std::set<int> sources;
        for (int q = 0; q < 4; ++q)
          for (int t = 0; t < 4; ++t) {
            const int src = sm90::fp8_p_source(q, t);
            ASSERT_GE(src, 0);
            ASSERT_LT(src, 16);
            sources.insert(src);
            const Cell score = accumulator_cell(warp, lane, 16 * kk + src);
            const Cell operand = fragment_cell(warp, lane, q, t);
            ASSERT_EQ(score.row, operand.row) << "lane " << lane << " q " << q << " t " << t;
            // The V^T column the wgmma pairs with k position `operand.col` of step kk holds key
            // 32 kk + 16 (col / 16) + fp8_pv_key(col % 16) of the tile.
            const int key = 32 * kk + 16 * (operand.col / 16) + sm90::fp8_pv_key(operand.col % 16);
            ASSERT_EQ(key, score.col) << "lane " << lane << " q " << q << " t " << t;
          }
        ASSERT_EQ(sources.size(), 16u) << "each of the 16 scores of a step packed exactly once";
      }
}

TEST(Fp8Layout, VarlenColumnOriginsAreAlignedAndDisjoint) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    const int batch = 1 + (int)(rng() % 9);
    std::vector<long long> cu(batch + 1, 0);
    for (int b = 0; b < batch; ++b) cu[b + 1] = cu[b] + (trial % 3 == 0 ? (long long)(rng() % 40) : (long long)(rng() % 3000));
    const long long columns = sm90::fp8_vt_columns(true, batch, cu[batch]);
    long long previous_end = 0;
    for (int b = 0; b < batch; ++b) {
      const long long start = sm90::fp8_vt_column0(true, b, cu[b]);
      const long long end = start + sm90::fp8_round_up(cu[b + 1] - cu[b], sm90::kFp8KeyGroup);
      ASSERT_EQ(start % sm90::kFp8KeyGroup, 0);
      ASSERT_GE(start, previous_end) << "sequence " << b << " overlaps the one before";
      ASSERT_LE(end, b + 1 < batch ? sm90::fp8_vt_column0(true, b + 1, cu[b + 1]) : columns);
      previous_end = end;
    }
    ASSERT_EQ(columns % sm90::kFp8KeyGroup, 0);
  }
  EXPECT_EQ(sm90::fp8_vt_column0(false, 5, 1234), 0);
  EXPECT_EQ(sm90::fp8_vt_columns(false, 4, 1000), 1008);
}

}  // namespace
