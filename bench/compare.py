"""sigjit (through its PyTorch binding), TritonSigmoid and PyTorch SDPA side by side, one process.

What: TritonSigmoid's benchmark grid (16384 tokens per batch, hidden 2048, head dims 64/128,
L 512..16384, padding 0/25/50 %, forward and backward) on identical bf16 inputs for
  sigjit          sigjit.torch.sigmoid_attention[_padded] (the library's kernels via ctypes)
  triton-sigmoid  triton_sigmoid.sigmoid_attention[_padded] 0.1.2
  sdpa-flash      torch SDPA, FlashAttention backend  (softmax: a reference point, not the same math)
  sdpa-cudnn      torch SDPA, cuDNN backend           (softmax; dense points only: SDPA has no
                  per-sequence lengths on these backends)
Counting as TritonSigmoid counts: FLOPs over valid tokens only, forward 4*H*D*sum(Lq_i*Lk_i),
halved when causal, backward (timed alone: torch.autograd.grad of a retained graph) 2.5x that.
Timing: CUDA events around each call; before each call a 256 MB write flushes L2 and a short GPU
spin (torch.cuda._sleep) lets the host enqueue the call before the start event fires, so the
times are GPU time, not Python wrapper overhead (of either library). Median of 5-30 calls after
two warm-up calls (the first compiles: sigjit's NVRTC/disk cache, Triton's autotuning).
Output: a CSV in summarize.py's format (bench/summarize.py --compare feeds it into RESULTS.md),
the ratio sigjit / TritonSigmoid per point, and a PNG of grouped bars (one panel per head dim x
direction x padding) when matplotlib is importable.
Cost: the full grid takes about 3-5 minutes on an H100 (kernel compiles and Triton autotuning
included); --quick (L 4096/16384, padding 0/25) about a minute.

    PYTHONPATH=python:/tmp/site SIGJIT_LIBRARY=build/libsigjit.so python3 bench/compare.py --out DIR [--quick]
"""
import argparse
import math
import os
import statistics
import sys
import time


import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_plot import plot  # noqa: E402
from grid import flops, seq_lengths, shape  # noqa: E402

IMPLS = ("sigjit", "triton-sigmoid", "sdpa-flash", "sdpa-cudnn")
FIELDS = "impl,device,hd,L,pad,layout,causal,tile,dir,ms,min_ms,max_ms,tflops"


class Timer:
    """CUDA-event median of fn() with L2 flushed and host overhead hidden before each call."""

    def __init__(self, target_ms=300.0, min_reps=5, max_reps=30):
        self.flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        self.target_ms, self.min_reps, self.max_reps = target_ms, min_reps, max_reps
        # About 0.25 ms of spin at H100 clocks: longer than either library's host path.
        self.spin_cycles = 500_000

    def _one(self, fn):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.flush.fill_(1)
        torch.cuda._sleep(self.spin_cycles)
        start.record()
        fn()
        end.record()
        return start, end

    def __call__(self, fn):
        for _ in range(2):  # the first call compiles/autotunes
            fn()
        torch.cuda.synchronize()
        probe = [self._one(fn) for _ in range(3)]
        torch.cuda.synchronize()
        est = statistics.median(s.elapsed_time(e) for s, e in probe)
        reps = int(min(self.max_reps, max(self.min_reps, self.target_ms / max(est, 1e-3))))
        events = [self._one(fn) for _ in range(reps)]
        torch.cuda.synchronize()
        ms = sorted(s.elapsed_time(e) for s, e in events)
        return statistics.median(ms), ms[0], ms[-1]


def forward_fn(impl, q, k, v, lens, causal, mods):
    """The call for one implementation on [B, L, H, D] inputs, or None where it does not apply."""
    if impl == "sigjit":
        st = mods["sigjit"]
        if lens is None:
            return lambda: st.sigmoid_attention(q, k, v, causal=causal)
        return lambda: st.sigmoid_attention_padded(q, k, v, lens, lens, causal=causal)
    if impl == "triton-sigmoid":
        ts = mods["triton-sigmoid"]
        if lens is None:
            return lambda: ts.sigmoid_attention(q, k, v, is_causal=causal)
        return lambda: ts.sigmoid_attention_padded(q, k, v, seq_lens_k=lens, seq_lens_q=lens, is_causal=causal)
    if lens is not None:
        return None
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backend = SDPBackend.FLASH_ATTENTION if impl == "sdpa-flash" else SDPBackend.CUDNN_ATTENTION

    def run():
        with sdpa_kernel(backend):
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, L, D] views; inside, so autograd sees q, k, v
            return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
    return run


def backward_fn(fwd, inputs):
    """The backward alone: one forward builds the graph, each call differentiates it again."""
    for t in inputs:
        t.requires_grad_(True)
    o = fwd()
    do = torch.randn_like(o)
    return lambda: torch.autograd.grad(o, inputs, do, retain_graph=True)


def load_impls(names):
    mods, skipped = {}, {}
    for name in names:
        try:
            if name == "sigjit":
                import sigjit.torch as m
            elif name == "triton-sigmoid":
                import triton_sigmoid as m
            else:
                import torch.nn.attention as m  # SDPBackend, sdpa_kernel
            mods[name] = m
        except Exception as e:  # report and go on: the other columns are still worth having
            skipped[name] = f"{type(e).__name__}: {e}"
    return mods, skipped


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory for compare.csv and compare.png")
    p.add_argument("--quick", action="store_true", help="L 4096,16384, padding 0,25 (about a minute)")
    p.add_argument("--head-dim", default="64,128")
    p.add_argument("--seq", default="512,1024,2048,4096,8192,16384")
    p.add_argument("--pad", default="0,25,50")
    p.add_argument("--direction", default="fwd,bwd")
    p.add_argument("--impl", default=",".join(IMPLS), help="subset of " + ",".join(IMPLS))
    p.add_argument("--causal", action="store_true")
    p.add_argument("--target-ms", type=float, default=300.0, help="timed GPU time per point and implementation")
    a = p.parse_args()
    if a.quick:
        a.seq, a.pad = "4096,16384", "0,25"
    if not torch.cuda.is_available():
        sys.exit("compare.py: no CUDA device visible to torch")
    os.makedirs(a.out, exist_ok=True)
    impls = [i for i in a.impl.split(",") if i]
    unknown = set(impls) - set(IMPLS)
    if unknown:
        sys.exit(f"--impl: unknown {', '.join(sorted(unknown))}; choose from {', '.join(IMPLS)}")
    mods, skipped = load_impls(impls)
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})")
    impls = [i for i in impls if i in mods]
    dev = torch.cuda.get_device_name()
    print(f"device: {dev}; torch {torch.__version__}; impls: {', '.join(impls)}; causal={a.causal}")
    if "sigjit" in mods:
        import sigjit
        print(f"sigjit: {sigjit.version()} ({sigjit.library_path()})")

    timer = Timer(a.target_ms)
    csv_path = os.path.join(a.out, "compare.csv")
    rows, t0 = [], time.time()
    with open(csv_path, "w") as out:
        out.write(FIELDS + "\n")
        for hd in map(int, a.head_dim.split(",")):
            for L in map(int, a.seq.split(",")):
                B, H = shape(L, hd)
                for pad in map(int, a.pad.split(",")):
                    lens = seq_lengths(L, B, pad)
                    gen = torch.Generator(device="cuda").manual_seed(1234)
                    q, k, v = (torch.randn(B, L, H, hd, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
                    lens_t = None if pad == 0 else torch.tensor(lens, dtype=torch.int32, device="cuda")
                    layout = "dense" if pad == 0 else "padded"
                    base = flops(lens, lens, H, hd, a.causal)
                    for d in a.direction.split(","):
                        tf_by_impl = {}
                        for impl in impls:
                            fwd = forward_fn(impl, q, k, v, lens_t, a.causal, mods)
                            if fwd is None:
                                continue
                            try:
                                if d == "fwd":
                                    with torch.no_grad():
                                        ms, lo, hi = timer(fwd)
                                else:
                                    ms, lo, hi = timer(backward_fn(fwd, (q, k, v)))
                            except Exception as e:  # one failing implementation must not hide the others
                                print(f"{impl:>15} {d} hd={hd} L={L} pad={pad}: failed: {type(e).__name__}: {e}", flush=True)
                                continue
                            finally:
                                for t in (q, k, v):
                                    t.requires_grad_(False)
                            tf = base * (2.5 if d == "bwd" else 1.0) / (ms * 1e-3) / 1e12
                            tf_by_impl[impl] = tf
                            tile = "default" if impl == "sigjit" else "-"
                            out.write(f"{impl},{dev},{hd},{L},{pad},{layout},{int(a.causal)},{tile},{d},{ms:.5f},{lo:.5f},{hi:.5f},{tf:.2f}\n")
                            out.flush()
                            rows.append(dict(impl=impl, hd=hd, L=L, pad=pad, dir=d, ms=ms, tflops=tf))
                        s, t = tf_by_impl.get("sigjit"), tf_by_impl.get("triton-sigmoid")
                        cells = "  ".join(f"{i} {tf_by_impl[i]:6.1f}" for i in impls if i in tf_by_impl)
                        ratio = f"  sigjit/TritonSigmoid {s / t:.2f}" if s and t else ""
                        print(f"hd={hd:3d} L={L:5d} pad={pad:2d} {d}: {cells} TFLOPS{ratio}", flush=True)
                    del q, k, v, lens_t
    print(f"\nwrote {csv_path} ({len(rows)} rows, {time.time() - t0:.0f} s)")

    pairs = {}
    for r in rows:
        pairs.setdefault((r["hd"], r["dir"], r["pad"], r["L"]), {})[r["impl"]] = r["tflops"]
    ratios = {k: v["sigjit"] / v["triton-sigmoid"] for k, v in pairs.items() if "sigjit" in v and "triton-sigmoid" in v}
    if ratios:
        print("\nsigjit / TritonSigmoid (TFLOPS ratio; > 1: sigjit faster)")
        for (hd, d, pad, L), r in sorted(ratios.items()):
            print(f"  hd {hd:3d} {d} pad {pad:2d}% L {L:5d}: {r:.2f}")
        for hd, d in sorted({(k[0], k[1]) for k in ratios}):
            sel = [v for k, v in ratios.items() if k[:2] == (hd, d)]
            print(f"  geometric mean hd {hd} {d}: {math.exp(sum(map(math.log, sel)) / len(sel)):.2f} over {len(sel)} points")
    plot(rows, os.path.join(a.out, "compare.png"), impls)


if __name__ == "__main__":
    main()
