"""Where sigjit's dense backward spends its GPU time, by kernel: the dQ workspace zeroing, the fused
kernel, the dQ convert, anything else.

What: TritonSigmoid's grid (16384 tokens per batch, hidden 2048, bf16), one autograd.grad of
sigjit's forward per call, under torch.profiler (CUPTI's device records: sigjit's driver-API
launches and memsets included), --calls calls back to back after a warm-up call. Prints, per head
dim and length, each part's microseconds per call and share, and the backward's TFLOPS (2.5x the
forward's 4·H·D·Σ L² FLOPs, halved causal) over all its kernels and over the fused kernel alone.
Why: the per-CTA model of bench/PROFILE-backward.md charged everything that does not grow with the
query steps to a fixed cost per key block; the zeroing and the convert are per token instead (a
pass over the fp32 workspace each), and which lever pays depends on which of the two it is.

    python3 bench/bwd_split.py [--head-dim 64,128] [--seq 1024,4096,16384] [--causal] [--out file.md]
"""
import argparse

import torch

from bench_report import emit, gpu_us_by_kernel
from sigjit.torch import sigmoid_attention

PARTS = (("zeroing", lambda n: n.startswith("Memset") or n.endswith("_zero")),
         ("fused kernel", lambda n: "bwd_fused" in n),
         ("dQ convert", lambda n: "dq_convert" in n))


def part_of(name):
    return next((part for part, match in PARTS if match(name)), "other")


def split_one(hd, L, causal, calls):
    H, B = 2048 // hd, max(1, 16384 // L)
    gen = torch.Generator(device="cuda").manual_seed(hd * 100003 + L)
    q, k, v = (torch.randn(B, L, H, hd, generator=gen, device="cuda").to(torch.bfloat16).requires_grad_() for _ in range(3))
    o = sigmoid_attention(q, k, v, causal=causal)
    do = torch.randn(o.shape, generator=gen, device="cuda").to(o.dtype)

    def fn():
        return torch.autograd.grad(o, (q, k, v), do, retain_graph=True)

    us, names = {}, {}
    for name, t in gpu_us_by_kernel(fn, calls).items():
        part = part_of(name)
        us[part] = us.get(part, 0.0) + t
        names.setdefault(part, set()).add(name)
    flop = 2.5 * 4.0 * H * hd * B * L * L * (0.5 if causal else 1.0)
    return us, names, flop


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--head-dim", default="64,128")
    ap.add_argument("--seq", default="1024,4096,16384")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    parts = [p for p, _ in PARTS] + ["other"]
    lines = [f"sigjit backward by kernel on {torch.cuda.get_device_name()} (torch.profiler, {args.calls} calls back to back, "
             f"dense{' causal' if args.causal else ''}, bf16, 16384 tokens per batch, hidden 2048):", "",
             "| hd | L | " + " | ".join(f"{p} us (share)" for p in parts) + " | all TFLOPS | fused kernel alone TFLOPS |",
             "|---|---|" + "---|" * (len(parts) + 2)]
    seen = {}
    for hd in (int(x) for x in args.head_dim.split(",")):
        for L in (int(x) for x in args.seq.split(",")):
            us, names, flop = split_one(hd, L, args.causal, args.calls)
            total = sum(us.values())
            cells = [f"{us.get(p, 0.0):.1f} ({100 * us.get(p, 0.0) / total:.1f} %)" for p in parts]
            fused = us.get("fused kernel", 0.0)
            lines.append(f"| {hd} | {L} | " + " | ".join(cells) + f" | {flop / total / 1e6:.1f} | "
                         f"{flop / fused / 1e6 if fused else float('nan'):.1f} |")
            for p, n in names.items():
                seen.setdefault(p, set()).update(n)
    lines += ["", "Kernels counted in each part:"] + [f"- {p}: " + ", ".join(f"`{n[:100]}`" for n in sorted(seen[p])) for p in sorted(seen)]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
