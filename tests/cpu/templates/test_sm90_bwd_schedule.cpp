// The persistent sm90 backward's key-tile schedule (templates/sigjit/sm90/bwd_schedule.h, the
// header the kernel includes), run on the host the way the kernel's three roles run it: CTA c of
// a grid of G takes t = c, c + G, ... For any grid every (key block, kv head, sequence) must come
// out exactly once, key blocks fastest (the CTAs running at once share a head's Q and dO), and the
// tile count must be what the launch computes.
#include "sigjit/sm90/bwd_schedule.h"

#include <gtest/gtest.h>

#include <set>
#include <tuple>

namespace {

using sigjit::sched::bwd_key_blocks;
using sigjit::sched::bwd_tile;
using sigjit::sched::bwd_tiles;
using sigjit::sched::BwdTile;

TEST(Sm90BwdSchedule, EveryKeyTileOnceForAnyGrid) {
  struct Shape {
    int seqlen_k, block_k, heads_kv, batch;
  };
  for (const Shape s :
       {Shape{1, 128, 1, 1}, Shape{1000, 128, 4, 3}, Shape{16384, 128, 16, 1}, Shape{200, 64, 8, 48}, Shape{129, 128, 2, 5}}) {
    const int key_blocks = bwd_key_blocks(s.seqlen_k, s.block_k);
    EXPECT_EQ(key_blocks, (s.seqlen_k + s.block_k - 1) / s.block_k);
    const long long tiles = bwd_tiles(s.seqlen_k, s.block_k, s.heads_kv, s.batch);
    ASSERT_EQ(tiles, static_cast<long long>(key_blocks) * s.heads_kv * s.batch);
    for (int grid : {1, 3, 7, 132, static_cast<int>(tiles), static_cast<int>(tiles) + 5}) {
      std::set<std::tuple<int, int, int>> seen;
      for (int cta = 0; cta < grid; ++cta)
        for (int t = cta; t < tiles; t += grid) {
          const BwdTile x = bwd_tile(t, key_blocks, s.heads_kv);
          ASSERT_GE(x.key_block, 0);
          ASSERT_LT(x.key_block, key_blocks);
          ASSERT_GE(x.head_kv, 0);
          ASSERT_LT(x.head_kv, s.heads_kv);
          ASSERT_GE(x.batch, 0);
          ASSERT_LT(x.batch, s.batch);
          EXPECT_TRUE(seen.emplace(x.key_block, x.head_kv, x.batch).second) << "tile " << t << " twice, grid " << grid;
        }
      EXPECT_EQ(static_cast<long long>(seen.size()), tiles) << "grid " << grid;
    }
  }
}

TEST(Sm90BwdSchedule, KeyBlocksRunFastestThenHeadsThenSequences) {
  const int key_blocks = 8, heads_kv = 4;
  EXPECT_EQ(bwd_tile(0, key_blocks, heads_kv).key_block, 0);
  EXPECT_EQ(bwd_tile(7, key_blocks, heads_kv).key_block, 7);
  EXPECT_EQ(bwd_tile(8, key_blocks, heads_kv).key_block, 0);
  EXPECT_EQ(bwd_tile(8, key_blocks, heads_kv).head_kv, 1);
  EXPECT_EQ(bwd_tile(31, key_blocks, heads_kv).head_kv, 3);
  EXPECT_EQ(bwd_tile(32, key_blocks, heads_kv).batch, 1);
  EXPECT_EQ(bwd_tile(32, key_blocks, heads_kv).head_kv, 0);
}

}  // namespace
