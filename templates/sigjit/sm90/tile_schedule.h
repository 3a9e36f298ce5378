// The work-tile schedule of the persistent sm90 forward (config suffix _p, sm90/fwd.cuh).
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
//   causal, BLOCK_M == BLOCK_N (Order::causal_units): work units of two tiles that read n+1
//     key tiles together (n query tiles per head): query tile n-1-k, then its mirror k; for
//     an odd n the middle tiles of two heads make a unit. A CTA takes a unit's two tiles in a
//     row, and whole units cost the same, as non-causal tiles do, so the strided schedule
//     balances. Per sequence: the units k >= 1 in (head, k) order, k innermost (the CTAs
//     running at once read a few heads' K/V), then the middle pairs, then each head's k = 0,
//     which holds the last query tile: when that one is partial its unit is light, and light
//     units at a fixed period aliased on the strided schedule (as partial non-causal tiles).
//     Measured (H200, 2026-12-03, hd 128 causal dense, TFLOPS at L 512 / 1024 / 2048 / 4096;
//     bench/results/2026-12-03-h200-causal-*.csv): one CTA per tile 257 / 400 / 547 / 667,
//     these units 297 / 451 / 595 / 700, causal_rows 252 / 357 / 456 / 590 (an earlier call:
//     it puts every (sequence, head)'s K/V in flight, 8 x 16 pairs at L 2048, 128 MB against
//     50 MB of L2). 25 % padded with k = 0 first: 1024 298, 2048 436; last: 315, 455.
//   causal, BLOCK_M != BLOCK_N (Order::causal_rows): a tile and its mirror differ in cost
//     (hd 64's 192-row tiles over 128 keys), and units measured up to 8 % below this order
//     (hd 64 25 % padded L 2048 373 -> 342). Dense: query-tile-major over (m_block, batch,
//     head), m_block reversed and heads innermost: every round of the strided schedule takes
//     tiles of one cost, the longest rows first. Padded / varlen: within a sequence (m_block,
//     head), last query tile first.
//   padded / varlen enumerate valid tiles only (m_start < len_q), sequence-major: sequence b
//     owns tiles_b x heads consecutive indices (causal: its units), tiles_b = ceil(len_q[b] /
//     BLOCK_M).
// Index -> sequence: each scheduling thread keeps a cursor (sequence b, index of its first item);
// a CTA's indices only grow, so the cursor only moves forward: one pass over the sequence
// lengths per thread for the whole kernel (L2-resident ints), O(1) amortised per tile, no table,
// no shared memory, no extra launch, no host sync. The alternatives cost more: a host prefix
// table needs the lengths on the host (a device sync per call); a shared-memory table costs
// 4 x batch bytes that the tile configs need for K/V stages.
// Cost not removed: sequences are taken in index order (not sorted by length), so a long
// sequence late in a ragged batch can still form the tail.
#pragma once

#include "sigjit/common/host_device.h"

namespace sigjit {
namespace sched {

struct Tile {
  int b, h, m_start;
};

enum class Order { tiles, causal_rows, causal_units };

template <bool CAUSAL, int BLOCK_M, int BLOCK_N>
constexpr Order kOrderFor = !CAUSAL              ? Order::tiles
                            : BLOCK_M == BLOCK_N ? Order::causal_units
                                                 : Order::causal_rows;

struct TileCursor {
  int t;       // the work item's index: a tile, or a causal unit
  int mirror;  // causal: 0 on a unit's only tile, 1 on its first with a second next, 2 on the second
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
SIGJIT_HD_INLINE int dense_tile_count(const Shape& s) {
  return (s.seqlen_q + BLOCK_M - 1) / BLOCK_M * s.batch * s.heads;
}

// The grid the host launches, from the same schedule the kernel follows: one CTA per (query
// tile, head, sequence), or persistent: as many CTAs as can be resident (`slots`: SMs x CTAs
// per SM), at most one per tile, each striding over the work items by gridDim.x in the order
// above. The dense tile count bounds the padded and varlen ones, whose valid count only the
// device knows.
struct Grid {
  unsigned x, y, z;
};

SIGJIT_HD_INLINE Grid launch_grid(bool persistent, int block_m, const Shape& s, long long slots) {
  const int m_tiles = (s.seqlen_q + block_m - 1) / block_m;
  if (!persistent) return Grid{(unsigned)m_tiles, (unsigned)s.heads, (unsigned)s.batch};
  const long long tiles = (long long)m_tiles * s.heads * s.batch;
  const long long ctas = tiles < slots ? tiles : slots;
  return Grid{(unsigned)(ctas > 1 ? ctas : 1), 1u, 1u};
}

// Work items of a sequence with n query tiles per head: tiles, or causal units (n / 2 per head
// of a tile and its mirror, then for an odd n a unit per two heads' middle tiles).
template <Order ORDER>
SIGJIT_HD_INLINE int items_per_sequence(int n, int heads) {
  return ORDER == Order::causal_units ? n / 2 * heads + n % 2 * ((heads + 1) / 2) : n * heads;
}

// The cursor's tile of causal unit u of a sequence with n query tiles per head: on the unit's
// first tile (c.mirror != 2) it also records whether a second follows.
template <int BLOCK_M>
SIGJIT_HD_INLINE void causal_unit_tile(TileCursor& c, int u, int n, int heads, Tile& tile) {
  const int pairs = n / 2;                                // units per head of a tile and its mirror
  const int inner = pairs > 1 ? (pairs - 1) * heads : 0;  // those with k >= 1
  const int middles = n % 2 * ((heads + 1) / 2);          // units of two heads' middle tiles
  const bool second = c.mirror == 2;
  int k;
  if (u < inner) {
    tile.h = u / (pairs - 1);
    k = 1 + u - tile.h * (pairs - 1);
  } else if (u < inner + middles) {
    const int h0 = 2 * (u - inner);
    tile.h = second ? h0 + 1 : h0;
    tile.m_start = pairs * BLOCK_M;
    if (!second) c.mirror = h0 + 1 < heads ? 1 : 0;
    return;
  } else {
    tile.h = u - inner - middles;
    k = 0;
  }
  tile.m_start = (second ? k : n - 1 - k) * BLOCK_M;
  if (!second) c.mirror = 1;
}

// Query tile `local` (< query tiles x heads) of one sequence in the non-causal order: whole tiles by
// head, then the partial one of each head.
SIGJIT_HD_INLINE void sequence_tile(int local, int whole, int heads, int block_m, Tile& tile) {
  if (local < whole * heads) {
    tile.h = local / whole;
    tile.m_start = (local - tile.h * whole) * block_m;
  } else {
    tile.h = local - whole * heads;
    tile.m_start = whole * block_m;
  }
}

// Tile t of the dense order (t < dense_tile_count), Order::tiles or causal_rows. The non-causal
// order also enumerates the padded layout's wholly padded tiles for their zero pass.
template <int BLOCK_M, Order ORDER = Order::tiles>
SIGJIT_HD_INLINE Tile dense_tile(int t, const Shape& s) {
  const int m_tiles = (s.seqlen_q + BLOCK_M - 1) / BLOCK_M;
  Tile tile;
  if (ORDER == Order::tiles) {
    tile.b = t / (m_tiles * s.heads);
    sequence_tile(t - tile.b * m_tiles * s.heads, s.seqlen_q / BLOCK_M, s.heads, BLOCK_M, tile);
    return tile;
  }
  const int per_m = s.batch * s.heads;
  const int m_block = t / per_m, rest = t - m_block * per_m;
  tile.b = rest / s.heads;
  tile.h = rest - tile.b * s.heads;
  tile.m_start = (m_tiles - 1 - m_block) * BLOCK_M;
  return tile;
}

// `query_rows(b)`: valid query rows of sequence b, at most seqlen_q (padded / varlen; unused
// when DENSE).
template <int BLOCK_M>
SIGJIT_HD_INLINE void enter_sequence(TileCursor& c, int rows) {
  c.tiles = (rows + BLOCK_M - 1) / BLOCK_M;
  c.whole = rows / BLOCK_M;
}

template <int BLOCK_M, bool DENSE, class QueryRows>
SIGJIT_HD_INLINE TileCursor first_tile(int t0, const Shape& s, const QueryRows& query_rows) {
  TileCursor c{t0, 0, 0, 0, 0, 0};
  if (!DENSE && s.batch > 0) enter_sequence<BLOCK_M>(c, query_rows(0));
  return c;
}

// Decodes the cursor into `tile`; false once c.t is past the last work item. Moves the cursor
// forward (c.t must not decrease between calls).
template <int BLOCK_M, Order ORDER, bool DENSE, class QueryRows>
SIGJIT_HD_INLINE bool locate_tile(TileCursor& c, const Shape& s, const QueryRows& query_rows, Tile& tile) {
  if (DENSE) {
    const int m_tiles = (s.seqlen_q + BLOCK_M - 1) / BLOCK_M, per_sequence = items_per_sequence<ORDER>(m_tiles, s.heads);
    if (c.t >= per_sequence * s.batch) return false;
    if (ORDER != Order::causal_units) {
      tile = dense_tile<BLOCK_M, ORDER>(c.t, s);
      return true;
    }
    tile.b = c.t / per_sequence;
    causal_unit_tile<BLOCK_M>(c, c.t - tile.b * per_sequence, m_tiles, s.heads, tile);
    return true;
  }
  while (c.b < s.batch && c.t >= c.first + items_per_sequence<ORDER>(c.tiles, s.heads)) {
    c.first += items_per_sequence<ORDER>(c.tiles, s.heads);
    ++c.b;
    if (c.b < s.batch) enter_sequence<BLOCK_M>(c, query_rows(c.b));
  }
  if (c.b >= s.batch) return false;
  const int local = c.t - c.first;
  tile.b = c.b;
  if (ORDER == Order::tiles) {
    sequence_tile(local, c.whole, s.heads, BLOCK_M, tile);
  } else if (ORDER == Order::causal_units) {
    causal_unit_tile<BLOCK_M>(c, local, c.tiles, s.heads, tile);
  } else {
    const int m_block = local / s.heads;
    tile.h = local - m_block * s.heads;
    tile.m_start = (c.tiles - 1 - m_block) * BLOCK_M;
  }
  return true;
}

// The cursor's next tile for CTA-strided scheduling over `grid` CTAs: a causal unit's second
// tile, else the next work item.
template <Order ORDER>
SIGJIT_HD_INLINE void advance_tile(TileCursor& c, int grid) {
  if (ORDER == Order::causal_units && c.mirror == 1) {
    c.mirror = 2;
    return;
  }
  c.mirror = 0;
  c.t += grid;
}

}  // namespace sched
}  // namespace sigjit
