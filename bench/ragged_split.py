"""Where the padded layout's time goes on issue 21's ragged single-cell batch, against varlen.

What: 48 sequences with log-normal lengths in [200, 16000] (mean about 2300), hd 128, 8 heads,
bf16; the same sequences once padded ([B, L_max, H, D] with seq_lens) and once packed (varlen).
Times, each the median of --reps CUDA-event measurements after warm-up with the L2 flushed
before each: the forward alone, the forward plus backward (autograd.grad: no accumulation into
.grad), and, for scale, zeroing as many bytes as the padded rows of O, dQ, dK and dV hold (the
padded layout must write them, the packed one has none; inside the kernels they overlap compute).
Prints TFLOPS (forward+backward 3.5x the forward's valid-token FLOPs) and the padded/varlen gap;
with --fp8 also the FP8 forward on both layouts, and TritonSigmoid padded where installed.
With --kernels, also each layout's forward+backward under torch.profiler: GPU time per kernel per
call (CUPTI's records; sigjit's driver-API launches included), the split of the gap by kernel.
Why: issue 21 asks for the padded layout within 3 % of varlen.

    python3 bench/ragged_split.py [--reps 20] [--out file.md] [--fp8] [--kernels]
"""
import argparse
import math

import torch

from sigjit.torch import quantize_fp8, sigmoid_attention_padded, sigmoid_attention_varlen
from bench_report import emit, gpu_us_by_kernel, l2_flush_buffer, timed


def lengths(count=48, lo=200, hi=16000, mean=2300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sigma = 1.0
    mu = math.log(mean) - sigma * sigma / 2
    raw = torch.exp(torch.randn(count, generator=gen) * sigma + mu)
    return [int(x) for x in raw.clamp(lo, hi)]



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out")
    ap.add_argument("--fp8", action="store_true", help="also the FP8 forward (e4m3 inputs quantized per head) on both layouts")
    ap.add_argument("--no-triton", action="store_true", help="leave TritonSigmoid out (its autotuning takes a minute)")
    ap.add_argument("--kernels", action="store_true", help="also the GPU time per kernel of each layout's forward+backward (torch.profiler)")
    args = ap.parse_args()
    H, D = 8, 128
    lens = lengths()
    B, Lmax, total = len(lens), max(lens), sum(lens)
    flop_fwd = sum(4.0 * H * D * n * n for n in lens)
    gen = torch.Generator(device="cuda").manual_seed(1)
    flush = l2_flush_buffer()

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, device="cuda").to(torch.bfloat16)

    q, k, v, do = (rnd(B, Lmax, H, D) for _ in range(4))
    sl = torch.tensor(lens, dtype=torch.int32, device="cuda")
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0).tolist()), dtype=torch.int32, device="cuda")
    pack = lambda x: torch.cat([x[b, :n] for b, n in enumerate(lens)]).contiguous()  # noqa: E731
    qv, kv, vv, dov = pack(q), pack(k), pack(v), pack(do)
    for t in (q, k, v, qv, kv, vv):
        t.requires_grad_()

    def padded_fwd():
        with torch.no_grad():
            sigmoid_attention_padded(q, k, v, sl, sl)

    def varlen_fwd():
        with torch.no_grad():
            sigmoid_attention_varlen(qv, kv, vv, cu, cu, Lmax, Lmax)

    # autograd.grad, not backward(): backward() adds each call's gradients into q.grad etc., a
    # read-modify-write of every buffer that a training step does once per accumulation, not per
    # attention call, and that weighs 6x more on the padded buffer than on the packed one.
    def padded_both():
        torch.autograd.grad(sigmoid_attention_padded(q, k, v, sl, sl), (q, k, v), do)

    def varlen_both():
        torch.autograd.grad(sigmoid_attention_varlen(qv, kv, vv, cu, cu, Lmax, Lmax), (qv, kv, vv), dov)

    # The padded layout must write zeros into every padded row of O, dQ, dK and dV, which the
    # packed layout does not have: what those bytes cost on their own, for scale.
    pad_rows = B * Lmax - total
    pad_zeros = torch.empty(4 * pad_rows * H * D, dtype=torch.bfloat16, device="cuda")
    parts = [("padded fwd", padded_fwd), ("varlen fwd", varlen_fwd), ("padded fwd+bwd", padded_both), ("varlen fwd+bwd", varlen_both),
             ("padding zeros", pad_zeros.zero_)]
    try:  # the incumbent on the same padded batch, where installed
        if args.no_triton:
            raise ImportError("left out (--no-triton)")
        import triton_sigmoid

        def triton_fwd():
            with torch.no_grad():
                triton_sigmoid.sigmoid_attention_padded(q, k, v, seq_lens_k=sl, seq_lens_q=sl)

        def triton_both():
            torch.autograd.grad(triton_sigmoid.sigmoid_attention_padded(q, k, v, seq_lens_k=sl, seq_lens_q=sl), (q, k, v), do)
        parts += [("TritonSigmoid padded fwd", triton_fwd), ("TritonSigmoid padded fwd+bwd", triton_both)]
    except ImportError as e:
        print(f"TritonSigmoid not measured: {e}")
    if args.fp8:  # issue 22: the FP8 forward on the same batch, against the bf16 rows above
        (q8, qd), (k8, kd), (v8, vd) = (quantize_fp8(x.detach()) for x in (q, k, v))
        (qv8, qvd), (kv8, kvd), (vv8, vvd) = (quantize_fp8(x.detach()) for x in (qv, kv, vv))

        def fp8_padded():
            sigmoid_attention_padded(q8, k8, v8, sl, sl, q_descale=qd, k_descale=kd, v_descale=vd)

        def fp8_varlen():
            sigmoid_attention_varlen(qv8, kv8, vv8, cu, cu, Lmax, Lmax, q_descale=qvd, k_descale=kvd, v_descale=vvd)
        parts += [("FP8 padded fwd", fp8_padded), ("FP8 varlen fwd", fp8_varlen)]
    t = {name: timed(fn, flush, args.reps) for name, fn in parts}
    tf = lambda ms, mult: mult * flop_fwd / (ms * 1e-3) / 1e12  # noqa: E731
    lines = [f"Ragged batch on {torch.cuda.get_device_name()}: {B} sequences, lengths {min(lens)}-{max(lens)}, mean {total / B:.0f}, "
             f"buffer {Lmax} ({100 * (1 - total / (B * Lmax)):.0f} % padding), hd {D}, {H} heads, bf16; medians of {args.reps}.", "",
             "| part | padded ms | varlen ms | padded - varlen ms | padded TFLOPS | varlen TFLOPS |", "|---|---|---|---|---|---|"]
    for part, mult in (("fwd", 1.0), ("fwd+bwd", 3.5)):
        p, vl = t[f"padded {part}"], t[f"varlen {part}"]
        lines.append(f"| {part} | {p:.3f} | {vl:.3f} | {p - vl:.3f} | {tf(p, mult):.0f} | {tf(vl, mult):.0f} |")
        if f"TritonSigmoid padded {part}" in t:
            ts = t[f"TritonSigmoid padded {part}"]
            lines.append(f"| {part}, TritonSigmoid padded | {ts:.3f} | | | {tf(ts, mult):.0f} | |")
    if args.fp8:
        lines += ["", "| FP8 forward | ms | TFLOPS | speed-up over bf16, same layout |", "|---|---|---|---|"]
        for layout in ("padded", "varlen"):
            f8, b16 = t[f"FP8 {layout} fwd"], t[f"{layout} fwd"]
            lines.append(f"| {layout} | {f8:.3f} | {tf(f8, 1.0):.0f} | {b16 / f8:.2f}x |")
    gap = t["padded fwd+bwd"] - t["varlen fwd+bwd"]
    zeros_ms = t["padding zeros"]  # standalone, not a bound: the kernels overlap these writes
    lines += ["", f"The padded layout's gap is {gap:.3f} ms ({100 * gap / t['varlen fwd+bwd']:.1f} % of varlen's forward+backward). "
              f"The zeros it must write into the padded rows of O, dQ, dK and dV ({pad_zeros.numel() * 2 / 1e9:.2f} GB) take "
              f"{zeros_ms:.3f} ms on their own ({100 * zeros_ms / t['varlen fwd+bwd']:.1f} %); inside the kernels they overlap compute, "
              "so the gap can fall below that."]
    if args.kernels:
        lines += [""] + kernel_split({"padded": padded_both, "varlen": varlen_both}, calls=5)
    emit(lines, args.out)


def kernel_split(fns, calls):
    """Markdown rows: GPU microseconds per call of every kernel the layouts' calls launch, widest
    difference first. Back to back, no L2 flush between calls (a 15 ms call barely notices)."""
    per_call = {}
    for layout, fn in fns.items():
        per_call[layout] = {}
        for name, us in gpu_us_by_kernel(fn, calls).items():
            name = name.replace(f"_{layout}_", "_<layout>_")  # sigjit's kernels by role, across the two layouts
            per_call[layout][name] = per_call[layout].get(name, 0.0) + us
    names = set().union(*(d.keys() for d in per_call.values()))
    rows = []
    for n in names:
        a, b = per_call["padded"].get(n, 0.0), per_call["varlen"].get(n, 0.0)
        rows.append((abs(a - b), n, a, b))
    rows.sort(reverse=True)
    total = {k: sum(d.values()) for k, d in per_call.items()}
    out = [f"GPU time per forward+backward call by kernel (torch.profiler, {calls} calls each, back to back):", "",
           "| kernel | padded us | varlen us | padded - varlen us |", "|---|---|---|---|"]
    for _, n, a, b in rows[:14]:
        out.append(f"| `{n[:90]}` | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    out.append(f"| all kernels | {total['padded']:.1f} | {total['varlen']:.1f} | {total['padded'] - total['varlen']:+.1f} |")
    return out


if __name__ == "__main__":
    main()
