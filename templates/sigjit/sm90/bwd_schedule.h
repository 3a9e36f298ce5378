// The work-tile schedule of the persistent sm90 backward (tile suffix _wp, sm90/bwd.cuh).
//
// What: a persistent CTA c starts with key tile c and then claims one tile at a time from a global
// counter (atomicAdd; tile = grid + the counter's old value) until a claim passes the last tile.
// A tile is (key block, kv head, sequence) with the key block fastest, the order the
// one-CTA-per-tile grid launches them in, so that the CTAs running at once share a few heads' Q
// and dO in L2.
// Why: a key block's fixed cost (launch, barrier init, K/V load, dK/dV stores) is 1.8-3.3 query
// steps, a fifth of the time at L 1024 (bench/PROFILE-backward.md); a CTA that stays loads the
// next block's K/V and Q/dO under this block's dK/dV stores and pays the launch once. Claimed,
// not dealt round-robin: a fixed deal ends with its slowest CTA's share (the round-robin _wp
// measured 2-6 % below one CTA per tile at hd 128; bench/PROFILE-backward.md); claims hand each
// tile to the CTA that frees first, as the hardware does for the one-CTA-per-tile grid, causal
// and ragged tiles too.
// Cost: one atomicAdd per tile (issued a tile ahead), a 4-byte counter zeroed with the workspace.
// The same kernel zeroes its dQ workspace (dq_zero_job below).
// Shared by host and device: tests/cpu/templates/test_sm90_bwd_schedule.cpp runs the claims under
// random interleavings and checks that every tile is taken exactly once for any grid.
#pragma once

#include "sigjit/common/host_device.h"

namespace sigjit {
namespace sched {

struct BwdTile {
  int key_block, head_kv, batch;
};

SIGJIT_HD constexpr int bwd_key_blocks(int seqlen_k, int block_k) { return (seqlen_k + block_k - 1) / block_k; }

// Tiles of the whole problem; the host checks that it fits an int before launching.
SIGJIT_HD constexpr long long bwd_tiles(int seqlen_k, int block_k, int heads_kv, int batch) {
  return (long long)bwd_key_blocks(seqlen_k, block_k) * heads_kv * batch;
}

// The tile a claim gets: the counter's value before the claim's atomicAdd, past the grid's first
// tiles (blockIdx.x).
SIGJIT_HD constexpr int bwd_claimed_tile(int counter_before, int grid) { return grid + counter_before; }

SIGJIT_HD constexpr BwdTile bwd_tile(int t, int key_blocks, int heads_kv) {
  return BwdTile{t % key_blocks, (t / key_blocks) % heads_kv, t / key_blocks / heads_kv};
}

// The dQ workspace zeroed by the persistent kernel's idle warps instead of a memset before it
// (bench/PROFILE-backward.md: the memset ran alone, 41 us at every length on an H100, a twentieth
// of the backward at L 1024). A zeroing job is up to kDqZeroJobBytes of one sequence's rows, every
// head (a workspace row is heads_q x head_dim contiguous floats); job j is sequence
// j / jobs_per_seq, rows from (j % jobs_per_seq) x rows_per_job, in the order the tiles are
// claimed. Jobs past a sequence's valid rows store nothing, so only valid rows are zeroed (the
// padded layout's padding is never read). Each job that stores adds 1 to its sequence's done
// counter; the dQ writer reduces into a sequence once the counter reaches dq_zero_jobs_stored.
inline constexpr long long kDqZeroJobBytes = 128 * 1024;

// Paced zeroing (SIGJIT_BWD_DQ_ZERO=paced): the jobs of sequence b wait until b's first key tile
// is claimed, so the zeros land in L2 shortly before the writers add into them. Why: zeroing
// every sequence at once (the eager jobs above) wrote the whole workspace (134 MB at L 1024,
// hidden 2048) through a 50 MB L2 while the first tiles ran; the tile trace (H100, 2026-12-07)
// showed the first wave's writers waiting 35-40 us for their sequence's zeros and the tiles that
// overlapped the zeroing running 1.5-2x slower: 49-69 us of excess tile time per SM. Smaller
// jobs spread the first sequences over every zeroing warp. Cost: one relaxed poll of the tile
// counter per job until its sequence is due.
inline constexpr long long kDqZeroPacedJobBytes = 32 * 1024;

// Rows per job of at most job_bytes for workspace rows of row_floats floats: at least one.
SIGJIT_HD constexpr int dq_zero_rows_per_job(long long row_floats, long long job_bytes = kDqZeroJobBytes) {
  return row_floats * 4 >= job_bytes ? 1 : (int)(job_bytes / (row_floats * 4));
}

// Paced: sequence b's zeroing is due once the tiles handed out (the grid's first ones plus the
// claims, claimed_tiles = grid + counter) include b's first tile. Every tile a writer works on has
// been handed out, so its sequence is due and its zeros are stored or being stored: the writer
// never waits on a job that waits. Once due, always due (the counter only grows).
SIGJIT_HD constexpr bool dq_zero_sequence_due(int b, int key_blocks, int heads_kv, long long claimed_tiles) {
  return (long long)b * key_blocks * heads_kv < claimed_tiles;
}

// Jobs per sequence of a buffer of seqlen_q rows (the longest sequence's, for varlen).
SIGJIT_HD constexpr int dq_zero_jobs_per_seq(int seqlen_q, int rows_per_job) { return (seqlen_q + rows_per_job - 1) / rows_per_job; }

struct DqZeroJob {
  int seq, row_begin, row_end;  // rows of the sequence; row_begin == row_end: nothing to store
};

SIGJIT_HD constexpr DqZeroJob dq_zero_job(int j, int jobs_per_seq, int rows_per_job, int len_q) {
  const int seq = j / jobs_per_seq, begin = (j % jobs_per_seq) * rows_per_job;
  if (begin >= len_q) return DqZeroJob{seq, len_q, len_q};
  return DqZeroJob{seq, begin, len_q - begin < rows_per_job ? len_q : begin + rows_per_job};
}

// The jobs of a sequence of len_q valid rows that store (and count): the writer's target.
SIGJIT_HD constexpr int dq_zero_jobs_stored(int len_q, int rows_per_job) { return (len_q + rows_per_job - 1) / rows_per_job; }

}  // namespace sched
}  // namespace sigjit
