// The work-tile schedule of the persistent sm90 forward (config suffix _p, fwd_sm90.cuh).
//
// What: a persistent CTA takes work tiles t = blockIdx.x + k * gridDim.x; this header maps a tile
// index to (sequence b, head h, first query row m_start). Shared by host and device so that the
// CPU tests (tests/cpu/test_sm90_schedule.cpp) run the kernel's own mapping: every valid tile
// exactly once for any grid size, heaviest first, the cursor's cost.
// Order ("heaviest first", so that the strided schedule ends on short tiles):
//   dense: query-tile-major over (m_block, batch, head), heads innermost (GQA heads sharing a KV
//     head run side by side); causal reverses m_block, so the longest rows go first.
//   padded / varlen: only valid tiles (m_start < len_q) are enumerated, sequence-major: sequence
//     b owns tiles_b x heads consecutive indices, tiles_b = ceil(len_q[b] / BLOCK_M); within a
//     sequence (m_block, head), heads innermost, causal longest rows first.
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
  int t;      // the work-tile index
  int b;      // padded / varlen: the sequence whose tiles may hold t
  int first;  // index of that sequence's first tile
  int tiles;  // its valid query tiles (per head)
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

// Tile t of the dense order (t < dense_tile_count). Also enumerates the padded layout's wholly
// padded tiles for their zero pass.
template <int BLOCK_M, bool CAUSAL>
SIGJIT_SCHED_HD Tile dense_tile(int t, const Shape& s) {
  const int m_tiles = (s.seqlen_q + BLOCK_M - 1) / BLOCK_M;
  const int per_m = s.batch * s.heads;
  const int m_block = t / per_m, rest = t - m_block * per_m;
  Tile tile;
  tile.b = rest / s.heads;
  tile.h = rest - tile.b * s.heads;
  tile.m_start = (CAUSAL ? m_tiles - 1 - m_block : m_block) * BLOCK_M;
  return tile;
}

// `query_tiles(b)`: valid query tiles of sequence b (padded / varlen; unused when DENSE).
template <bool DENSE, class QueryTiles>
SIGJIT_SCHED_HD TileCursor first_tile(int t0, const Shape& s, const QueryTiles& query_tiles) {
  TileCursor c{t0, 0, 0, 0};
  if (!DENSE && s.batch > 0) c.tiles = query_tiles(0);
  return c;
}

// Decodes c.t into `tile`; false once c.t is past the last work tile. Moves the cursor forward
// (c.t must not decrease between calls).
template <int BLOCK_M, bool CAUSAL, bool DENSE, class QueryTiles>
SIGJIT_SCHED_HD bool locate_tile(TileCursor& c, const Shape& s, const QueryTiles& query_tiles, Tile& tile) {
  if (DENSE) {
    if (c.t >= dense_tile_count<BLOCK_M>(s)) return false;
    tile = dense_tile<BLOCK_M, CAUSAL>(c.t, s);
    return true;
  }
  while (c.b < s.batch && c.t >= c.first + c.tiles * s.heads) {
    c.first += c.tiles * s.heads;
    ++c.b;
    c.tiles = c.b < s.batch ? query_tiles(c.b) : 0;
  }
  if (c.b >= s.batch) return false;
  const int local = c.t - c.first;
  const int m_block = local / s.heads;
  tile.b = c.b;
  tile.h = local - m_block * s.heads;
  tile.m_start = (CAUSAL ? c.tiles - 1 - m_block : m_block) * BLOCK_M;
  return true;
}

}  // namespace sched
}  // namespace sigjit
