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
using sigjit::sched::DqZeroJob;
using sigjit::sched::kDqZeroJobBytes;

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
    const int rows_per_job = dq_zero_rows_per_job(s.row_floats);
    ASSERT_GE(rows_per_job, 1);
    EXPECT_TRUE(rows_per_job == 1 || rows_per_job * s.row_floats * 4 <= kDqZeroJobBytes) << "a job stays within its bytes";
    EXPECT_GT((rows_per_job + 1) * s.row_floats * 4, kDqZeroJobBytes) << "and takes as many rows as fit";
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

}  // namespace
