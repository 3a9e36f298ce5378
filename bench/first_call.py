"""First-call latency, peak extra device memory and a ragged padded batch: sigjit vs TritonSigmoid.

What (each written to DIR/first_call.json, rendered into RESULTS.md by summarize.py --first-call):
1. first call in a fresh process, cold and warm cache: a child process per (implementation,
   cache state) times its first and second forward and backward calls (dense bf16, hd 128,
   B 4, L 4096, H 16) after torch and the CUDA context are up, so the numbers are what the
   library adds. Cold: SIGJIT_CACHE_DIR / TRITON_CACHE_DIR point at a fresh empty directory
   (sigjit compiles with NVRTC; Triton compiles every autotuning candidate). Warm: a second child
   reuses the directory the cold one filled (sigjit loads the cubin; TritonSigmoid still re-runs
   its autotuning in every process, as its README says). Also the device memory the first call
   takes outside PyTorch's allocator (loaded modules), from cudaMemGetInfo.
2. peak extra device memory per call, warm, in this process: torch.cuda.max_memory_allocated()
   minus the memory allocated before the call (outputs included; "beyond outputs" subtracts O, or
   O and dQ/dK/dV), and the cudaMemGetInfo view (free memory before minus after).
3. forward+backward wall time (host clock, synchronised) of a padded batch with ragged lengths,
   lognormal between 200 and 16000 tokens (many short, few long), hd 128, 16 heads: sigjit padded,
   sigjit varlen (the same batch packed), TritonSigmoid padded; median of 10 after warm-up.
Cost: about 1-2 minutes on an H100, most of it TritonSigmoid's cold compile and autotuning.

    PYTHONPATH=python:/tmp/site SIGJIT_LIBRARY=build/libsigjit.so python3 bench/first_call.py --out DIR [--quick]
"""
import argparse
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time


IMPLS = ("sigjit", "triton-sigmoid")
EXPLAIN = False  # --explain
FIRST_SHAPE = dict(B=4, L=4096, H=16, D=128)


def attention(impl):
    """(dense, padded, varlen-or-None) callables of one implementation."""
    if impl == "sigjit":
        from sigjit.torch import sigmoid_attention, sigmoid_attention_padded, sigmoid_attention_varlen
        return (sigmoid_attention, lambda q, k, v, lens: sigmoid_attention_padded(q, k, v, lens, lens),
                lambda q, k, v, cu, max_len: sigmoid_attention_varlen(q, k, v, cu, cu, max_len, max_len))
    import triton_sigmoid as ts
    return ts.sigmoid_attention, lambda q, k, v, lens: ts.sigmoid_attention_padded(q, k, v, seq_lens_k=lens, seq_lens_q=lens), None


# ---- 1. first call, in a child process ---------------------------------------------------------
def child(impl, profile=False):
    import torch
    torch.cuda.init()
    torch.randn(1, device="cuda").sum().item()  # context and allocator up before anything is timed
    if os.environ.get("SIGJIT_FIRST_CALL_EXPLAIN"):
        _explain_torch_backward()
    # PyTorch's own one-time cost, whatever the attention library: the first autograd.grad or
    # backward given grad_outputs imports torch.fx.experimental.symbolic_shapes, and with it sympy
    # (about 2 s on an H200 machine, measured with --explain). A training step's loss.backward()
    # never pays it. Paid here, before anything is timed, and reported on its own.
    t = time.perf_counter()
    import torch.fx.experimental.symbolic_shapes  # noqa: F401
    torch_grad_import_ms = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    dense, _, _ = attention(impl)
    import_ms = (time.perf_counter() - t) * 1e3
    s = FIRST_SHAPE
    q, k, v = (torch.randn(s["B"], s["L"], s["H"], s["D"], device="cuda", dtype=torch.bfloat16).requires_grad_() for _ in range(3))
    do = torch.randn_like(q)
    torch.cuda.synchronize()
    out = {"impl": impl, "import_ms": import_ms, "torch_grad_import_ms": torch_grad_import_ms}
    free0, reserved0 = torch.cuda.mem_get_info()[0], torch.cuda.memory_reserved()
    for n in ("first", "second"):
        profiler = _start_profile(profile and n == "first")
        t = time.perf_counter()
        o = dense(q, k, v)
        torch.cuda.synchronize()
        out[f"{n}_fwd_ms"] = (time.perf_counter() - t) * 1e3
        _print_profile(profiler)
        t = time.perf_counter()
        if os.environ.get("SIGJIT_FIRST_CALL_EXPLAIN") and impl == "sigjit" and n == "first":
            _explain_backward(o, q, k, v, do)
        else:
            torch.autograd.grad(o, (q, k, v), do)
        torch.cuda.synchronize()
        out[f"{n}_bwd_ms"] = (time.perf_counter() - t) * 1e3
        if n == "first":
            free1, reserved1 = torch.cuda.mem_get_info()[0], torch.cuda.memory_reserved()
            out["first_call_nontorch_mb"] = ((free0 - free1) - (reserved1 - reserved0)) / 2**20
    print("RESULT " + json.dumps(out), flush=True)


def _explain_torch_backward():
    """PyTorch's own first backward, before any attention call: a tiny graph, first on the calling
    thread (cProfile sees it) and then on the autograd engine's device thread. What it costs, every
    library's first backward in a fresh process costs too."""
    import cProfile
    import pstats
    import torch
    x = torch.randn(64, device="cuda", requires_grad=True)
    for threaded in (False, True):
        torch.autograd.set_multithreading_enabled(threaded)
        profiler = cProfile.Profile() if not threaded else None
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        torch.autograd.grad((x * x).sum(), x)
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3
        print(f"EXPLAIN torch's own first backward ({'engine thread' if threaded else 'calling thread'}): {ms:.1f} ms", flush=True)
        if profiler:
            profiler.disable()
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(12)
            print("\n".join("EXPLAIN   " + x for x in buf.getvalue().splitlines() if x.strip()), flush=True)
    torch.autograd.set_multithreading_enabled(True)


def _explain_backward(o, q, k, v, do):
    """The first backward with its pieces timed: sigjit's backward runs on the autograd engine's
    device thread, where the main thread's cProfile sees nothing, so the library calls are timed
    from inside (sigjit._lib.backward / workspace_size) and printed as EXPLAIN lines."""
    import torch
    from sigjit import _lib
    timed = {}
    for name in ("backward", "workspace_size", "make_args"):
        fn = getattr(_lib, name)

        def wrapper(*a, _fn=fn, _name=name, **kw):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            r = _fn(*a, **kw)
            torch.cuda.synchronize()
            timed.setdefault(_name, []).append((time.perf_counter() - t0) * 1e3)
            return r
        setattr(_lib, name, wrapper)
    import cProfile
    import pstats
    torch.autograd.set_multithreading_enabled(False)  # on this thread, where cProfile sees it
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    torch.autograd.grad(o, (q, k, v), do)
    torch.cuda.synchronize()
    profiler.disable()
    total = (time.perf_counter() - t0) * 1e3
    torch.autograd.set_multithreading_enabled(True)
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(25)
    print("\n".join("EXPLAIN   " + x for x in buf.getvalue().splitlines() if x.strip()), flush=True)
    print(f"EXPLAIN first backward {total:.1f} ms; inside sigjit._lib: " +
          ", ".join(f"{n} {sum(v):.1f} ms x{len(v)}" for n, v in timed.items()), flush=True)


def _start_profile(enabled):
    """--profile: where the first forward call's host time goes (cProfile, by cumulative time)."""
    if not enabled:
        return None
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _print_profile(profiler):
    if profiler is None:
        return
    import pstats
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(30)


def first_calls():
    results = []
    for impl in IMPLS:
        with tempfile.TemporaryDirectory(prefix=f"first-call-{impl}-") as tmp:
            env = dict(os.environ, SIGJIT_CACHE_DIR=os.path.join(tmp, "sigjit"), TRITON_CACHE_DIR=os.path.join(tmp, "triton"))
            if EXPLAIN:  # what each first call compiled or looked up, and where its host time went
                env.update(SIGJIT_VERBOSE_COMPILE="1", SIGJIT_VERBOSE_CACHE="1", SIGJIT_FIRST_CALL_EXPLAIN="1")
            for state in ("cold", "warm"):  # warm: the directories the cold child filled
                t = time.perf_counter()
                r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", impl], env=env, capture_output=True, text=True,
                                   timeout=600)
                wall = time.perf_counter() - t
                line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
                if r.returncode != 0 or line is None:
                    print(f"{impl} {state}: child failed (exit {r.returncode}):\n{r.stderr[-2000:]}", flush=True)
                    results.append({"impl": impl, "cache": state, "error": (r.stderr.strip().splitlines() or ["?"])[-1]})
                    continue
                if EXPLAIN:
                    print(f"--- {impl} {state}: child's log", flush=True)
                    print("\n".join(x for x in (r.stderr + r.stdout).splitlines() if x.startswith(("sigjit:", "EXPLAIN"))), flush=True)
                res = dict(json.loads(line[7:]), cache=state, process_s=wall)
                print(f"{impl:>15} {state}: first fwd {res['first_fwd_ms']:9.1f} ms (then {res['second_fwd_ms']:.2f}), first bwd "
                      f"{res['first_bwd_ms']:9.1f} ms (then {res['second_bwd_ms']:.2f}), import {res['import_ms']:.0f} ms "
                      f"(+ torch's sympy {res['torch_grad_import_ms']:.0f} ms), "
                      f"modules {res['first_call_nontorch_mb']:.1f} MB", flush=True)
                results.append(res)
    return results


# ---- 2. peak extra memory ---------------------------------------------------------------------
def memory(quick):
    import torch
    rows = []
    cases = [("dense", 1, 16384)] + ([] if quick else [("padded 25%", 4, 4096)])
    for impl in IMPLS:
        try:
            dense, padded, _ = attention(impl)
        except Exception as e:
            rows.append({"impl": impl, "error": f"{type(e).__name__}: {e}"})
            continue
        for name, B, L in cases:
            H, D = 16, 128
            q, k, v = (torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
            lens = torch.tensor([max(1, L - int(0.5 * L * (b + 0.5) / B)) for b in range(B)], dtype=torch.int32, device="cuda")
            fn = (lambda: dense(q, k, v)) if name == "dense" else (lambda: padded(q, k, v, lens))
            tensor_mb = q.numel() * 2 / 2**20
            for direction in ("fwd", "fwd+bwd"):
                def call():
                    if direction == "fwd":
                        with torch.no_grad():
                            return fn()
                    for t in (q, k, v):
                        t.requires_grad_(True)
                    o = fn()
                    return o, torch.autograd.grad(o, (q, k, v), torch.ones_like(o))
                call()  # warm: compiled, autotuned, allocator pools grown
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base, free0 = torch.cuda.memory_allocated(), torch.cuda.mem_get_info()[0]
                held = call()  # outputs alive while measuring, as a caller would hold them
                torch.cuda.synchronize()
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                free_delta = (free0 - torch.cuda.mem_get_info()[0]) / 2**20
                outputs = tensor_mb * (1 if direction == "fwd" else 5)  # O, or O + dO-sized ones + dQ, dK, dV
                row = {"impl": impl, "case": f"{name} B={B} L={L} H={H} D={D}", "dir": direction, "peak_extra_mb": peak,
                       "beyond_outputs_mb": peak - outputs, "memgetinfo_delta_mb": free_delta, "tensor_mb": tensor_mb}
                rows.append(row)
                print(f"{impl:>15} {row['case']} {direction}: peak extra {peak:8.1f} MB (beyond outputs {peak - outputs:7.1f} MB), "
                      f"cudaMemGetInfo delta {free_delta:7.1f} MB; one [B, L, H, D] tensor is {tensor_mb:.1f} MB", flush=True)
                del held
                for t in (q, k, v):
                    t.requires_grad_(False)
    return rows


# ---- 3. ragged padded batch -------------------------------------------------------------------
def ragged(quick):
    import torch
    rng = random.Random(7)
    B = 12 if quick else 24
    lens = sorted((min(16000, max(200, int(math.exp(rng.gauss(math.log(1000), 1.0))))) for _ in range(B)), reverse=True)
    L, H, D = max(lens), 16, 128
    fl = 3.5 * 4 * H * D * sum(n * n for n in lens)  # forward + backward (2.5x), valid tokens only
    gen = torch.Generator(device="cuda").manual_seed(3)
    q, k, v = (torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
    lens_t = torch.tensor(lens, dtype=torch.int32, device="cuda")
    cu = torch.tensor([0] + [sum(lens[:i + 1]) for i in range(B)], dtype=torch.int32, device="cuda")
    packed = [torch.cat([t[b, :n] for b, n in enumerate(lens)]).contiguous() for t in (q, k, v)]
    out = {"lens": lens, "B": B, "L": L, "H": H, "D": D, "padding_pct": 100 * (1 - sum(lens) / (B * L)), "rows": []}
    print(f"ragged batch: B={B}, buffer L={L}, lengths {lens}, padding {out['padding_pct']:.0f}%", flush=True)
    for impl in IMPLS:
        try:
            _, padded, varlen = attention(impl)
        except Exception as e:
            out["rows"].append({"impl": impl, "error": f"{type(e).__name__}: {e}"})
            continue
        runs = [(f"{impl} padded", (q, k, v), lambda a, b, c: padded(a, b, c, lens_t))]
        if varlen is not None:
            runs.append((f"{impl} varlen", packed, lambda a, b, c: varlen(a, b, c, cu, max(lens))))
        for name, inputs, fn in runs:
            for t in inputs:
                t.requires_grad_(True)
            do = None

            def step():
                nonlocal do
                o = fn(*inputs)
                do = torch.randn_like(o) if do is None else do
                torch.autograd.grad(o, inputs, do)

            try:
                for _ in range(2):
                    step()
                times = []
                for _ in range(10):
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    step()
                    torch.cuda.synchronize()
                    times.append((time.perf_counter() - t) * 1e3)
                ms = statistics.median(times)
                row = {"impl": name, "ms": ms, "tflops": fl / (ms * 1e-3) / 1e12}
                print(f"{name:>22}: forward+backward {ms:8.2f} ms, {row['tflops']:6.1f} TFLOPS (valid tokens)", flush=True)
            except Exception as e:
                row = {"impl": name, "error": f"{type(e).__name__}: {e}"}
                print(f"{name:>22}: failed: {row['error']}", flush=True)
            out["rows"].append(row)
            for t in inputs:
                t.requires_grad_(False)
    return out


def main():
    global EXPLAIN, IMPLS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="directory for first_call.json")
    p.add_argument("--quick", action="store_true", help="smaller memory and ragged cases")
    p.add_argument("--only", default="first,memory,ragged", help="subset of first,memory,ragged")
    p.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--profile", action="store_true", help="with --child: print a cProfile of the first forward call")
    p.add_argument("--explain", action="store_true", help="print each child's compiles, cache lookups and first backward's pieces")
    p.add_argument("--impl", default=",".join(IMPLS), help="subset of " + ",".join(IMPLS))
    a = p.parse_args()
    EXPLAIN, IMPLS = a.explain, tuple(x for x in a.impl.split(",") if x in IMPLS)
    if a.child:
        return child(a.child, a.profile)
    if not a.out:
        p.error("--out is required")
    import torch
    if not torch.cuda.is_available():
        sys.exit("first_call.py: no CUDA device visible to torch")
    os.makedirs(a.out, exist_ok=True)
    only = set(a.only.split(","))
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "first_call_shape": FIRST_SHAPE}
    if "first" in only:
        result["first_call"] = first_calls()
    if "memory" in only:
        result["memory"] = memory(a.quick)
    if "ragged" in only:
        result["ragged"] = ragged(a.quick)
    path = os.path.join(a.out, "first_call.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
