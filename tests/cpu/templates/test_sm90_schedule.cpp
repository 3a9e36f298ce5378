// The persistent sm90 forward's tile schedule (templates/sigjit/sm90/tile_schedule.h, the header
// the kernel includes), run on the host the way the kernel runs it: every CTA b of a grid of G
// walks items t = b, b + G, ... with one cursor. For any grid size every valid (sequence, head,
// query tile) must come out exactly once and no wholly padded tile at all; the order must keep
// a head's query tiles side by side (L2 reuse of its K/V), give every CTA about the same causal
// work, and read each sequence length at most once per CTA.
#include "sigjit/sm90/tile_schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <tuple>
#include <vector>

namespace {

using sigjit::sched::Order;
using sigjit::sched::Shape;
using sigjit::sched::Tile;
using sigjit::sched::TileCursor;

constexpr int kBlockM = 128;

struct Problem {
  Shape shape;
  std::vector<int> len_q;  // valid rows per sequence (dense: all seqlen_q)
};

int query_rows_of(const Problem& p, int b) { return std::min(p.len_q[b], p.shape.seqlen_q); }
int query_tiles_of(const Problem& p, int b) { return (query_rows_of(p, b) + kBlockM - 1) / kBlockM; }

struct Walk {
  std::vector<std::vector<Tile>> per_cta;  // tiles in the order each CTA runs them
  std::vector<int> length_reads;           // query_rows calls per CTA
};

template <Order ORDER, bool DENSE, int BLOCK_M = kBlockM>
Walk walk(const Problem& p, int grid) {
  Walk w;
  w.per_cta.resize(grid);
  w.length_reads.assign(grid, 0);
  for (int cta = 0; cta < grid; ++cta) {
    int& reads = w.length_reads[cta];
    auto query_rows = [&](int b) {
      ++reads;
      return query_rows_of(p, b);
    };
    Tile tile;
    for (TileCursor c = sigjit::sched::first_tile<BLOCK_M, DENSE>(cta, p.shape, query_rows);
         sigjit::sched::locate_tile<BLOCK_M, ORDER, DENSE>(c, p.shape, query_rows, tile); sigjit::sched::advance_tile<ORDER>(c, grid)) {
      w.per_cta[cta].push_back(tile);
    }
  }
  return w;
}

// Every valid (b, h, m_start) exactly once, nothing else.
void expect_exact_cover(const Problem& p, const Walk& w, const std::string& what) {
  std::map<std::tuple<int, int, int>, int> seen;
  for (const auto& tiles : w.per_cta)
    for (const Tile& t : tiles) {
      ASSERT_GE(t.b, 0) << what;
      ASSERT_LT(t.b, p.shape.batch) << what;
      ASSERT_GE(t.h, 0) << what;
      ASSERT_LT(t.h, p.shape.heads) << what;
      ASSERT_EQ(t.m_start % kBlockM, 0) << what;
      ASSERT_GE(t.m_start, 0) << what;
      ASSERT_LT(t.m_start, std::min(p.len_q[t.b], p.shape.seqlen_q)) << what << ": a wholly padded tile is scheduled";
      ++seen[{t.b, t.h, t.m_start}];
    }
  std::size_t expected = 0;
  for (int b = 0; b < p.shape.batch; ++b) expected += static_cast<std::size_t>(query_tiles_of(p, b)) * p.shape.heads;
  EXPECT_EQ(seen.size(), expected) << what;
  for (const auto& [key, n] : seen) EXPECT_EQ(n, 1) << what << ": tile (" << std::get<0>(key) << ", " << std::get<1>(key) << ", " << std::get<2>(key) << ")";
}

Problem dense(int batch, int heads, int seqlen) { return Problem{Shape{batch, heads, seqlen}, std::vector<int>(batch, seqlen)}; }

Problem ragged(const std::vector<int>& lens, int heads, int seqlen) { return Problem{Shape{static_cast<int>(lens.size()), heads, seqlen}, lens}; }

TEST(Sm90Schedule, DenseCoversEveryTileOnceForAnyGrid) {
  for (const Problem& p : {dense(1, 1, 1), dense(2, 3, 300), dense(4, 16, 1024), dense(1, 8, 16384), dense(3, 5, 129)})
    for (int grid : {1, 2, 7, 132, 264, 100000}) {
      const std::string what = "dense b" + std::to_string(p.shape.batch) + " h" + std::to_string(p.shape.heads) + " L" +
                                std::to_string(p.shape.seqlen_q) + " grid " + std::to_string(grid);
      expect_exact_cover(p, walk<Order::tiles, true>(p, grid), what);
      expect_exact_cover(p, walk<Order::causal_rows, true>(p, grid), what + " causal rows");
      expect_exact_cover(p, walk<Order::causal_units, true>(p, grid), what + " causal units");
    }
}

// The host's grid comes from the same header: one CTA per tile, or persistent with at most one
// CTA per tile and at most one per resident slot, and the schedule run on exactly that grid
// covers every tile once.
TEST(Sm90Schedule, LaunchGridFromTheSchedule) {
  using sigjit::sched::launch_grid;
  const sigjit::sched::Grid tiles = launch_grid(false, kBlockM, Shape{3, 5, 300}, 132);
  EXPECT_EQ(tiles.x, 3u);  // ceil(300 / 128) query tiles
  EXPECT_EQ(tiles.y, 5u);
  EXPECT_EQ(tiles.z, 3u);
  EXPECT_EQ(launch_grid(true, kBlockM, Shape{3, 5, 300}, 132).x, 45u);         // fewer tiles than slots
  EXPECT_EQ(launch_grid(true, kBlockM, Shape{4, 16, 16384}, 132 * 2).x, 264u);  // more tiles than slots
  EXPECT_EQ(launch_grid(true, kBlockM, Shape{1, 1, 0}, 132).x, 1u);           // never an empty grid
  for (const Problem& p : {dense(3, 5, 300), dense(4, 16, 1024), dense(2, 3, 129)}) {
    const sigjit::sched::Grid g = launch_grid(true, kBlockM, p.shape, 132);
    EXPECT_EQ(g.y * g.z, 1u);
    expect_exact_cover(p, walk<Order::tiles, true>(p, static_cast<int>(g.x)), "persistent launch grid");
  }
}

TEST(Sm90Schedule, RaggedCoversEveryValidTileOnceAndNoPaddedTile) {
  std::mt19937 rng(3);
  std::vector<Problem> problems{ragged({1, 16384, 1, 300, 64}, 4, 16384), ragged({0, 0, 0}, 2, 512), ragged({16384, 5000, 1}, 3, 16384),
                                ragged({129, 128, 127, 0, 1}, 1, 256),
                                ragged({700, 900}, 2, 512)};  // lengths past the buffer (varlen max_seqlen) are clamped
  for (int i = 0; i < 20; ++i) {
    const int batch = 1 + static_cast<int>(rng() % 40), heads = 1 + static_cast<int>(rng() % 8), seqlen = 1 + static_cast<int>(rng() % 4096);
    std::vector<int> lens(batch);
    for (int& l : lens) l = static_cast<int>(rng() % (seqlen + 1));
    problems.push_back(ragged(lens, heads, seqlen));
  }
  for (const Problem& p : problems)
    for (int grid : {1, 3, 132, 5000}) {
      const std::string what = "ragged b" + std::to_string(p.shape.batch) + " h" + std::to_string(p.shape.heads) + " grid " + std::to_string(grid);
      for (Order order : {Order::tiles, Order::causal_rows, Order::causal_units}) {
        const Walk w = order == Order::tiles         ? walk<Order::tiles, false>(p, grid)
                       : order == Order::causal_rows ? walk<Order::causal_rows, false>(p, grid)
                                                     : walk<Order::causal_units, false>(p, grid);
        expect_exact_cover(p, w, what + " order " + std::to_string(static_cast<int>(order)));
        // The cursor only moves forward: each CTA reads each length at most once (+1 at the start).
        for (int cta = 0; cta < grid; ++cta) EXPECT_LE(w.length_reads[cta], p.shape.batch + 1) << what << " cta " << cta;
      }
    }
}

// The query tiles (m_start / BLOCK_M) of a one-CTA walk, in order.
template <bool DENSE>
std::vector<int> causal_blocks(const Problem& p) {
  const Walk w = walk<Order::causal_units, DENSE>(p, 1);
  std::vector<int> blocks;
  for (const Tile& t : w.per_cta[0]) blocks.push_back(t.m_start / kBlockM);
  return blocks;
}

TEST(Sm90Schedule, CausalUnitsPairEachQueryTileWithItsMirror) {
  // Tile n-1-k, then k: every unit reads n+1 key tiles. Each head's k = 0 (the last query
  // tile, partial in ragged batches) after the others.
  EXPECT_EQ(causal_blocks<true>(dense(1, 1, 8 * kBlockM)), (std::vector<int>{6, 1, 5, 2, 4, 3, 7, 0}));
  EXPECT_EQ(causal_blocks<true>(dense(1, 1, 5 * kBlockM)), (std::vector<int>{3, 1, 2, 4, 0}));  // one head: its middle alone
  // An odd n: the middle tiles of two heads make a unit, before the k = 0 units.
  const Walk d = walk<Order::causal_units, true>(dense(2, 3, 3 * kBlockM), 1);
  std::vector<std::pair<int, int>> head_block;
  for (const Tile& t : d.per_cta[0]) head_block.emplace_back(t.h, t.m_start / kBlockM);
  const std::vector<std::pair<int, int>> sequence{{0, 1}, {1, 1}, {2, 1}, {0, 2}, {0, 0}, {1, 2}, {1, 0}, {2, 2}, {2, 0}};
  ASSERT_EQ(head_block.size(), 18u);
  const std::vector<std::pair<int, int>> first_sequence(head_block.begin(), head_block.begin() + 9);
  EXPECT_EQ(first_sequence, sequence);
  EXPECT_EQ(d.per_cta[0][9].b, 1);
  // Ragged: per sequence.
  EXPECT_EQ(causal_blocks<false>(ragged({1000, 300}, 2, 1024)),
            (std::vector<int>{6, 1, 5, 2, 4, 3, 6, 1, 5, 2, 4, 3, 7, 0, 7, 0, 1, 1, 2, 0, 2, 0}));
  // A CTA takes both tiles of its unit, then strides: CTA 1 of 3 over 8 tiles (4 units).
  const Walk three = walk<Order::causal_units, true>(dense(1, 1, 8 * kBlockM), 3);
  ASSERT_EQ(three.per_cta[1].size(), 2u);
  EXPECT_EQ(three.per_cta[1][0].m_start, 5 * kBlockM);
  EXPECT_EQ(three.per_cta[1][1].m_start, 2 * kBlockM);
}

// The most causal work any CTA of `grid` gets, over the mean: per 64-row warpgroup of a query
// tile with valid rows, the key tiles (of BLOCK_M keys) it reads in a square problem.
template <bool DENSE>
double causal_imbalance(const Problem& p, int grid) {
  const Walk w = walk<Order::causal_units, DENSE>(p, grid);
  long long total = 0, most = 0;
  for (const auto& tiles : w.per_cta) {
    long long cost = 0;
    for (const Tile& t : tiles)
      for (int row = t.m_start; row < std::min(t.m_start + kBlockM, p.len_q[t.b]); row += 64)
        cost += (std::min(row + 64, p.len_q[t.b]) + kBlockM - 1) / kBlockM;
    total += cost;
    most = std::max(most, cost);
  }
  return static_cast<double>(most) * grid / static_cast<double>(total);
}

TEST(Sm90Schedule, CausalUnitsGiveEveryCtaTheSameWork) {
  // hd 128 L 2048 (8 x 16 heads, 16 query tiles): 1024 units of 17 key tiles over 132 CTAs, 7 or
  // 8 each: the busiest CTA 8 / 7.76 of the mean. Tiles strided one by one with a head's
  // tiles side by side would give CTA i the costs 16 - (i + 4r) % 16: up to 1.2x the mean.
  EXPECT_LE(causal_imbalance<true>(dense(8, 16, 2048), 132), 1.035);
  EXPECT_LE(causal_imbalance<true>(dense(4, 16, 4096), 132), 1.035);
  EXPECT_LE(causal_imbalance<true>(dense(16, 32, 1024), 132), 1.035);
  EXPECT_LE(causal_imbalance<false>(ragged(std::vector<int>(8, 2048), 16, 2048), 132), 1.035);
  // Odd query tile counts (5 at L 640): two heads' middle tiles make a unit; alone, a middle
  // tile is a half-cost unit at a period of 3 units per head, and 132 CTAs (a multiple of 3)
  // would take it on the same CTAs every time.
  EXPECT_LE(causal_imbalance<true>(dense(16, 16, 640), 132), 1.035);
}

TEST(Sm90Schedule, CausalLightUnitsSpreadOverTheCtas) {
  // TritonSigmoid's 25 %-padded batches at hd 128 (16 heads): every sequence's last query tile
  // is partial, so its k = 0 unit is light. Placed first of each head's units, at a period of
  // the units per head, the busiest CTA got 1.19x (L 1024) and 1.23x (L 2048) the mean of this
  // model (ragged sequences differ in length, so some imbalance stays).
  const std::pair<int, double> bounds[] = {{1024, 1.15}, {2048, 1.19}};
  for (const auto& [L, bound] : bounds) {
    std::vector<int> lens;
    const int batch = 16384 / L;
    for (int b = 0; b < batch; ++b) lens.push_back(L - static_cast<int>(0.5 * L * (b + 0.5) / batch));
    EXPECT_LE(causal_imbalance<false>(ragged(lens, 16, L), 132), bound) << "L " << L;
  }
}

// The (sequence, head) pairs among `window` consecutive work tiles of the order: the heads whose
// K/V the CTAs running at once read.
template <Order ORDER, bool DENSE>
std::size_t widest_window(const Problem& p, int window) {
  std::vector<Tile> order = walk<ORDER, DENSE>(p, 1).per_cta[0];
  std::size_t widest = 0;
  for (std::size_t i = 0; i + window <= order.size(); ++i) {
    std::map<std::pair<int, int>, int> heads;
    for (std::size_t j = i; j < i + window; ++j) ++heads[{order[j].b, order[j].h}];
    widest = std::max(widest, heads.size());
  }
  return widest;
}

TEST(Sm90Schedule, CausalTilesOfOneHeadRunTogether) {
  // 132 units (264 tiles) at once span at most two sequences' heads (each head's k = 0 unit
  // closes its sequence): at hd 128 L 2048 32 pairs' K/V, 32 MB, not all 128 pairs' 128 MB.
  EXPECT_LE((widest_window<Order::causal_units, true>(dense(8, 16, 2048), 2 * 132)), 2u * 16u);
}

TEST(Sm90Schedule, CausalRowsRunTheLongestRowsFirst) {
  // Order::causal_rows (BLOCK_M != BLOCK_N, hd 64's 192-row tiles).
  // Dense: the global order is query-tile-major, last query tile first, so every CTA's m_start
  // never grows and each round of the grid holds the heaviest tiles left.
  const Problem p = dense(2, 4, 4096);
  const Walk w = walk<Order::causal_rows, true>(p, 7);
  for (const auto& tiles : w.per_cta)
    for (std::size_t i = 1; i < tiles.size(); ++i) EXPECT_LE(tiles[i].m_start, tiles[i - 1].m_start);
  EXPECT_EQ(w.per_cta[0].front().m_start, 4096 - kBlockM);
  EXPECT_EQ(w.per_cta[0].back().m_start, 0);
  // Ragged: within a sequence, the last query tile of every head comes first.
  const Problem r = ragged({1000, 300}, 2, 1024);
  const Walk one = walk<Order::causal_rows, false>(r, 1);
  ASSERT_EQ(one.per_cta[0].size(), 2u * (8 + 3));
  EXPECT_EQ(one.per_cta[0][0].m_start, 896);
  EXPECT_EQ(one.per_cta[0][1].m_start, 896);  // the second head's
  EXPECT_EQ(one.per_cta[0][1].h, 1);
  EXPECT_EQ(one.per_cta[0][14].b, 0);  // sequence 0's first query tile comes last of its 16
  EXPECT_EQ(one.per_cta[0][14].m_start, 0);
  EXPECT_EQ(one.per_cta[0][16].b, 1);  // then sequence 1's, its last tile first
  EXPECT_EQ(one.per_cta[0][16].m_start, 256);
}

TEST(Sm90Schedule, DenseTileOrderEnumeratesThePaddingZeroPass) {
  // The padded layout's zero pass walks the non-causal dense order: with the work tiles it
  // covers every (b, h, m_start) of the buffer once.
  const Shape s{3, 2, 1000};
  std::map<std::tuple<int, int, int>, int> seen;
  for (int t = 0; t < sigjit::sched::dense_tile_count<kBlockM>(s); ++t) {
    const Tile tile = sigjit::sched::dense_tile<kBlockM>(t, s);
    ++seen[{tile.b, tile.h, tile.m_start}];
  }
  EXPECT_EQ(seen.size(), 3u * 2u * 8u);
  for (const auto& [key, n] : seen) EXPECT_EQ(n, 1);
  // Causal rows: heads innermost, so GQA heads of one KV head run together.
  EXPECT_EQ((sigjit::sched::dense_tile<kBlockM, Order::causal_rows>(1, s).h), 1);
  EXPECT_EQ((sigjit::sched::dense_tile<kBlockM, Order::causal_rows>(1, s).b), 0);
  EXPECT_EQ((sigjit::sched::dense_tile<kBlockM, Order::causal_rows>(2, s).b), 1);
}

TEST(Sm90Schedule, NonCausalTilesOfOneHeadRunTogether) {
  // Whole query tiles innermost, as the one-CTA-per-tile grid launches them: 132 CTAs at once
  // read ceil(132 / query tiles) + 1 heads' K/V, not 132 (hd 128 L 1024: 17 heads, 8.5 MB).
  const Problem d = dense(16, 16, 1024);
  EXPECT_LE((widest_window<Order::tiles, true>(d, 132)), 132u / 8u + 2u);
  const Walk w = walk<Order::tiles, true>(d, 1);
  EXPECT_EQ(w.per_cta[0][1].m_start, kBlockM);
  EXPECT_EQ(w.per_cta[0][1].h, 0);
  EXPECT_EQ(w.per_cta[0][8].h, 1);
  EXPECT_EQ(w.per_cta[0][8].m_start, 0);
  // Ragged: the same within a sequence, its partial tiles after its whole ones.
  const Problem r = ragged({1000, 300}, 2, 1024);
  const Walk rw = walk<Order::tiles, false>(r, 1);
  ASSERT_EQ(rw.per_cta[0].size(), 2u * (8 + 3));
  EXPECT_EQ(rw.per_cta[0][1].m_start, kBlockM);  // head 0's whole tiles 0..6
  EXPECT_EQ(rw.per_cta[0][7].h, 1);              // then head 1's
  EXPECT_EQ(rw.per_cta[0][7].m_start, 0);
  EXPECT_EQ(rw.per_cta[0][14].h, 0);  // then the partial tiles (rows 896..999) of both heads
  EXPECT_EQ(rw.per_cta[0][14].m_start, 896);
  EXPECT_EQ(rw.per_cta[0][15].h, 1);
  EXPECT_EQ(rw.per_cta[0][16].b, 1);
}

TEST(Sm90Schedule, PartialQueryTilesSpreadOverTheCtas) {
  // hd 64's 192-row tiles at L 512: two whole tiles and one of 128 rows per head. With query
  // tiles innermost throughout, CTA i of 132 would take the partial tile whenever i % 3 == 2
  // (132 is a multiple of 3): a third of the CTAs light, the rest heavy. Taken after the whole
  // tiles, the partial ones rotate over the CTAs.
  for (const Problem& p : {dense(32, 32, 512), ragged(std::vector<int>(32, 500), 32, 512)}) {
    const Walk w = p.len_q[0] == 512 ? walk<Order::tiles, true, 192>(p, 132) : walk<Order::tiles, false, 192>(p, 132);
    int fewest = 1 << 30, most = 0;
    for (const auto& tiles : w.per_cta) {
      const int partial = static_cast<int>(std::count_if(tiles.begin(), tiles.end(), [](const Tile& t) { return t.m_start == 384; }));
      fewest = std::min(fewest, partial);
      most = std::max(most, partial);
    }
    const double mean = 32.0 * 32.0 / 132.0;  // every CTA within a factor 2 of its share
    EXPECT_GE(fewest, mean / 2) << "partial tiles per CTA from " << fewest << " to " << most;
    EXPECT_LE(most, mean * 2) << "partial tiles per CTA from " << fewest << " to " << most;
  }
}

}  // namespace
