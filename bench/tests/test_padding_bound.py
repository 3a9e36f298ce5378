"""CPU test of bench/padding_bound.py, the tile-quantization bound behind issue 6's padded target
(CTest label cpu). What: a dense batch loses nothing to quantization relative to itself, a
one-row one-key granularity loses nothing at any padding, coarser tiles never do better than
finer ones on the grid's padded batches, and the bound quoted in bench/NOTES.md (64-row tiles
cannot reach 0.95 at L 512, 25 % padded, even with per-key granularity) follows from grid.py's
lengths. Why: that claim decides whether the target is a kernel problem or a tiling limit.
Cost: milliseconds.

    python3 -m unittest bench/tests/test_padding_bound.py -v
"""
import os
import sys
import unittest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, BENCH)
import padding_bound  # noqa: E402

LENGTHS = (512, 1024, 2048, 4096, 16384)


class PaddingBound(unittest.TestCase):
    def test_dense_is_its_own_reference(self):
        for L in LENGTHS:
            for rows, keys in ((64, 128), (192, 96), (128, 1)):
                self.assertAlmostEqual(padding_bound.bound(L, 0, rows, keys), 1.0, places=12)

    def test_single_element_tiles_lose_nothing(self):
        for L in LENGTHS:
            for pad in (25, 50):
                self.assertAlmostEqual(padding_bound.bound(L, pad, 1, 1), 1.0, places=12)

    def test_finer_tiles_of_a_dense_multiple_never_do_worse(self):
        # With L a multiple of both granularities the dense reference is exact, so only the padded
        # batch's waste differs, and it can only shrink as the tiles get finer.
        for L in LENGTHS:
            for pad in (25, 50):
                self.assertLessEqual(padding_bound.bound(L, pad, 128, 128), padding_bound.bound(L, pad, 64, 128) + 1e-12)
                self.assertLessEqual(padding_bound.bound(L, pad, 64, 128), padding_bound.bound(L, pad, 64, 64) + 1e-12)
                self.assertLessEqual(padding_bound.bound(L, pad, 64, 64), padding_bound.bound(L, pad, 64, 1) + 1e-12)

    def test_64_row_tiles_cannot_reach_issue_6s_target_at_l_512(self):
        self.assertLess(padding_bound.bound(512, 25, 64, 1), 0.95)
        self.assertGreater(padding_bound.bound(1024, 25, 64, 1), 0.95)


if __name__ == "__main__":
    unittest.main()
