"""CPU test of bench/tile_timeline.py, which reads SIGJIT_TRACE_TILES traces (CTest label cpu).
What: on hand-built traces whose answers are known (two SMs, one idle for the last half, one CTA
walking three tiles with fixed gaps), the span, busy share, tail, gaps, writer lag and per-key-
block medians come out as constructed, the consumers' marks split each tile into K/V wait, steps
and epilogue, and a trace without complete records is refused.
Why: the timeline decides which backward schedule lever comes next. Cost: milliseconds.

    python3 -m unittest bench/tests/test_tile_timeline.py -v
"""
import os
import sys
import tempfile
import unittest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, BENCH)
import tile_timeline  # noqa: E402

HEADER = "tile,sm,cta,begin_ns,end_ns,reduced_ns\n"
HEADER_MARKS = "tile,sm,cta,begin_ns,end_ns,reduced_ns,kv_ready_ns,steps_done_ns\n"


def write(rows, header=HEADER):
    f = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    f.write(header + "".join(",".join(str(x) for x in r) + "\n" for r in rows))
    f.close()
    return f.name


class TileTimeline(unittest.TestCase):
    def test_one_cta_per_tile_with_an_idle_half(self):
        # SM 0 runs tiles 0 and 2 back to back over 0-2000 ns; SM 1 runs tile 1 over 0-1000 ns.
        path = write([(0, 0, 0, 1000, 2000, 0), (1, 1, 1, 1000, 2000, 0), (2, 0, 2, 2000, 3000, 0)])
        s = tile_timeline.summarize(tile_timeline.load(path))
        self.assertEqual((s["tiles"], s["sms"]), (3, 2))
        self.assertAlmostEqual(s["span_us"], 2.0)
        self.assertAlmostEqual(s["busy"], 3000 / (2 * 2000))
        self.assertAlmostEqual(s["tail_idle"], 1000 / (2 * 2000))
        self.assertAlmostEqual(s["gap_us"], 0.0)
        self.assertIsNone(s["writer_lag_us"])

    def test_persistent_cta_gaps_and_writer_lag(self):
        # One CTA: tiles of 1000 ns with 200 ns between them; the writer ends 300 ns after each.
        rows = [(t, 5, 0, 1000 + 1200 * t, 2000 + 1200 * t, 2300 + 1200 * t) for t in range(3)]
        s = tile_timeline.summarize(tile_timeline.load(write(rows)))
        self.assertAlmostEqual(s["gap_us"], 0.2)
        self.assertAlmostEqual(s["writer_lag_us"], 0.3)
        self.assertAlmostEqual(s["span_us"], (2300 + 2400 - 1000) / 1e3)
        self.assertAlmostEqual(s["tile_us"], 1.0)

    def test_key_block_medians(self):
        # Two key blocks per head: block 0's tiles take 3000 ns, block 1's 1000 ns (causal-like).
        rows = [(t, t, t, 100, 100 + (3000 if t % 2 == 0 else 1000), 0) for t in range(6)]
        d = tile_timeline.key_block_durations(tile_timeline.load(write(rows)), 2)
        self.assertEqual(d, {0: 3.0, 1: 1.0})

    def test_start_cost_counts_slow_first_tiles(self):
        # Two SMs, two key blocks (2000 and 1000 ns), four tiles each back to back; each SM's first
        # tile takes 600 ns more (a zeroing at the start): 600 ns of excess per SM, all of it early.
        rows, t = [], 0
        for sm in range(2):
            clock = 0
            for i in range(4):
                kb = i % 2
                d = (2000 if kb == 0 else 1000) + (600 if i == 0 else 0)
                rows.append((2 * t + kb, sm, sm, 1000 + clock, 1000 + clock + d, 0))
                clock += d
                t += i % 2
        c = tile_timeline.start_cost(tile_timeline.load(write(rows)), 2)
        self.assertAlmostEqual(c["steady_work_us"], 6.0)
        self.assertAlmostEqual(c["excess_us"], 0.6)
        self.assertAlmostEqual(c["excess_first_tenth_us"], 0.6)

    def test_phases_split_each_tile(self):
        # One SM, four tiles of 1000 ns back to back: K/V ready 100 ns in, steps done 800 ns in,
        # so 100 ns of wait, 700 of steps and 200 of epilogue each; 400 and 800 ns per SM.
        rows = [(t, 0, 0, 1000 * t + 1, 1000 * t + 1001, 0, 1000 * t + 101, 1000 * t + 801) for t in range(4)]
        p = tile_timeline.phases(tile_timeline.load(write(rows, HEADER_MARKS)))
        self.assertAlmostEqual(p["kv_wait_us"], 0.1)
        self.assertAlmostEqual(p["steps_us"], 0.7)
        self.assertAlmostEqual(p["epilogue_us"], 0.2)
        self.assertAlmostEqual(p["kv_wait_per_sm_us"], 0.4)
        self.assertAlmostEqual(p["epilogue_per_sm_us"], 0.8)

    def test_phases_absent_in_old_traces(self):
        rows = [(t, 0, 0, 1000 * t + 1, 1000 * t + 1001, 0) for t in range(2)]
        self.assertIsNone(tile_timeline.phases(tile_timeline.load(write(rows))))

    def test_refuses_a_trace_without_records(self):
        with self.assertRaises(SystemExit):
            tile_timeline.load(write([(0, 0, 0, 0, 0, 0)]))


if __name__ == "__main__":
    unittest.main()
