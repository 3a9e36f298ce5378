// The work-tile schedule of the persistent sm90 forward (config suffix _p, fwd_sm90.cuh).
//
// What: a persistent CTA takes work items t = blockIdx.x + k * gridDim.x (a tile, or a causal
// unit of two tiles); this header maps them to (sequence b, head h, first query row m_start).
// Shared by host and device so that the CPU tests (tests/cpu/test_sm90_schedule.cpp) run the
// kernel's own mapping: every valid tile exactly once for any grid size, the order below, the
// cursor's cost.
// Order: non-causal tiles of one (sequence, head) cost the same except a last, partial query
// tile (fewer warpgroups at work); causal tiles differ in cost, so there the order decides the
// tail.
//   non-causal (dense, padded, varlen), per sequence: its whole query tiles in (head, m_block)
//     order, query tiles innermost as the one-CTA-per-tile grid launches them, then its partial
//     tiles over the heads. The CTAs running at once then share a few heads' K/V in L2; with
//     heads innermost, 132 CTAs at hd 128 L 1024 read 132 heads' K/V (66 MB, more than L2), each
//     K/V tile once from DRAM per query tile (H200, 2026-12-03: persistent dense 453 -> 620
//     TFLOPS). The partial tiles go last and together because a periodic cost in the strided
//     schedule aliases: with 3 tiles per head and 132 CTAs, the same CTAs would take every
//     light tile (hd 64 L 512 25 % padded: 274 -> 259 with query tiles innermost throughout).
//   causal (dense, padded, varlen): work units of two tiles of one (sequence, head), query tile
//     n-1-k then its mirror k (n query tiles; the middle one of an odd n alone), which read
//     n+1 key tiles together whatever k: every unit costs the same, as a non-causal tile does,
//     and a CTA takes a unit's two tiles in a row. Units in the non-causal order, (sequence,
//     head, k) with k innermost, so the CTAs running at once read a few heads' K/V. The order
//     this replaced, query-tile-major with heads innermost (every round of tiles one cost), put
//     every (sequence, head)'s K/V in flight: hd 128 L 2048, 8 x 16 pairs, 128 MB against 50 MB
//     of L2 (H200, 2026-12-03: persistent causal 455 TFLOPS, one CTA per tile 549).
//   padded / varlen enumerate valid tiles only (m_start < len_q), sequence-major: sequence b
//     owns tiles_b x heads consecutive indices (causal: units, ceil(tiles_b / 2) per head),
//     tiles_b = ceil(len_q[b] / BLOCK_M).
// Index -> sequence: each scheduling thread keeps a cursor (sequence b, index of its first tile);
// a CTA's indices only grow, so the cursor only moves forward: one pass over the sequence
// lengths per thread for the whole kernel (L2-resident ints), O(1) amortised per tile, no table,
// no shared memory, no extra launch, no host sync. The alternatives cost more: a host prefix
// table needs the lengths on the host (a device sync per call); a shared-memory table costs
// 4 x batch bytes that the tile configs need for K/V stages.
// Cost not removed: sequences are taken in index order (not sorted by length), so a long
// sequence late in a ragged batch can still form the tail.
#pragma once

#if defined(__CUDACC__)
#define SIGJIT_SCHED_HD __host__ __device__ __forceinline__
#else
#define SIGJIT_SCHED_HD inline
#endif

namespace sigjit {
namespace sched {

struct Tile {
  int b, h, m_start;
};

struct TileCursor {
  int t;       // the work item's index: a tile, or a causal unit
  int mirror;  // causal: 0 on a unit's only tile, 1 on its first (n-1-k) with its mirror (k) next, 2 on the mirror
  int b;       // padded / varlen: the sequence whose items may hold t
  int first;   // index of that sequence's first item
  int tiles;   // its valid query tiles (per head)
  int whole;   // how many of them hold BLOCK_M valid rows
};

// The problem's shape as the schedule sees it: seqlen_q is the buffer length (dense, padded) or
// max_seqlen_q (varlen).
struct Shape {
  int batch, heads, seqlen_q;
};

template <int BLOCK_M>
SIGJIT_SCHED_HD int dense_tile_count(const Shape& s) {
  return (s.seqlen_q + BLOCK_M - 1) / BLOCK_M * s.batch * s.heads;
}

// Work items per (sequence, head) with n query tiles: tiles, or causal units.
template <bool CAUSAL>
SIGJIT_SCHED_HD int items_per_head(int n) {
  return CAUSAL ? (n + 1) / 2 : n;
}

// The cursor's tile of causal unit k of a (sequence, head) with n query tiles: n-1-k, then (when
// it differs) its mirror k.
template <int BLOCK_M>
SIGJIT_SCHED_HD int causal_unit_start(TileCursor& c, int k, int n) {
  if (c.mirror == 2) return k * BLOCK_M;
  c.mirror = k != n - 1 - k;
  return (n - 1 - k) * BLOCK_M;
}

// Query tile `local` (< query tiles x heads) of one sequence in the non-causal order: whole tiles by
// head, then the partial one of each head.
SIGJIT_SCHED_HD void sequence_tile(int local, int whole, int heads, int block_m, Tile& tile) {
  if (local < whole * heads) {
    tile.h = local / whole;
    tile.m_start = (local - tile.h * whole) * block_m;
  } else {
    tile.h = local - whole * heads;
    tile.m_start = whole * block_m;
  }
}

// Tile t of the non-causal dense order (t < dense_tile_count); it also enumerates the padded
// layout's wholly padded tiles for their zero pass.
template <int BLOCK_M>
SIGJIT_SCHED_HD Tile dense_tile(int t, const Shape& s) {
  const int m_tiles = (s.seqlen_q + BLOCK_M - 1) / BLOCK_M;
  Tile tile;
  tile.b = t / (m_tiles * s.heads);
  sequence_tile(t - tile.b * m_tiles * s.heads, s.seqlen_q / BLOCK_M, s.heads, BLOCK_M, tile);
  return tile;
}

// `query_rows(b)`: valid query rows of sequence b, at most seqlen_q (padded / varlen; unused
// when DENSE).
template <int BLOCK_M>
SIGJIT_SCHED_HD void enter_sequence(TileCursor& c, int rows) {
  c.tiles = (rows + BLOCK_M - 1) / BLOCK_M;
  c.whole = rows / BLOCK_M;
}

template <int BLOCK_M, bool DENSE, class QueryRows>
SIGJIT_SCHED_HD TileCursor first_tile(int t0, const Shape& s, const QueryRows& query_rows) {
  TileCursor c{t0, 0, 0, 0, 0, 0};
  if (!DENSE && s.batch > 0) enter_sequence<BLOCK_M>(c, query_rows(0));
  return c;
}

// Decodes the cursor into `tile`; false once c.t is past the last work item. Moves the cursor
// forward (c.t must not decrease between calls).
template <int BLOCK_M, bool CAUSAL, bool DENSE, class QueryRows>
SIGJIT_SCHED_HD bool locate_tile(TileCursor& c, const Shape& s, const QueryRows& query_rows, Tile& tile) {
  if (DENSE) {
    const int m_tiles = (s.seqlen_q + BLOCK_M - 1) / BLOCK_M, per_head = items_per_head<CAUSAL>(m_tiles);
    if (c.t >= per_head * s.batch * s.heads) return false;
    if (!CAUSAL) {
      tile = dense_tile<BLOCK_M>(c.t, s);
      return true;
    }
    const int pair = c.t / per_head, k = c.t - pair * per_head;
    tile.b = pair / s.heads;
    tile.h = pair - tile.b * s.heads;
    tile.m_start = causal_unit_start<BLOCK_M>(c, k, m_tiles);
    return true;
  }
  while (c.b < s.batch && c.t >= c.first + items_per_head<CAUSAL>(c.tiles) * s.heads) {
    c.first += items_per_head<CAUSAL>(c.tiles) * s.heads;
    ++c.b;
    if (c.b < s.batch) enter_sequence<BLOCK_M>(c, query_rows(c.b));
  }
  if (c.b >= s.batch) return false;
  const int local = c.t - c.first;
  tile.b = c.b;
  if (!CAUSAL) {
    sequence_tile(local, c.whole, s.heads, BLOCK_M, tile);
    return true;
  }
  const int per_head = items_per_head<true>(c.tiles);
  tile.h = local / per_head;
  tile.m_start = causal_unit_start<BLOCK_M>(c, local - tile.h * per_head, c.tiles);
  return true;
}

// The cursor's next tile for CTA-strided scheduling over `grid` CTAs: a causal unit's mirror
// tile, else the next work item.
template <bool CAUSAL>
SIGJIT_SCHED_HD void advance_tile(TileCursor& c, int grid) {
  if (CAUSAL && c.mirror == 1) {
    c.mirror = 2;
    return;
  }
  c.mirror = 0;
  c.t += grid;
}

}  // namespace sched
}  // namespace sigjit
