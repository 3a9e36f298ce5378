// Where the FP8 forward (issue 22) keeps V, and why: host and device share these functions, so
// the transpose prologue that writes V^T, the kernel that reads it and the CPU tests that check
// the two against the wgmma fragment layouts cannot drift apart.
//
// FP8 wgmma takes no transpose immediates: B must be K-major, so O += P V needs V^T (head dim
// rows, keys contiguous) in shared memory. A prologue kernel writes V^T once per call into a
// library-held workspace, [batch'][heads_kv][head_dim][columns] e4m3, that the main kernel loads
// with TMA (one call's cost: one read and one write of V, against O(L^2) attention work).
//
// The P operand stays in registers, as in the 16-bit kernel, but the f32 accumulator layout is
// not the e4m3 A-fragment layout: thread (lane % 4 = c) holds S columns {2c, 2c+1} of each
// 8-column block, while the m64k32 e4m3 A fragment wants k positions 4c..4c+3 (and 16 + 4c..)
// in one register (PTX ISA, wgmma register fragments: .m64nNk32 A for 8-bit types; the same
// layout as mma.sync m16n8k32's 8-bit A). Instead of shuffling P between threads, each thread
// packs its own four scores of a 16-key group into one register, and the prologue permutes V^T's
// columns within every 16 keys to match: k position l = 4c + i holds key fp8_pv_key(l), with
// i = 0, 1 from the first 8-column block and i = 2, 3 from the second. The permutation is
// relative to the start of each sequence's key tiles, so every sequence's V^T columns start on a
// multiple of 16 (fp8_vt_column0).
//
// P is quantized with the fixed scale 2^8 (sigmoid is in (0, 1), so 256 P stays below e4m3's
// largest normal, 448, and the power of two is undone exactly in the output scale).
#pragma once

#include "sigjit/common/host_device.h"

namespace sigjit {
namespace kern {
namespace sm90 {

enum : int {
  kFp8PScaleLog2 = 8,  // P is stored as e4m3(P * 2^8)
  kFp8KeyGroup = 16,   // the permutation's period in keys
  kFp8VtGap = 32,      // varlen: columns reserved between sequences (see fp8_vt_column0)
};

// The key (0..15, within its group of 16) that k position l of the P fragment holds.
SIGJIT_HD constexpr int fp8_pv_key(int l) { return ((l & 3) >> 1) * 8 + (l >> 2) * 2 + (l & 1); }

// Its inverse: the k position (V^T column within the group) of key n.
SIGJIT_HD constexpr int fp8_pv_position(int n) { return ((n & 7) >> 1) * 4 + (n >> 3) * 2 + (n & 1); }

// The packing that goes with it: byte t (0 = lowest) of P fragment register q (0..3) of k-step kk
// takes accumulator s[16 kk + fp8_p_source(q, t)]: register q holds row half q & 1 (row + 8 when
// set) of the 16-key group q >> 1, bytes 0-1 from its first 8-column block, 2-3 from its second.
SIGJIT_HD constexpr int fp8_p_source(int q, int t) { return 4 * (2 * (q >> 1) + (t >> 1)) + 2 * (q & 1) + (t & 1); }

SIGJIT_HD constexpr long long fp8_round_up(long long x, long long to) { return (x + to - 1) / to * to; }

// The first V^T column of sequence b. Dense and padded: each batch has its own [heads][D][columns]
// slab and sequences start at column 0. Varlen (one slab): the sequence starting at packed row
// `cu_k` starts at round_up(cu_k, 16) + 32 b, a closed form that needs no prefix sum: sequence b
// ends (its length rounded up to 16) at most round_up(cu_{b+1}, 16) + 16 + 32 b, below the next
// start. The prologue writes every column from one start to the next (zeros past the keys).
SIGJIT_HD constexpr long long fp8_vt_column0(bool varlen, int b, long long cu_k) {
  return varlen ? fp8_round_up(cu_k, kFp8KeyGroup) + (long long)kFp8VtGap * b : 0;
}

// V^T columns per slab: dense/padded the buffer length rounded up to 16; varlen every sequence's
// start as above plus the last one's tail. TMA strides must be multiples of 16 bytes: 16 columns of
// one byte each.
SIGJIT_HD constexpr long long fp8_vt_columns(bool varlen, int batch, long long seqlen_k_or_total_k) {
  return varlen ? fp8_round_up(seqlen_k_or_total_k, kFp8KeyGroup) + (long long)kFp8VtGap * (batch + 1)
                : fp8_round_up(seqlen_k_or_total_k, kFp8KeyGroup);
}

}  // namespace sm90
}  // namespace kern
}  // namespace sigjit
