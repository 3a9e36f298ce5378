#!/usr/bin/env python3
"""Where a backward launch's time went, tile by tile: reads SIGJIT_TRACE_TILES traces.

What: each CSV is one launch's tile records (kernels/launch.cpp writes them: tile, sm, cta,
begin_ns, end_ns, reduced_ns, kv_ready_ns, steps_done_ns from %globaltimer). Prints one row per
trace: the span, how busy the SMs' consumers were over it, the start skew, the idle SM-time at the
end (the tail), the gap a CTA spends between two tiles, tile durations, and the dQ writer's end
relative to the consumers' (negative: the writer finished first, while the consumers still stored
dK and dV). Then, where the records carry the consumers' marks (traces from 2026-12-07 on), each
tile's fixed cost split in three: the wait for K and V that earlier work did not hide, the steps,
and the dK/dV epilogue.
Why: a persistent schedule (_wp) and the one-CTA-per-tile grid (_w) differ in where tiles wait
and in how the last wave ends, which the total time cannot separate (bench/PROFILE-backward.md:
why _wp loses causal at hd 128). Cost: none on the GPU beyond the trace build itself.

  SIGJIT_TRACE_TILES=wp.csv sigjit-bench --direction bwd --head-dim 128 --seq 1024 --causal --tiles hb128x64c2s2o_wp
  python3 bench/tile_timeline.py wp.csv w.csv [--key-blocks 8]
"""
import argparse
import csv
import statistics
import sys
from collections import defaultdict


def load(path):
    with open(path, newline="") as f:
        rows = [{k: int(v) for k, v in r.items()} for r in csv.DictReader(f)]
    rows = [r for r in rows if r["begin_ns"] > 0 and r["end_ns"] >= r["begin_ns"]]
    if not rows:
        sys.exit(f"{path}: no complete tile records; was the launch a SIGJIT_TRACE_TILES build of a Hopper backward?")
    return rows


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def launch_window(rows):
    """The first consumer begin and the launch's span to its last end or reduction, in ns."""
    t0 = min(r["begin_ns"] for r in rows)
    return t0, max(max(r["end_ns"], r["reduced_ns"]) for r in rows) - t0


def summarize(rows):
    t0, span = launch_window(rows)
    t1 = t0 + span
    by_sm = defaultdict(list)
    for r in rows:
        by_sm[r["sm"]].append(r)
    busy = sum(r["end_ns"] - r["begin_ns"] for r in rows)
    first = [min(r["begin_ns"] for r in v) - t0 for v in by_sm.values()]
    last = [max(r["end_ns"] for r in v) for v in by_sm.values()]
    gaps = []  # one CTA's end of a tile to its begin of the next (persistent grids; else the SM's)
    by_cta = defaultdict(list)
    for r in rows:
        by_cta[(r["sm"], r["cta"])].append(r)
    persistent = any(len(v) > 1 for v in by_cta.values())
    groups = by_cta.values() if persistent else by_sm.values()
    for v in groups:
        v = sorted(v, key=lambda r: r["begin_ns"])
        gaps += [b["begin_ns"] - a["end_ns"] for a, b in zip(v, v[1:]) if b["begin_ns"] >= a["end_ns"]]
    durations = [r["end_ns"] - r["begin_ns"] for r in rows]
    lags = [r["reduced_ns"] - r["end_ns"] for r in rows if r["reduced_ns"] > 0]
    return {
        "tiles": len(rows),
        "sms": len(by_sm),
        "span_us": span / 1e3,
        "busy": busy / (len(by_sm) * span),
        "start_skew_us": (max(first) - min(first)) / 1e3,
        "tail_idle": sum(t1 - x for x in last) / (len(by_sm) * span),
        "gap_us": statistics.median(gaps) / 1e3 if gaps else 0.0,
        "tile_us": statistics.median(durations) / 1e3,
        "tile_p10_p90_us": (quantile(durations, 0.1) / 1e3, quantile(durations, 0.9) / 1e3),
        "writer_lag_us": statistics.median(lags) / 1e3 if lags else None,
    }


def phases(rows):
    """A tile's parts, in µs: medians over the tiles begun in the span's second half (the steady
    state), and the launch's totals per SM. None where the trace has no consumer marks."""
    marked = [r for r in rows if r.get("kv_ready_ns", 0) >= r["begin_ns"] > 0 and r["end_ns"] >= r.get("steps_done_ns", 0) >= r["kv_ready_ns"]]
    if not marked:
        return None
    t0, span = launch_window(rows)
    late = [r for r in marked if r["begin_ns"] - t0 >= span / 2] or marked
    parts = {"kv_wait": lambda r: r["kv_ready_ns"] - r["begin_ns"], "steps": lambda r: r["steps_done_ns"] - r["kv_ready_ns"],
             "epilogue": lambda r: r["end_ns"] - r["steps_done_ns"]}
    sms = len({r["sm"] for r in rows})
    out = {}
    for name, part in parts.items():
        out[name + "_us"] = statistics.median(part(r) for r in late) / 1e3
        out[name + "_per_sm_us"] = sum(part(r) for r in marked) / sms / 1e3
    out["span_us"] = span / 1e3
    return out


def key_block_durations(rows, key_blocks):
    by_block = defaultdict(list)
    for r in rows:
        by_block[r["tile"] % key_blocks].append(r["end_ns"] - r["begin_ns"])
    return {k: statistics.median(v) / 1e3 for k, v in sorted(by_block.items())}


def start_cost(rows, key_blocks):
    """Steady-state work and excess tile time per SM, in µs.

    Steady: each tile at the median duration of its key block among the tiles that began in the
    span's second half (the start's zeroing, cold caches and first loads are over by then).
    Excess: what tiles took beyond that, summed over the launch and per SM; a schedule that loses
    at the start (the 2026-12-07 trace: _wp's in-kernel dQ zeroing) shows it here, not in the
    medians. Also the part of the excess in tiles that began in the span's first tenth."""
    t0, span = launch_window(rows)
    late = defaultdict(list)
    for r in rows:
        if r["begin_ns"] - t0 >= span / 2:
            late[r["tile"] % key_blocks].append(r["end_ns"] - r["begin_ns"])
    steady = {k: statistics.median(v) for k, v in late.items()}
    sms = len({r["sm"] for r in rows})
    work = excess = early = 0
    for r in rows:
        k = r["tile"] % key_blocks
        if k not in steady:
            continue
        work += steady[k]
        extra = max(0, r["end_ns"] - r["begin_ns"] - steady[k])
        excess += extra
        early += extra if r["begin_ns"] - t0 < span / 10 else 0
    return {"steady_work_us": work / sms / 1e3, "excess_us": excess / sms / 1e3, "excess_first_tenth_us": early / sms / 1e3}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--key-blocks", type=int,
                    help="key blocks per (sequence, head): also the median tile time by key block and the start's excess tile time")
    args = ap.parse_args()
    print("| trace | tiles | SMs | span µs | consumers busy | start skew µs | idle at the end | gap between tiles µs "
          "| tile µs (p10-p90) | dQ writer lag µs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.traces:
        rows = load(path)
        s = summarize(rows)
        lag = "-" if s["writer_lag_us"] is None else f"{s['writer_lag_us']:.2f}"
        p10, p90 = s["tile_p10_p90_us"]
        print(f"| {path} | {s['tiles']} | {s['sms']} | {s['span_us']:.1f} | {100 * s['busy']:.1f} % | {s['start_skew_us']:.2f} "
              f"| {100 * s['tail_idle']:.1f} % | {s['gap_us']:.2f} | {s['tile_us']:.2f} ({p10:.2f}-{p90:.2f}) | {lag} |")
    split = [(path, phases(load(path))) for path in args.traces]
    if any(p for _, p in split):
        print("\n| trace | K/V wait µs | steps µs | epilogue µs | per SM: K/V wait µs | epilogue µs | share of span |")
        print("|---|---|---|---|---|---|---|")
        for path, p in split:
            if p is None:
                print(f"| {path} | - | - | - | - | - | (no consumer marks: a trace from before 2026-12-07) |")
                continue
            fixed = p["kv_wait_per_sm_us"] + p["epilogue_per_sm_us"]
            print(f"| {path} | {p['kv_wait_us']:.2f} | {p['steps_us']:.2f} | {p['epilogue_us']:.2f} | {p['kv_wait_per_sm_us']:.1f} "
                  f"| {p['epilogue_per_sm_us']:.1f} | {100 * fixed / p['span_us']:.1f} % |")
    if args.key_blocks:
        for path in args.traces:
            rows = load(path)
            d = key_block_durations(rows, args.key_blocks)
            print(f"\n{path}: median tile µs by key block: " + ", ".join(f"{k}: {v:.2f}" for k, v in d.items()))
            c = start_cost(rows, args.key_blocks)
            print(f"{path}: per SM, steady-state work {c['steady_work_us']:.1f} µs, excess tile time {c['excess_us']:.1f} µs "
                  f"({c['excess_first_tenth_us']:.1f} in tiles begun in the span's first tenth)")


if __name__ == "__main__":
    main()
