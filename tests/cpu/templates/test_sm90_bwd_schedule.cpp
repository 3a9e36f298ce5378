// The persistent sm90 backward's key-tile schedule (templates/sigjit/sm90/bwd_schedule.h, the
// header the kernel includes), run on the host the way the kernel's producer runs it: CTA c of a
// grid of G starts with tile c and claims the next from a shared counter, in any interleaving of
// the CTAs. For any grid every (key block, kv head, sequence) must come out exactly once, key
// blocks fastest (the CTAs running at once share a head's Q and dO), and the tile count must be
// what the launch computes.
#include "sigjit/sm90/bwd_schedule.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <tuple>
#include <vector>

namespace {

using sigjit::sched::bwd_claimed_tile;
using sigjit::sched::bwd_key_blocks;
using sigjit::sched::bwd_tile;
using sigjit::sched::bwd_tiles;
using sigjit::sched::BwdTile;
using sigjit::sched::dq_zero_job;
using sigjit::sched::dq_zero_jobs_per_seq;
using sigjit::sched::dq_zero_jobs_stored;
using sigjit::sched::dq_zero_rows_per_job;
using sigjit::sched::dq_zero_sequence_due;
using sigjit::sched::DqZeroJob;
using sigjit::sched::kDqZeroJobBytes;
using sigjit::sched::kDqZeroPacedJobBytes;

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
    std::mt19937 rng(static_cast<unsigned>(tiles));
    for (int grid : {1, 3, 7, 132, static_cast<int>(tiles)}) {
      if (grid > tiles) continue;  // the launch takes min(tiles, SMs) CTAs
      std::set<std::tuple<int, int, int>> seen;
      std::vector<int> current(grid);
      for (int cta = 0; cta < grid; ++cta) current[cta] = cta;
      std::vector<int> running(grid);
      for (int cta = 0; cta < grid; ++cta) running[cta] = cta;
      int counter = 0;  // the workspace's, zeroed before the launch
      while (!running.empty()) {
        // Any running CTA may finish its tile next: the claims' order is the hardware's.
        const std::size_t pick = std::uniform_int_distribution<std::size_t>(0, running.size() - 1)(rng);
        const int cta = running[pick];
        const int t = current[cta];
        const BwdTile x = bwd_tile(t, key_blocks, s.heads_kv);
        ASSERT_GE(x.key_block, 0);
        ASSERT_LT(x.key_block, key_blocks);
        ASSERT_GE(x.head_kv, 0);
        ASSERT_LT(x.head_kv, s.heads_kv);
        ASSERT_GE(x.batch, 0);
        ASSERT_LT(x.batch, s.batch);
        EXPECT_TRUE(seen.emplace(x.key_block, x.head_kv, x.batch).second) << "tile " << t << " twice, grid " << grid;
        current[cta] = bwd_claimed_tile(counter++, grid);
        if (current[cta] >= tiles) running.erase(running.begin() + static_cast<std::ptrdiff_t>(pick));
      }
      EXPECT_EQ(static_cast<long long>(seen.size()), tiles) << "grid " << grid;
      EXPECT_EQ(counter, tiles) << "each CTA's last claim passes the last tile: one claim per tile in all";
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

// The kernel's dQ zeroing jobs, as its zeroing warps take them (any order): every valid row of
// every sequence is stored exactly once, no job stores past its sequence's valid rows or more than
// kDqZeroJobBytes, and the jobs that store are as many as the writer waits for
// (dq_zero_jobs_stored), so it neither waits forever nor reduces into a row not yet zeroed.
TEST(Sm90BwdSchedule, DqZeroJobsCoverEveryValidRowOnce) {
  struct Shape {
    long long row_floats;  // heads_q x head_dim
    int seqlen_q;
    std::vector<int> lens_q;
  };
  for (const Shape& s : {Shape{2048, 1024, {1024, 1024}}, Shape{1024, 16000, {16000, 200, 0, 2301, 1, 17}}, Shape{64, 100, {100, 99, 3}},
                         Shape{32768 * 2, 33, {33, 32}}, Shape{8 * 128, 1, {1, 0}}}) {
    for (const long long job_bytes : {kDqZeroJobBytes, kDqZeroPacedJobBytes}) {
      SCOPED_TRACE(job_bytes);
      const int rows_per_job = dq_zero_rows_per_job(s.row_floats, job_bytes);
      ASSERT_GE(rows_per_job, 1);
      EXPECT_TRUE(rows_per_job == 1 || rows_per_job * s.row_floats * 4 <= job_bytes) << "a job stays within its bytes";
      EXPECT_GT((rows_per_job + 1) * s.row_floats * 4, job_bytes) << "and takes as many rows as fit";
      const int per_seq = dq_zero_jobs_per_seq(s.seqlen_q, rows_per_job);
      const int batch = static_cast<int>(s.lens_q.size());
      std::vector<std::vector<int>> stored(batch);
      std::vector<int> done(batch, 0);
      for (int b = 0; b < batch; ++b) stored[b].assign(s.lens_q[b], 0);
      for (int j = 0; j < batch * per_seq; ++j) {
        const int seq = j / per_seq;
        const DqZeroJob job = dq_zero_job(j, per_seq, rows_per_job, s.lens_q[seq]);
        ASSERT_EQ(job.seq, seq);
        ASSERT_LE(0, job.row_begin);
        ASSERT_LE(job.row_begin, job.row_end);
        ASSERT_LE(job.row_end, s.lens_q[seq]) << "job " << j << " stores past its sequence's valid rows";
        ASSERT_LE(job.row_end - job.row_begin, rows_per_job);
        if (job.row_begin == job.row_end) continue;
        ++done[seq];
        for (int row = job.row_begin; row < job.row_end; ++row) ++stored[seq][row];
      }
      for (int b = 0; b < batch; ++b) {
        EXPECT_EQ(done[b], dq_zero_jobs_stored(s.lens_q[b], rows_per_job)) << "sequence " << b;
        for (int row = 0; row < s.lens_q[b]; ++row) ASSERT_EQ(stored[b][row], 1) << "sequence " << b << " row " << row;
      }
    }
  }
}

// Paced zeroing, run as the kernel runs it under random interleavings: zeroing warps claim jobs in
// order and store one only once its sequence is due; a tile's writer (and so the tile) finishes
// only once its sequence's jobs are all stored; a CTA claims its next tile when its tile finishes.
// Every run must end with every tile and every job done (no wait on a job that waits), and the
// pacing must hold some sequence back at the start wherever the first wave leaves one out.
TEST(Sm90BwdSchedule, PacedZeroingNeverStallsAWriter) {
  struct Shape {
    int key_blocks, heads_kv, batch, jobs_per_seq, grid, warps;
  };
  for (const Shape s : {Shape{8, 16, 16, 256, 132, 264}, Shape{1, 1, 48, 3, 132, 264}, Shape{128, 16, 1, 4096, 132, 264},
                        Shape{8, 32, 16, 128, 3, 6}, Shape{2, 2, 5, 7, 3, 1}, Shape{16, 4, 9, 33, 7, 14}}) {
    const long long tiles = static_cast<long long>(s.key_blocks) * s.heads_kv * s.batch;
    const int jobs = s.batch * s.jobs_per_seq;
    long long held_back = 0;
    for (int b = 0; b < s.batch; ++b) held_back += dq_zero_sequence_due(b, s.key_blocks, s.heads_kv, s.grid) ? 0 : 1;
    if (static_cast<long long>(s.key_blocks) * s.heads_kv * (s.batch - 1) >= s.grid) EXPECT_GT(held_back, 0) << "nothing paced";
    std::mt19937 rng(static_cast<unsigned>(tiles + s.grid));
    for (int trial = 0; trial < 20; ++trial) {
      int counter = 0, next_job = 0;
      std::vector<long long> tile_of(s.grid);
      for (int c = 0; c < s.grid; ++c) tile_of[c] = c;
      std::vector<int> job_of(s.warps, -1), stored(s.batch, 0);
      long long tiles_done = 0;
      int jobs_done = 0;
      for (int step = 0; tiles_done < tiles || jobs_done < jobs; ++step) {
        ASSERT_LT(step, 100000000) << "no progress";
        std::vector<int> ready;  // CTAs whose tile may finish, then warps that may store (offset by grid)
        for (int c = 0; c < s.grid; ++c)
          if (tile_of[c] < tiles && stored[tile_of[c] / (s.key_blocks * s.heads_kv)] == s.jobs_per_seq) ready.push_back(c);
        for (int w = 0; w < s.warps; ++w) {
          if (job_of[w] < 0 && next_job < jobs) job_of[w] = next_job++;
          if (job_of[w] >= 0 && dq_zero_sequence_due(job_of[w] / s.jobs_per_seq, s.key_blocks, s.heads_kv, s.grid + counter))
            ready.push_back(s.grid + w);
        }
        ASSERT_FALSE(ready.empty()) << "deadlock: " << tiles_done << " tiles, " << jobs_done << " jobs done";
        const int pick = ready[std::uniform_int_distribution<std::size_t>(0, ready.size() - 1)(rng)];
        if (pick < s.grid) {
          ++tiles_done;
          tile_of[pick] = bwd_claimed_tile(counter++, s.grid);
          if (tile_of[pick] < tiles) {
            ASSERT_TRUE(dq_zero_sequence_due(static_cast<int>(tile_of[pick] / (s.key_blocks * s.heads_kv)), s.key_blocks, s.heads_kv,
                                             s.grid + counter))
                << "a tile handed out before its sequence is due";
          }
        } else {
          ++stored[job_of[pick - s.grid] / s.jobs_per_seq];
          ++jobs_done;
          job_of[pick - s.grid] = -1;
        }
      }
      for (int b = 0; b < s.batch; ++b) EXPECT_TRUE(dq_zero_sequence_due(b, s.key_blocks, s.heads_kv, s.grid + counter));
    }
  }
}

}  // namespace
