// Who writes the zeros of a padded sequence's dQ rows past len_q. In a ragged batch most of the
// padded dQ buffer is such rows (84 % in bench/ragged_split.py's batch), and writing them from
// the dQ convert kernel, after the fused backward, cost 0.41 ms of a 10 ms step (H100 kernel
// split, PROFILE-backward.md). The Hopper fused backward has idle CTAs with nothing but zeros to
// write: its wholly padded key blocks. They take the padded dQ rows too, in equal chunks, while
// the other CTAs compute, and the convert kernel skips the rows they cover.
//
// Host and device: the launch decides whether the fused kernel zeroes (SigjitBwdParams::
// dq_pad_zero_key_block = its key block, 0 = not), the convert kernel and the fused kernel read
// the same ranges from here, and a CPU test (tests/cpu/templates/test_padded_rows.cpp) checks
// that the chunks cover every padded row exactly once for any lengths and key block.
#pragma once

#include "sigjit/common/host_device.h"

namespace sigjit {
namespace kern {

struct RowRange {
  int begin;
  int end;  // exclusive; begin == end when empty
};

// Key blocks of block_k keys that hold no valid key: the CTAs that can zero dQ rows.
SIGJIT_HD_INLINE int padded_key_blocks(int len_k, int seqlen_k, int block_k) {
  return (seqlen_k + block_k - 1) / block_k - (len_k + block_k - 1) / block_k;
}

// Whether the fused kernel zeroes this sequence's padded dQ rows (all of them, or none: the
// convert kernel then writes them). block_k: dq_pad_zero_key_block, 0 = the fused kernel never does.
SIGJIT_HD_INLINE bool fused_zeroes_padded_dq(int len_k, int seqlen_k, int block_k) {
  return block_k > 0 && padded_key_blocks(len_k, seqlen_k, block_k) > 0;
}

// The padded dQ rows [len_q, seqlen_q) that key block `key_block` zeroes: an equal share for
// each wholly padded key block, in order; empty for the key blocks that hold valid keys.
SIGJIT_HD_INLINE RowRange dq_rows_zeroed_by_key_block(int key_block, int len_q, int seqlen_q, int len_k, int seqlen_k, int block_k) {
  const int first = (len_k + block_k - 1) / block_k;
  const int blocks = padded_key_blocks(len_k, seqlen_k, block_k);
  const int rows = seqlen_q - len_q;
  if (key_block < first || blocks <= 0 || rows <= 0) return RowRange{len_q, len_q};
  const int share = (rows + blocks - 1) / blocks;
  const int skip = (key_block - first) * share;  // < rows + share <= 2 seqlen_q: no overflow
  const int begin = skip < rows ? len_q + skip : seqlen_q;
  const int end = seqlen_q - begin > share ? begin + share : seqlen_q;
  return RowRange{begin, end};
}

}  // namespace kern
}  // namespace sigjit
