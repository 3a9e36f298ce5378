// The dQ writer's staging layout (templates/sigjit/sm90/dq_stage_layout.h, the header the kernel
// uses) on the host: the kernel's per-thread stores must land every dQ element of the tile exactly
// once, where the canonical layout puts it, and the canonical layout must be the 128-byte swizzle
// TMA reads (address bits 4-6 XOR bits 7-9 inside each 1024-byte span of a box), for every tile
// the sm90 backward can have (hd 64 and 128, 64- and 128-query steps, one or two consumer
// warpgroups, the dQ split by query tiles or by column blocks as sm90/bwd_limits.h decides), in
// the kernel's conflict-free store order: each half-warp's 64-bit stores cover the 32 banks once.
#include "sigjit/sm90/bwd_limits.h"
#include "sigjit/sm90/dq_stage_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
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
              const unsigned chunk_xor = sm90::dq_stage_store_chunk_xor(lane);
              for (int mt = 0; mt < mtiles; ++mt) {
                const int r0 = (mt0 + mt) * 64 + warp * 16 + lane / 4;
                for (int nt = 0; nt < cols / 8; ++nt)  // store slot nt holds n8 tile dq_stage_store_tile(nt, lane)
                  for (int half = 0; half < 2; ++half)
                    for (int e = 0; e < 2; ++e) {
                      const int row = r0 + 8 * half, col = col0 + sm90::dq_stage_store_tile(nt, lane) * 8 + (lane % 4) * 2 + e;
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

// The 4-byte banks one half-warp's st.shared.v2.f32 of store slot nt touches (row r0 + 8 half of
// the m64 tile at row 0), with the given chunk XOR and tile per lane.
template <class ChunkXor, class Tile>
std::vector<int> half_warp_banks(int first_lane, int warp, int nt, int half, ChunkXor chunk_xor, Tile tile) {
  std::vector<int> banks;
  for (int lane = first_lane; lane < first_lane + 16; ++lane) {
    const int r0 = warp * 16 + lane / 4;
    // The slot's address is the stored tile's (dq_stage_fragment_offset of slot nt under the chunk XOR).
    const unsigned addr = sm90::dq_stage_fragment_offset(r0, nt, lane, chunk_xor(lane), 64 * sm90::kDqStageRowBytes) + half * 8 * 128;
    EXPECT_EQ(addr % 1024 / 128, (unsigned)((r0 + 8 * half) % 8));  // the row, and the tile's columns:
    const int col = tile(nt, lane) * 8 + (lane % 4) * 2;
    EXPECT_EQ(addr, sm90::dq_stage_offset(r0 + 8 * half, col, 64 * sm90::kDqStageRowBytes));
    for (int e = 0; e < 2; ++e) banks.push_back((int)((addr + 4 * e) / 4 % 32));
  }
  return banks;
}

bool all_banks_once(std::vector<int> banks) {
  std::sort(banks.begin(), banks.end());
  for (int b = 0; b < 32; ++b)
    if (banks[b] != b) return false;
  return true;
}

// A 64-bit shared store of 32 threads is served per half-warp: 128 bytes, one wavefront when
// they fall in 32 distinct banks. The kernel's order gets there in every slot of every warp;
// the plain order (every thread stores its own tile nt) takes two, which is what ncu measured.
TEST(DqStageLayout, StoresOfEveryHalfWarpHitEachBankOnce) {
  const auto store_xor = [](int lane) { return sm90::dq_stage_store_chunk_xor(lane); };
  const auto store_tile = [](int nt, int lane) { return sm90::dq_stage_store_tile(nt, lane); };
  const auto plain_xor = [](int lane) { return sm90::dq_stage_chunk_xor(lane); };
  const auto plain_tile = [](int nt, int) { return nt; };
  for (int warp = 0; warp < 4; ++warp)
    for (int nt = 0; nt < 16; ++nt)
      for (int half = 0; half < 2; ++half)
        for (int first_lane : {0, 16}) {
          EXPECT_TRUE(all_banks_once(half_warp_banks(first_lane, warp, nt, half, store_xor, store_tile)))
              << "warp " << warp << " slot " << nt << " half " << half << " lanes " << first_lane << "+";
          EXPECT_FALSE(all_banks_once(half_warp_banks(first_lane, warp, nt, half, plain_xor, plain_tile)));
        }
}

}  // namespace
