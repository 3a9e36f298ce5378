"""CPU test of bench/summarize.py, the script that turns a device run's CSV into RESULTS.md: CTest
label cpu. What: grid rows keep sigjit's default (not a swept tile) and TritonSigmoid side by side
with their ratio; a run that measured the GEMM ceiling (bench/matmul_ceiling.py) gets a column of
sigjit's fraction of it and no grid row of its own; first-call sections from several devices
each render only the parts asked of them. Why: the results files are what issue targets
are judged by, and a mixed-up column would misstate them silently. Cost: milliseconds.

    python3 -m unittest bench/tests/test_bench_summarize.py -v
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, BENCH)
import summarize  # noqa: E402

HEADER = "impl,device,hd,L,pad,layout,causal,tile,dir,ms,min_ms,max_ms,tflops\n"
GRID = (
    "sigjit,H,64,512,0,dense,0,default,fwd,1,1,1,341\n"
    "sigjit,H,64,512,0,dense,0,h128x128c2s2o,fwd,1,1,1,300\n"
    "triton-sigmoid,H,64,512,0,dense,0,-,fwd,1,,,220\n"
    "sigjit,H,128,16384,25,padded,0,default,fwd,1,1,1,800\n"
)


def render(rows):
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write(HEADER + rows)
    try:
        return summarize.table(summarize.load(f.name)[0])
    finally:
        os.unlink(f.name)


def grid_rows(text):
    return [line for line in text.splitlines() if line.startswith("| 64 ") or line.startswith("| 128 ")]


class SummarizeTest(unittest.TestCase):
    def test_grid_row_uses_the_default_tile_and_the_ratio(self):
        rows = grid_rows(render(GRID))
        self.assertEqual(len(rows), 2)
        self.assertIn("| 341.0 | 220.0 | 1.55 |", rows[0])

    def test_no_ceiling_column_without_a_ceiling_row(self):
        self.assertNotIn("matmul ceiling", render(GRID))

    def test_ceiling_column_is_sigjit_over_the_measured_gemm(self):
        text = render(GRID + "matmul-ceiling,H,0,8192,0,gemm,0,-,gemm,1.4,1.3,1.5,775.00\n"
                             "matmul-ceiling,H,0,8192,0,gemm,0,-,gemm,1.5,1.3,1.5,700.00\n")
        self.assertIn("bf16 8192^3 775.0 TFLOPS", text)  # the best of the run's measurements
        rows = grid_rows(text)
        self.assertEqual(len(rows), 2, "the ceiling must not become a grid row")
        self.assertTrue(rows[0].endswith("| 1.55 | 0.44 |"), rows[0])
        self.assertTrue(rows[1].endswith("|  | 1.03 |"), rows[1])  # no TritonSigmoid: no ratio, still the ceiling


    def test_fp8_column_is_the_best_fp8_tile_over_bf16_and_its_tiles_are_swept(self):
        text = render(GRID + "sigjit-fp8,H,64,512,0,dense,0,default,fwd,1,1,1,500\n"
                             "sigjit-fp8,H,64,512,0,dense,0,h192x128c3s2_f1,fwd,1,1,1,620\n")
        rows = grid_rows(text)
        self.assertIn("sigjit FP8 TFLOPS | FP8 / bf16", text)
        self.assertTrue(rows[0].endswith("| 620.0 | 1.82 |"), rows[0])  # 620 / 341 (the bf16 default)
        self.assertTrue(rows[1].endswith("|  |  |"), rows[1])  # no FP8 at this point
        self.assertIn("fp8 h192x128c3s2_f1 620.0", text)
        self.assertIn("| 341.0 | 220.0 | 1.55 |", rows[0], "FP8 rows must not displace the bf16 default")

    def test_first_call_sections_from_two_devices_each_with_its_parts(self):
        ragged = {"device": "GPU-B", "ragged": {"lens": [3, 2], "B": 2, "L": 3, "H": 1, "D": 64, "padding_pct": 16.7,
                                                "rows": [{"impl": "sigjit padded", "ms": 1.5, "tflops": 2.0}]}}
        memory = {"device": "GPU-A", "memory": [{"impl": "sigjit", "case": "dense", "dir": "fwd", "peak_extra_mb": 64.0,
                                                "beyond_outputs_mb": 0.0, "memgetinfo_delta_mb": 0.0}],
                  "ragged": {"lens": [9], "B": 1, "L": 9, "H": 1, "D": 64, "padding_pct": 0.0,
                             "rows": [{"impl": "stale", "ms": 9.0, "tflops": 1.0}]}}
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name, doc in (("a.json", memory), ("b.json", ragged)):
                paths.append(os.path.join(tmp, name))
                with open(paths[-1], "w") as f:
                    json.dump(doc, f)
            results = os.path.join(tmp, "RESULTS.md")
            subprocess.run([sys.executable, os.path.join(BENCH, "summarize.py"), "--first-call", paths[0], "--first-call-parts", "memory",
                            "--first-call", paths[1], "--results", results], check=True)
            text = open(results).read()
        self.assertIn("Device: GPU-A", text)
        self.assertIn("Device: GPU-B", text)
        self.assertIn("| sigjit padded | 1.50 |", text)
        self.assertNotIn("stale", text, "the first file's ragged part was not asked for")
        self.assertIn(f"`{paths[0]}`, `{paths[1]}`", text)


if __name__ == "__main__":
    unittest.main()
