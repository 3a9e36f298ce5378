"""Prints sigjit vs TritonSigmoid per grid point from the CSV written in one device run."""
import csv
import sys
from collections import defaultdict

FIELDS = ["impl", "device", "hd", "L", "pad", "layout", "causal", "tile", "dir", "ms", "min_ms", "max_ms", "tflops"]


def main(path):
    best = defaultdict(dict)
    with open(path) as f:
        for row in csv.reader(f):
            if not row or row[0] == "impl":
                continue
            r = dict(zip(FIELDS, row))
            key = (int(r["hd"]), int(r["L"]), int(r["pad"]), r["causal"], r["dir"])
            name = r["impl"] if r["impl"] != "sigjit" or r["tile"] == "default" else f"sigjit[{r['tile']}]"
            best[key][name] = float(r["tflops"])
    print(f"| hd | L | pad % | causal | dir | sigjit TFLOPS | TritonSigmoid TFLOPS | ratio | SDPA flash | SDPA cuDNN |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(best):
        d = best[key]
        s, t = d.get("sigjit"), d.get("triton-sigmoid")
        ratio = f"{s / t:.2f}" if s and t else ""
        fmt = lambda x: f"{x:.1f}" if x else ""
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {fmt(s)} | {fmt(t)} | {ratio} | {fmt(d.get('sdpa-flash'))} | {fmt(d.get('sdpa-cudnn'))} |")
    sweeps = {k: {n: v for n, v in d.items() if n.startswith("sigjit[")} for k, d in best.items()}
    sweeps = {k: v for k, v in sweeps.items() if v}
    if sweeps:
        print("\nTile sweeps (TFLOPS):")
        for key in sorted(sweeps):
            print(key, " ".join(f"{n}={v:.1f}" for n, v in sorted(sweeps[key].items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main(sys.argv[1])
