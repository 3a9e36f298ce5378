"""Upper bound of padded / dense throughput per valid FLOP that tile quantization allows.

What: for TritonSigmoid's padded grid points (bench/grid.py's lengths: spread from L down to
L * (1 - 2 * pad), B = 16384 / L sequences), the fraction of the tensor-core work a kernel does on
valid (query, key) pairs when it covers each sequence with query tiles of `rows` and key tiles of
`keys`, relative to the same tiles on the dense batch of length L:

    bound = [sum_i l_i^2 / sum_i ceil(l_i / rows) rows * ceil(l_i / keys) keys]
            / [L^2 / (ceil(L / rows) rows * ceil(L / keys) keys)]

Why: issue 6 asks 25 %-padded >= 0.95x dense per valid FLOP. A kernel whose every tile ran at
the dense rate would still measure this bound; shorter sequences also amortise each CTA's
prologue over fewer key tiles, so measured ratios sit below it. wgmma's smallest M is 64 rows per
warpgroup, so `--rows 64` with `--keys 1` (ideal key granularity) bounds every Hopper kernel of
this design.

    python3 bench/padding_bound.py                      # the grid's L 512-16384 at 25 % and 50 %
    python3 bench/padding_bound.py --rows 64 --keys 128 --seq 512,1024 --pad 25
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grid import seq_lengths, shape  # noqa: E402


def covered(length, rows, keys):
    return math.ceil(length / rows) * rows * math.ceil(length / keys) * keys


def bound(seq_len, pad_percent, rows, keys):
    batch = shape(seq_len, head_dim=64)[0]  # the head count cancels; only the batch matters
    lens = seq_lengths(seq_len, batch, pad_percent)
    padded = sum(l * l for l in lens) / sum(covered(l, rows, keys) for l in lens)
    dense = seq_len * seq_len / covered(seq_len, rows, keys)
    return padded / dense


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq", default="512,1024,2048,4096,8192,16384")
    p.add_argument("--pad", default="25,50")
    p.add_argument("--rows", default="64,128,192", help="query-tile granularities (rows)")
    p.add_argument("--keys", default="1,32,64,128", help="key-tile granularities (keys)")
    a = p.parse_args()
    grans = [(int(r), int(k)) for r in a.rows.split(",") for k in a.keys.split(",")]
    print("pad % | L | " + " | ".join(f"{r}x{k}" for r, k in grans))
    for pad in map(int, a.pad.split(",")):
        for L in map(int, a.seq.split(",")):
            print(f"{pad} | {L} | " + " | ".join(f"{bound(L, pad, r, k):.3f}" for r, k in grans))


if __name__ == "__main__":
    main()
