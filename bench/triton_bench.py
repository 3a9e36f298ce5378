"""TritonSigmoid (and PyTorch SDPA, softmax, for reference) on the grid of sigjit-bench.

Same lengths (bench/grid.py), same FLOP count, medians from triton.testing.do_bench (which
flushes L2 between runs). Appends rows to the CSV that sigjit-bench writes, so one device run
yields both libraries side by side.
"""
import argparse
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.dirname(__file__))
from grid import flops, seq_lengths, shape  # noqa: E402


def bench(fn, reps):
    return triton.testing.do_bench(fn, warmup=25, rep=reps, return_mode="median")


def backward_of(fn, inputs):
    """The backward alone, as TritonSigmoid's benchmark times it: one forward builds the graph,
    then each timed call is o.backward(do, retain_graph=True)."""
    for t in inputs:
        t.requires_grad_(True)
    o = fn()
    do = torch.randn_like(o)
    return lambda: o.backward(do, retain_graph=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--head-dim", default="64,128")
    p.add_argument("--seq", default="512,1024,2048,4096,8192,16384")
    p.add_argument("--pad", default="0,25,50")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--direction", default="fwd", help="fwd, bwd or fwd,bwd (bwd timed alone, FLOPs 2.5x forward)")
    p.add_argument("--sdpa", action="store_true", help="also time SDPA flash and cuDNN (softmax)")
    p.add_argument("--rep-ms", type=int, default=200)
    p.add_argument("--csv", required=True)
    a = p.parse_args()
    from triton_sigmoid import sigmoid_attention, sigmoid_attention_padded

    dev = torch.cuda.get_device_name()
    with open(a.csv, "a") as out:
        for hd in map(int, a.head_dim.split(",")):
            for L in map(int, a.seq.split(",")):
                for pad in map(int, a.pad.split(",")):
                    B, H = shape(L, hd)
                    lens = seq_lengths(L, B, pad)
                    gen = torch.Generator(device="cuda").manual_seed(1234)
                    q, k, v = (torch.randn(B, L, H, hd, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
                    base_flops = flops(lens, lens, H, hd, a.causal)
                    if pad == 0:
                        fn = lambda: sigmoid_attention(q, k, v, is_causal=a.causal)
                        layout = "dense"
                    else:
                        sl = torch.tensor(lens, device="cuda", dtype=torch.int32)
                        fn = lambda: sigmoid_attention_padded(q, k, v, seq_lens_k=sl, seq_lens_q=sl, is_causal=a.causal)
                        layout = "padded"
                    rows = [("triton-sigmoid", fn)]
                    if a.sdpa and pad == 0:
                        from torch.nn.attention import SDPBackend, sdpa_kernel

                        def sdpa(backend):
                            def run():
                                with sdpa_kernel(backend):
                                    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # inside: autograd sees q, k, v
                                    return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=a.causal)
                            return run
                        rows += [("sdpa-flash", sdpa(SDPBackend.FLASH_ATTENTION)), ("sdpa-cudnn", sdpa(SDPBackend.CUDNN_ATTENTION))]
                    for direction in a.direction.split(","):
                        for name, f in rows:
                            try:
                                timed = f if direction == "fwd" else backward_of(f, (q, k, v))
                                timed()
                                ms = bench(timed, a.rep_ms)
                                fl = base_flops * (2.5 if direction == "bwd" else 1.0)
                                tf = fl / (ms * 1e-3) / 1e12
                                print(f"{name:>15} {direction} hd={hd:4d} L={L:6d} pad={pad:3d} {ms:9.4f} ms {tf:7.1f} TFLOPS", flush=True)
                                out.write(f"{name},{dev},{hd},{L},{pad},{layout},{int(a.causal)},-,{direction},{ms:.5f},,,{tf:.2f}\n")
                                out.flush()  # a run cut short by a timeout keeps the rows it measured
                            except Exception as e:  # report and continue: one failing backend must not hide the rest
                                print(f"{name:>15} {direction} hd={hd:4d} L={L:6d} pad={pad:3d} failed: {e}", flush=True)
                            finally:
                                for t in (q, k, v):
                                    t.requires_grad_(False)
                                    t.grad = None


if __name__ == "__main__":
    main()
