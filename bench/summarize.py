"""Renders one device run's CSV as the results table (sigjit vs TritonSigmoid per grid point).

    python3 bench/summarize.py RUN.csv                         # table to stdout
    python3 bench/summarize.py RUN.csv --results bench/RESULTS.md --env ENV.txt --command "..."

With --results it writes the whole results file (header with date, GPU, driver and the exact
command, then the table), so bench/RESULTS.md is regenerated, never hand-edited.

bench/compare.py's CSV (sigjit through the PyTorch binding, TritonSigmoid, SDPA flash/cuDNN in one
process) and bench/first_call.py's JSON (first-call latency, peak memory, ragged batch) add
sections; either can stand alone (the positional CSV is then optional):

    python3 bench/summarize.py RUN.csv --results bench/RESULTS.md --env ENV.txt \
        --compare compare.csv --figure bench/results/compare.png --first-call first_call.json
"""
import argparse
import csv
import datetime
import json
import math
import os
import sys
from collections import defaultdict

CEILING = "matmul-ceiling"
FIELDS = ["impl", "device", "hd", "L", "pad", "layout", "causal", "tile", "dir", "ms", "min_ms", "max_ms", "tflops"]


def load(path):
    """Best TFLOPS per grid point and implementation; the run's GEMM ceiling (bench/matmul_ceiling.py)
    goes under the key CEILING."""
    best, device = defaultdict(dict), ""
    with open(path) as f:
        for row in csv.reader(f):
            if not row or row[0] == "impl":
                continue
            r = dict(zip(FIELDS, row))
            device = device or r["device"]
            if r["impl"] == "matmul-ceiling":
                best[CEILING][f"bf16 {r['L']}^3"] = max(float(r["tflops"]), best[CEILING].get(f"bf16 {r['L']}^3", 0.0))
                continue
            key = (int(r["hd"]), int(r["L"]), int(r["pad"]), r["layout"], r["causal"], r["dir"])
            sigjit_impl = r["impl"] in ("sigjit", "sigjit-fp8")
            name = r["impl"] if not sigjit_impl or r["tile"] == "default" else f"{r['impl']}[{r['tile']}]"
            best[key][name] = float(r["tflops"])
    return best, device


def sweep_label(name):
    """'sigjit[TILE]' -> 'TILE', 'sigjit-fp8[TILE]' -> 'fp8 TILE'."""
    impl, tile = name[:-1].split("[", 1)
    return tile if impl == "sigjit" else f"{impl[7:]} {tile}"


def table(best):
    # The deterministic backward (sigjit-bench --deterministic) gets its own column and its cost
    # against the default backward, when the run measured it; the GEMM ceiling, when measured,
    # a column of sigjit's fraction of it.
    ceilings = best.get(CEILING, {})
    ceiling = max(ceilings.values()) if ceilings else None
    best = {k: v for k, v in best.items() if k != CEILING}
    det = any("sigjit-det" in d for d in best.values())
    fp8 = any("sigjit-fp8" in d for d in best.values())
    head = "| hd | L | pad % | layout | causal | dir | sigjit TFLOPS | TritonSigmoid TFLOPS | sigjit / TritonSigmoid |"
    rule = "|---|---|---|---|---|---|---|---|---|"
    if ceiling:
        head += " sigjit / matmul ceiling |"
        rule += "---|"
    if det:
        head += " sigjit deterministic TFLOPS | deterministic time / default time |"
        rule += "---|---|"
    if fp8:  # sigjit-bench --dtype fp8: the best of its tiles against bf16 in the same run
        head += " sigjit FP8 TFLOPS | FP8 / bf16 |"
        rule += "---|---|"
    out = []
    if ceiling:
        out += [f"Matmul ceiling measured in the same run (cuBLAS via torch.matmul, {', '.join(f'{n} {v:.1f} TFLOPS' for n, v in ceilings.items())}, "
                "`bench/matmul_ceiling.py`).", ""]
    out += [head, rule]
    f = lambda x: f"{x:.1f}" if x else ""
    for key in sorted(best):
        d = best[key]
        s, t, sd = d.get("sigjit"), d.get("triton-sigmoid"), d.get("sigjit-det")
        s8 = max([v for n, v in d.items() if n == "sigjit-fp8" or n.startswith("sigjit-fp8[")], default=None)
        if s is None and t is None and sd is None and s8 is None:
            continue
        ratio = f"{s / t:.2f}" if s and t else ""
        row = f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {'yes' if key[4] == '1' else 'no'} | {key[5]} | {f(s)} | {f(t)} | {ratio} |"
        if ceiling:
            row += f" {f'{s / ceiling:.2f}' if s else ''} |"
        if det:
            row += f" {f(sd)} | {f'{s / sd:.2f}' if s and sd else ''} |"
        if fp8:
            row += f" {f(s8)} | {f'{s8 / s:.2f}' if s and s8 else ''} |"
        out.append(row)
    sweeps = {k: {n: v for n, v in d.items() if n.startswith(("sigjit[", "sigjit-fp8["))} for k, d in best.items()}
    sweeps = {k: v for k, v in sweeps.items() if v}
    if sweeps:
        out.append("\nTile sweeps (TFLOPS):")
        for key in sorted(sweeps):
            out.append(f"- hd {key[0]} L {key[1]}: " + ", ".join(f"{sweep_label(n)} {v:.1f}" for n, v in sorted(sweeps[key].items(), key=lambda kv: -kv[1])))
    return "\n".join(out)


COMPARE_IMPLS = [("sigjit", "sigjit"), ("triton-sigmoid", "TritonSigmoid"), ("sdpa-flash", "SDPA flash (softmax)"),
                 ("sdpa-cudnn", "SDPA cuDNN (softmax)")]


def compare_rows(path, directions=None):
    """bench/compare.py's CSV rows, only the given directions (fwd, bwd) when given."""
    with open(path) as f:
        return [r for r in csv.DictReader(f) if not directions or r["dir"] in directions]


def plot_compare(rows, path):
    """Re-renders compare.py's figure from stored rows (no torch, no GPU needed)."""
    from compare_plot import plot
    typed = [dict(impl=r["impl"], hd=int(r["hd"]), L=int(r["L"]), pad=int(r["pad"]), dir=r["dir"], tflops=float(r["tflops"])) for r in rows]
    impls = [i for i, _ in COMPARE_IMPLS]
    return plot(typed, path, impls)


def compare_section(path, figure=None, results_dir=".", directions=None):
    """Markdown for bench/compare.py's CSV: TFLOPS per implementation and the ratio per point."""
    points, device = {}, ""
    for r in compare_rows(path, directions):
        device = device or r["device"]
        key = (int(r["hd"]), r["dir"], int(r["pad"]), int(r["L"]), r["causal"])
        points.setdefault(key, {})[r["impl"]] = float(r["tflops"])
    impls = [(i, label) for i, label in COMPARE_IMPLS if any(i in d for d in points.values())]
    # Ratios against each baseline measured: TritonSigmoid (the incumbent) and cuDNN's SDPA (issue 21's bar).
    baselines = [(i, label) for i, label in impls if i in ("triton-sigmoid", "sdpa-cudnn")]
    out = [f"## sigjit, TritonSigmoid and SDPA in one process (`bench/compare.py`)\n",
           f"Device: {device}. Source: `{path}`. bf16, TritonSigmoid's grid (16384 tokens per batch, hidden 2048); "
           "TFLOPS over valid tokens (forward 4·H·D·Σ L², halved when causal; backward timed alone, 2.5x the forward's FLOPs). "
           "sigjit through its PyTorch binding (`sigjit.torch`), TritonSigmoid 0.1.2, SDPA (softmax attention: a reference "
           "point, not the same computation; dense points only). CUDA-event medians of GPU time with L2 flushed before each call. "
           "Ratio > 1: sigjit faster.\n",
           "| hd | dir | pad % | L | causal | " + " | ".join(label for _, label in impls) + " | "
           + " | ".join(f"sigjit / {label}" for _, label in baselines) + " |",
           "|---|---|---|---|---|" + "---|" * (len(impls) + len(baselines))]
    ratios = {}
    for key in sorted(points, key=lambda k: (k[0], k[1] != "fwd", k[2], k[3], k[4])):
        d = points[key]
        cells = [f"{d[i]:.1f}" if i in d else "" for i, _ in impls]
        for b, label in baselines:
            s, t = d.get("sigjit"), d.get(b)
            cells.append(f"{s / t:.2f}" if s and t else "")
            if s and t:
                ratios.setdefault((key[0], key[1], label), []).append(s / t)
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {'yes' if key[4] == '1' else 'no'} | " + " | ".join(cells) + " |")
    if ratios:
        out.append("")
        for (hd, d, label), rs in sorted(ratios.items(), key=lambda kv: (kv[0][0], kv[0][1] != "fwd", kv[0][2])):
            gm = math.exp(sum(map(math.log, rs)) / len(rs))
            out.append(f"- hd {hd} {d}: sigjit / {label} geometric mean {gm:.2f} over {len(rs)} points "
                       f"(min {min(rs):.2f}, max {max(rs):.2f})")
    if figure:
        out.append(f"\n![sigjit, TritonSigmoid and SDPA TFLOPS]({os.path.relpath(figure, results_dir)})")
    return "\n".join(out) + "\n"


def first_call_section(path, parts=None):
    """Markdown for bench/first_call.py's JSON (only the given parts: first, memory, ragged)."""
    with open(path) as f:
        r = json.load(f)
    if parts:
        r = {k: v for k, v in r.items() if k not in ("first_call", "memory", "ragged") or {"first_call": "first"}.get(k, k) in parts}
    out = [f"## First call, memory, ragged batch (`bench/first_call.py`)\n", f"Device: {r.get('device', '')}. Source: `{path}`.\n"]
    if r.get("first_call"):
        s = r.get("first_call_shape", {})
        out += [f"First call in a fresh process (dense bf16, B {s.get('B')}, L {s.get('L')}, H {s.get('H')}, hd {s.get('D')}; after torch "
                "and the CUDA context are up). Cold: empty SIGJIT_CACHE_DIR / TRITON_CACHE_DIR; warm: the directory a previous "
                "process filled. Module memory: device memory the first call took outside PyTorch's allocator.\n",
                "| implementation | cache | first fwd ms | second fwd ms | first bwd ms | second bwd ms | module memory MB |",
                "|---|---|---|---|---|---|---|"]
        for x in r["first_call"]:
            if "error" in x:
                out.append(f"| {x['impl']} | {x['cache']} | failed: {x['error']} | | | | |")
                continue
            out.append(f"| {x['impl']} | {x['cache']} | {x['first_fwd_ms']:.1f} | {x['second_fwd_ms']:.2f} | {x['first_bwd_ms']:.1f} | "
                       f"{x['second_bwd_ms']:.2f} | {x['first_call_nontorch_mb']:.1f} |")
        out.append("")
    if r.get("memory"):
        out += ["Peak extra device memory per call (warm): `torch.cuda.max_memory_allocated()` minus the memory allocated before "
                "the call, outputs included; 'beyond outputs' subtracts O (forward) or O, dO, dQ, dK, dV (forward+backward); "
                "cudaMemGetInfo: free memory before minus after.\n",
                "| implementation | case | dir | peak extra MB | beyond outputs MB | cudaMemGetInfo MB |", "|---|---|---|---|---|---|"]
        for x in r["memory"]:
            if "error" in x:
                out.append(f"| {x['impl']} | failed: {x['error']} | | | | |")
                continue
            out.append(f"| {x['impl']} | {x['case']} | {x['dir']} | {x['peak_extra_mb']:.1f} | {x['beyond_outputs_mb']:.1f} | "
                       f"{x['memgetinfo_delta_mb']:.1f} |")
        out.append("")
    g = r.get("ragged")
    if g:
        out += [f"Forward+backward wall time (host clock, synchronised; median of 10) of a padded batch with ragged lengths: "
                f"B {g['B']}, buffer L {g['L']}, H {g['H']}, hd {g['D']}, {g['padding_pct']:.0f}% padding, lengths "
                f"{', '.join(map(str, g['lens']))} (lognormal, 200..16000). TFLOPS over valid tokens, 3.5x the forward's FLOPs.\n",
                "| implementation | ms | TFLOPS |", "|---|---|---|"]
        for x in g["rows"]:
            out.append(f"| {x['impl']} | failed: {x['error']} | |" if "error" in x else f"| {x['impl']} | {x['ms']:.2f} | {x['tflops']:.1f} |")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv", nargs="?", help="sigjit-bench / triton_bench CSV of the run")
    p.add_argument("--compare", help="bench/compare.py's CSV: adds its section")
    p.add_argument("--figure", help="bench/compare.py's PNG (linked relative to --results)")
    p.add_argument("--compare-direction", help="only these directions of the compare CSV (fwd, bwd or fwd,bwd)")
    p.add_argument("--plot", action="store_true", help="(re)render --figure from the compare CSV (needs matplotlib)")
    p.add_argument("--first-call", action="append", default=[],
                   help="bench/first_call.py's JSON: adds its section (repeatable: e.g. one device's first call, another's ragged batch)")
    p.add_argument("--first-call-parts", action="append", default=[],
                   help="only these parts of the matching --first-call JSON (first,memory,ragged; one per --first-call, in order)")
    p.add_argument("--section", nargs=2, action="append", default=[], metavar=("TITLE", "FILE"),
                   help="a device run's Markdown report (e.g. bench/ragged_split.py --out) as its own section (repeatable)")
    p.add_argument("--results", help="write the full results file here")
    p.add_argument("--env", help="the run's env.txt (nvidia-smi and nvcc lines)")
    p.add_argument("--command", default="bash scripts/device/final.sh")
    p.add_argument("--date", default=datetime.date.today().isoformat())
    a = p.parse_args()
    if not (a.csv or a.compare or a.first_call or a.section):
        p.error("give the run's CSV, --compare, --first-call or --section")
    best, device = load(a.csv) if a.csv else ({}, "")
    body = table(best) if a.csv else ""
    extra = []
    directions = a.compare_direction.split(",") if a.compare_direction else None
    if a.compare and a.plot:
        if not a.figure:
            p.error("--plot needs --figure (where to write the PNG)")
        if not plot_compare(compare_rows(a.compare, directions), a.figure):
            sys.exit("summarize.py: --plot: matplotlib is not importable")
    if a.compare:
        extra.append(compare_section(a.compare, a.figure, os.path.dirname(os.path.abspath(a.results)) if a.results else ".", directions))
    if len(a.first_call_parts) > len(a.first_call):
        p.error("--first-call-parts: one per --first-call at most")
    for i, path in enumerate(a.first_call):
        parts = a.first_call_parts[i].split(",") if i < len(a.first_call_parts) else None
        extra.append(first_call_section(path, parts))
    for title, path in a.section:
        extra.append(f"## {title}\n\nSource: `{path}`.\n\n" + open(path).read().strip() + "\n")
    if not a.results:
        print("\n".join([body] + extra))
        return
    env = open(a.env).read().strip() if a.env else ""
    if not device and a.compare:
        with open(a.compare) as f:
            device = next(csv.DictReader(f), {}).get("device", "")
    with open(a.results, "w") as out:
        out.write("# sigjit benchmark results\n\n")
        out.write("Generated by `bench/summarize.py` from the device runs named under source (each section names its "
                  "device and file); do not edit by hand.\n\n")
        sources = ", ".join(f"`{x}`" for x in [a.csv, a.compare, *a.first_call, *(f for _, f in a.section)] if x)
        out.write(f"- date: {a.date}\n- device: {device}\n- command: `{a.command}`\n- source: {sources}\n")
        if env:
            out.write("- environment:\n\n```\n" + env + "\n```\n")
        for section in extra:
            out.write("\n" + section)
        if not a.csv:
            return
        out.write("\n## sigjit-bench and triton_bench\n" if extra else "")
        out.write("\nbf16, TritonSigmoid's grid: 16384 tokens per batch (batch = 16384 / L), hidden 2048 "
                  "(heads = 2048 / hd). TFLOPS as TritonSigmoid counts them: forward 4·H·D·Σ Lq·Lk over valid tokens, "
                  "halved when causal; backward (timed alone) 2.5x that. sigjit: the default kernel for the spec (on an "
                  "H100 the sm90 wgmma family for the forward), CUDA-event median after warm-up with a 256 MB L2 flush before each run "
                  "(`sigjit-bench`); TritonSigmoid 0.1.2: `triton.testing.do_bench` median, same process tree, same "
                  "lengths (`bench/grid.py`). Padded points: lengths spread evenly so the mean padding is the given "
                  "percentage. Empty cells were not measured in this run.\n\n")
        out.write(body + "\n")


if __name__ == "__main__":
    main()
