"""Where the padded layout's time goes on issue 21's ragged single-cell batch, against varlen.

What: 48 sequences with log-normal lengths in [200, 16000] (mean about 2300), hd 128, 8 heads,
bf16; the same sequences once padded ([B, L_max, H, D] with seq_lens) and once packed (varlen).
Times, each the median of --reps CUDA-event measurements after warm-up with the L2 flushed
before each: the forward alone, the forward plus backward, and the zeroing of the backward's
fp32 dQ workspace at each layout's size (the one cost in the backward that grows with the buffer
length rather than the valid tokens, bench/PROFILE-backward.md). Prints TFLOPS (forward+backward
3.5x the forward's valid-token FLOPs) and the padded/varlen gap split into those parts.
Why: issue 21 asks for the padded layout within 3 % of varlen; this says which part to change.

    python3 bench/ragged_split.py [--reps 20] [--out file.md]
"""
import argparse
import math
import statistics

import torch

from sigjit.torch import sigmoid_attention_padded, sigmoid_attention_varlen


def lengths(count=48, lo=200, hi=16000, mean=2300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sigma = 1.0
    mu = math.log(mean) - sigma * sigma / 2
    raw = torch.exp(torch.randn(count, generator=gen) * sigma + mu)
    return [int(x) for x in raw.clamp(lo, hi)]


def timed(fn, reps, flush):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(reps):
        flush.zero_()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ms.append(start.elapsed_time(stop))
    return statistics.median(ms)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out")
    args = ap.parse_args()
    H, D = 8, 128
    lens = lengths()
    B, Lmax, total = len(lens), max(lens), sum(lens)
    flop_fwd = sum(4.0 * H * D * n * n for n in lens)
    gen = torch.Generator(device="cuda").manual_seed(1)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")

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

    def padded_both():
        torch.autograd.backward(sigmoid_attention_padded(q, k, v, sl, sl), do)

    def varlen_both():
        torch.autograd.backward(sigmoid_attention_varlen(qv, kv, vv, cu, cu, Lmax, Lmax), dov)

    ws_padded = torch.empty(B * Lmax * H * D, dtype=torch.float32, device="cuda")
    ws_varlen = torch.empty(total * H * D, dtype=torch.float32, device="cuda")
    t = {name: timed(fn, args.reps, flush) for name, fn in
         [("padded fwd", padded_fwd), ("varlen fwd", varlen_fwd), ("padded fwd+bwd", padded_both), ("varlen fwd+bwd", varlen_both),
          ("padded dQ workspace zeroing", ws_padded.zero_), ("varlen dQ workspace zeroing", ws_varlen.zero_)]}
    tf = lambda ms, mult: mult * flop_fwd / (ms * 1e-3) / 1e12  # noqa: E731
    lines = [f"Ragged batch on {torch.cuda.get_device_name()}: {B} sequences, lengths {min(lens)}-{max(lens)}, mean {total / B:.0f}, "
             f"buffer {Lmax} ({100 * (1 - total / (B * Lmax)):.0f} % padding), hd {D}, {H} heads, bf16; medians of {args.reps}.", "",
             "| part | padded ms | varlen ms | padded - varlen ms | padded TFLOPS | varlen TFLOPS |", "|---|---|---|---|---|---|"]
    for part, mult in (("fwd", 1.0), ("fwd+bwd", 3.5)):
        p, vl = t[f"padded {part}"], t[f"varlen {part}"]
        lines.append(f"| {part} | {p:.3f} | {vl:.3f} | {p - vl:.3f} | {tf(p, mult):.0f} | {tf(vl, mult):.0f} |")
    bwd_gap = (t["padded fwd+bwd"] - t["padded fwd"]) - (t["varlen fwd+bwd"] - t["varlen fwd"])
    zero_gap = t["padded dQ workspace zeroing"] - t["varlen dQ workspace zeroing"]
    lines.append(f"| dQ workspace zeroing | {t['padded dQ workspace zeroing']:.3f} | {t['varlen dQ workspace zeroing']:.3f} | {zero_gap:.3f} | | |")
    lines += ["", f"Backward gap {bwd_gap:.3f} ms, of which the workspace zeroing's size explains {zero_gap:.3f} ms "
              f"({100 * zero_gap / bwd_gap if bwd_gap > 0 else float('nan'):.0f} %)."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
