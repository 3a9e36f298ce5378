"""Two passes of sigjit-bench over the same points, side by side: an A/B of one switch.

    python3 bench/ab_table.py A.csv B.csv [--names overlap,after]

Each CSV is sigjit-bench's (bench/summarize.py's FIELDS, no header); a point measured more than
once (several rounds appended to one file) shows every round's TFLOPS, and the change is the
ratio of the A and B medians over the rounds. Prints a markdown table to stdout.
"""
import argparse
import csv
import statistics
from collections import defaultdict

from summarize import FIELDS


def rounds(path):
    by_point = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) != len(FIELDS) or row[0] == "impl":
                continue
            r = dict(zip(FIELDS, row))
            key = (int(r["hd"]), r["layout"], int(r["pad"]), r["causal"], r["tile"], int(r["L"]))
            by_point[key].append(float(r["tflops"]))
    return by_point


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--names", default="A,B", help="the two passes' names, comma-separated")
    args = ap.parse_args()
    name_a, name_b = args.names.split(",")
    a, b = rounds(args.a), rounds(args.b)
    print(f"| hd | layout | pad | causal | tile | L | {name_a} TFLOPS | {name_b} TFLOPS | {name_a} / {name_b} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(set(a) & set(b)):
        ta, tb = a[key], b[key]
        change = statistics.median(ta) / statistics.median(tb) - 1
        hd, layout, pad, causal, tile, length = key
        fmt = lambda ts: " / ".join(f"{t:.1f}" for t in ts)
        print(f"| {hd} | {layout} | {pad} | {causal} | {tile} | {length} | {fmt(ta)} | {fmt(tb)} | {change:+.1%} |")


if __name__ == "__main__":
    main()
