"""Issue 22's downstream check: how far the FP8 forward moves a small transformer's output.

What: a stack of pre-norm transformer layers (sigmoid attention + GELU MLP, random weights scaled as
at initialisation, random inputs) run twice on the same inputs: every attention in bf16 (sigjit's
bf16 forward), and every attention in FP8 (q, k, v quantized per head with sigjit.torch.quantize_fp8,
the FP8 forward, bf16 out). Reports the cosine similarity of the final hidden states per token
(min and mean) and the relative L2 error per layer's attention output, for each head dim.
Why: an accuracy figure per call (tests/gpu/test_fp8_gpu.cpp) does not say what errors compound
to over layers; this does, on the shapes single-cell models use. Cost: seconds on a GPU.

    python3 bench/fp8_downstream.py [--layers 8] [--seq 2048] [--batch 4] [--out results.md]
"""
import argparse
import math

import torch

from sigjit.torch import quantize_fp8, sigmoid_attention
from bench_report import emit


def layer_params(hidden, gen):
    def w(rows, cols):
        return (torch.randn(rows, cols, generator=gen, device="cuda") / math.sqrt(cols)).to(torch.bfloat16)
    return dict(qkv=w(3 * hidden, hidden), out=w(hidden, hidden), up=w(4 * hidden, hidden), down=w(hidden, 4 * hidden))


def attention(x, p, heads, fp8):
    B, L, H = x.shape
    q, k, v = torch.nn.functional.linear(x, p["qkv"]).view(B, L, 3, heads, H // heads).unbind(2)
    if fp8:
        (q8, dq), (k8, dk), (v8, dv) = quantize_fp8(q), quantize_fp8(k), quantize_fp8(v)
        o = sigmoid_attention(q8, k8, v8, q_descale=dq, k_descale=dk, v_descale=dv)
    else:
        o = sigmoid_attention(q.contiguous(), k.contiguous(), v.contiguous())
    return torch.nn.functional.linear(o.reshape(B, L, H), p["out"]), o


def run(x, params, heads, fp8):
    outs = []
    for p in params:
        a, o = attention(torch.nn.functional.layer_norm(x, x.shape[-1:]), p, heads, fp8)
        outs.append(o.float())
        x = x + a
        h = torch.nn.functional.gelu(torch.nn.functional.linear(torch.nn.functional.layer_norm(x, x.shape[-1:]), p["up"]))
        x = x + torch.nn.functional.linear(h, p["down"])
    return x.float(), outs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--out", help="append a markdown table here")
    args = ap.parse_args()
    lines = [f"FP8 vs bf16 attention in a {args.layers}-layer stack (hidden {args.hidden}, batch {args.batch}, L {args.seq}, "
             f"{torch.cuda.get_device_name()}):", "",
             "| hd | cosine min | cosine mean | attention rel. error, first layer | last layer |", "|---|---|---|---|---|"]
    for hd in (64, 128):
        gen = torch.Generator(device="cuda").manual_seed(hd)
        params = [layer_params(args.hidden, gen) for _ in range(args.layers)]
        x = torch.randn(args.batch, args.seq, args.hidden, generator=gen, device="cuda").to(torch.bfloat16)
        with torch.no_grad():
            ref, ref_att = run(x, params, args.hidden // hd, False)
            got, got_att = run(x, params, args.hidden // hd, True)
        cos = torch.nn.functional.cosine_similarity(got.flatten(0, 1), ref.flatten(0, 1), dim=-1)
        err = [((g - r).norm() / r.norm()).item() for g, r in zip(got_att, ref_att)]
        lines.append(f"| {hd} | {cos.min().item():.5f} | {cos.mean().item():.5f} | {err[0]:.4f} | {err[-1]:.4f} |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
