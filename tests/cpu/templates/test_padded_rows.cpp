// The padded dQ rows' zeroing split (templates/sigjit/common/padded_rows.h, the header both the
// Hopper fused backward and the dQ convert kernel use): for any valid lengths, buffer lengths and
// key block, the rows the fused kernel's key blocks zero plus the rows the convert kernel writes
// cover every dQ row of the padded buffer exactly once, the key blocks that hold valid keys zero
// nothing, and the convert kernel's side reverts to all the padded rows when the switch is off.
#include "sigjit/common/padded_rows.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace {

namespace kern = sigjit::kern;

// Writes per dQ row of one sequence: the convert kernel's (valid rows, and the padded rows unless
// the fused kernel zeroes them) plus each fused key block's share.
std::vector<int> writes_per_row(int len_q, int seqlen_q, int len_k, int seqlen_k, int block_k, int switch_block_k) {
  std::vector<int> writes(seqlen_q, 0);
  const bool fused = kern::fused_zeroes_padded_dq(len_k, seqlen_k, switch_block_k);
  for (int row = 0; row < seqlen_q; ++row)
    if (row < len_q || !fused) ++writes[row];
  if (switch_block_k == 0) return writes;
  const int key_blocks = (seqlen_k + block_k - 1) / block_k;
  for (int kb = 0; kb < key_blocks; ++kb) {
    if (kb * block_k < len_k) {  // not a wholly padded key block: the kernel never zeroes here
      const kern::RowRange r = kern::dq_rows_zeroed_by_key_block(kb, len_q, seqlen_q, len_k, seqlen_k, block_k);
      EXPECT_EQ(r.begin, r.end) << "key block " << kb << " holds valid keys yet zeroes rows";
      continue;
    }
    const kern::RowRange r = kern::dq_rows_zeroed_by_key_block(kb, len_q, seqlen_q, len_k, seqlen_k, block_k);
    EXPECT_LE(len_q, r.begin);
    EXPECT_LE(r.begin, r.end);
    EXPECT_LE(r.end, seqlen_q);
    for (int row = r.begin; row < r.end; ++row) ++writes[row];
  }
  return writes;
}

TEST(PaddedDqRows, EveryRowIsWrittenExactlyOnce) {
  int with_fused_zeroing = 0, left_to_convert = 0;
  for (int block_k : {64, 128})
    for (int seqlen_q : {1, 17, 64, 200, 1000})
      for (int seqlen_k : {1, 30, 128, 129, 777})
        for (int len_q = 0; len_q <= seqlen_q; len_q += len_q < 20 ? 1 : 37)
          for (int len_k = 0; len_k <= seqlen_k; len_k += len_k < 20 ? 1 : 41)
            for (int switch_block_k : {0, block_k}) {
              const std::vector<int> writes = writes_per_row(len_q, seqlen_q, len_k, seqlen_k, block_k, switch_block_k);
              for (int row = 0; row < seqlen_q; ++row)
                ASSERT_EQ(writes[row], 1) << "row " << row << " of len_q=" << len_q << " seqlen_q=" << seqlen_q << " len_k=" << len_k
                                          << " seqlen_k=" << seqlen_k << " block_k=" << block_k << " switch=" << switch_block_k;
              if (switch_block_k != 0 && len_q < seqlen_q)
                ++(kern::fused_zeroes_padded_dq(len_k, seqlen_k, switch_block_k) ? with_fused_zeroing : left_to_convert);
            }
  // Both regimes occur: padded rows zeroed by idle key blocks, and sequences whose keys fill every
  // key block (no idle CTA), where the convert kernel keeps the rows.
  EXPECT_GT(with_fused_zeroing, 1000);
  EXPECT_GT(left_to_convert, 100);
}

// The shares are balanced: the longest is the even split's, ceil(rows / idle key blocks) (the
// zeroing runs beside the compute, so its longest CTA is what it costs), on bench/ragged_split.py's
// mean sequence in a batch padded to 16000.
TEST(PaddedDqRows, LongestShareIsTheEvenSplit) {
  const int len_q = 2301, seqlen_q = 16000, len_k = 2301, seqlen_k = 16000, block_k = 128;
  const int first = (len_k + block_k - 1) / block_k, blocks = kern::padded_key_blocks(len_k, seqlen_k, block_k);
  ASSERT_EQ(first, 18);
  ASSERT_EQ(blocks, 125 - 18);
  int most = 0;
  for (int kb = first; kb < first + blocks; ++kb) {
    const kern::RowRange r = kern::dq_rows_zeroed_by_key_block(kb, len_q, seqlen_q, len_k, seqlen_k, block_k);
    most = std::max(most, r.end - r.begin);
  }
  EXPECT_EQ(most, (seqlen_q - len_q + blocks - 1) / blocks);
}

}  // namespace
