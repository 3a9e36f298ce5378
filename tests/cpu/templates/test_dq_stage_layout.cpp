// The dQ writer's staging layout (templates/sigjit/sm90/dq_stage_layout.h, the header the kernel
// uses) on the host: the kernel's per-thread stores must land every dQ element of the tile exactly
// once, where the canonical layout puts it, and the canonical layout must be the 128-byte swizzle
// TMA reads (address bits 4-6 XOR bits 7-9 inside each 1024-byte span of a box), for every tile
// the sm90 backward can have (hd 64 and 128, 64- and 128-query steps, one or two consumer
// warpgroups, the dQ split by query tiles or by column blocks as sm90/bwd_limits.h decides).
#include "sigjit/sm90/bwd_limits.h"
#include "sigjit/sm90/dq_stage_layout.h"

#include <gtest/gtest.h>

#include <vector>

namespace {

namespace sm90 = sigjit::kern::sm90;

// CU_TENSOR_MAP_SWIZZLE_128B on a box whose rows are 128 bytes and whose base is 1024-aligned.
unsigned swizzle_128b(unsigned linear) { return linear ^ (((linear >> 7) & 7u) << 4); }

TEST(DqStageLayout, CanonicalLayoutIsTheTma128ByteSwizzle) {
  for (int block_q : {64, 128})
    for (int head_dim : {64, 128}) {
      const int box_bytes = block_q * sm90::kDqStageRowBytes;
      for (int row = 0; row < block_q; ++row)
        for (int col = 0; col < head_dim; ++col) {
          const unsigned linear = (unsigned)((col / 32) * box_bytes + row * 128 + (col % 32) * 4);
          ASSERT_EQ(sm90::dq_stage_offset(row, col, box_bytes), swizzle_128b(linear)) << row << " " << col;
        }
    }
}

TEST(DqStageLayout, EveryThreadStoresWhereTheCanonicalLayoutSaysAndCoversTheTileOnce) {
  int tiles = 0;
  for (int head_dim : {64, 128})
    for (int block_q : {64, 128})
      for (int consumers : {1, 2}) {
        const int cols = sm90::bwd_dq_cols(head_dim, block_q, consumers);
        if (cols % 64 != 0) continue;  // refused by the family (a split through a swizzle block)
        ++tiles;
        const int mtiles = sm90::bwd_dq_mtiles(block_q, consumers);
        const bool split_rows = sm90::bwd_dq_split_rows(block_q, consumers);
        const int box_bytes = block_q * sm90::kDqStageRowBytes;
        std::vector<int> written(block_q * head_dim, 0);  // one counter per fp32 slot of the tile
        for (int wg = 0; wg < consumers; ++wg)
          for (int warp = 0; warp < 4; ++warp)
            for (int lane = 0; lane < 32; ++lane) {
              const int col0 = split_rows ? 0 : wg * cols, mt0 = split_rows ? wg * mtiles : 0;
              const unsigned tile = (unsigned)(col0 / sm90::kDqStageBoxCols * box_bytes);
              const unsigned chunk_xor = sm90::dq_stage_chunk_xor(lane);
              for (int mt = 0; mt < mtiles; ++mt) {
                const int r0 = (mt0 + mt) * 64 + warp * 16 + lane / 4;
                for (int nt = 0; nt < cols / 8; ++nt)
                  for (int half = 0; half < 2; ++half)
                    for (int e = 0; e < 2; ++e) {
                      const int row = r0 + 8 * half, col = col0 + nt * 8 + (lane % 4) * 2 + e;
                      const unsigned kernel =
                          tile + sm90::dq_stage_fragment_offset(r0, nt, lane, chunk_xor, box_bytes) + half * 8 * 128 + e * 4;
                      ASSERT_EQ(kernel, sm90::dq_stage_offset(row, col, box_bytes))
                          << "hd " << head_dim << " block_q " << block_q << " consumers " << consumers << " wg " << wg << " lane " << lane
                          << " row " << row << " col " << col;
                      ASSERT_LT(kernel / 4, written.size());
                      ++written[kernel / 4];
                    }
              }
            }
        for (std::size_t slot = 0; slot < written.size(); ++slot) ASSERT_EQ(written[slot], 1) << "slot " << slot;
      }
  EXPECT_EQ(tiles, 7);  // all (block_q, consumers) at both head dims but hd 64 with 64-query steps over two consumers
}

}  // namespace
