"""Whether this PyTorch's cuDNN SDPA takes FP8 (e4m3) inputs, and its forward's speed where it does.

What: scaled_dot_product_attention under the cuDNN backend on torch.float8_e4m3fn Q, K, V
([B, H, L, D], TritonSigmoid's grid: 16384 tokens per batch, hidden 2048) at hd 64 and 128,
L 4096 and 16384; beside it sigjit's FP8 forward and cuDNN's bf16 forward on the same shapes
(medians of CUDA-event timings, L2 flushed before each). Where PyTorch refuses FP8, the refusal is
printed and recorded: issue 22 asks for cuDNN's FP8 SDPA in the same run "if PyTorch offers it".

    python3 bench/fp8_cudnn_probe.py [--out file.md]
"""
import argparse
import os
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grid import shape  # noqa: E402
from bench_report import emit, l2_flush_buffer, timed  # noqa: E402



def cudnn(q, k, v):
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out")
    args = ap.parse_args()
    from sigjit.torch import quantize_fp8, sigmoid_attention
    flush = l2_flush_buffer()
    lines = [f"cuDNN SDPA with FP8 inputs on {torch.cuda.get_device_name()}, torch {torch.__version__} "
             f"(cuDNN {torch.backends.cudnn.version()}); forward TFLOPS, 4 B H L^2 D / time.", "",
             "| hd | L | cuDNN FP8 | cuDNN bf16 | sigjit FP8 | sigjit bf16 |", "|---|---|---|---|---|---|"]
    refusal = None
    for hd in (64, 128):
        for L in (4096, 16384):
            B, H = shape(L, hd)
            gen = torch.Generator(device="cuda").manual_seed(L + hd)
            q, k, v = (torch.randn(B, L, H, hd, generator=gen, device="cuda").to(torch.bfloat16) for _ in range(3))
            (q8, qd), (k8, kd), (v8, vd) = (quantize_fp8(x) for x in (q, k, v))
            tf = lambda ms: 4.0 * B * H * L * L * hd / (ms * 1e-3) / 1e12  # noqa: E731
            cells = []
            try:
                cells.append(f"{tf(timed(lambda: cudnn(*(x.transpose(1, 2) for x in (q8, k8, v8))), flush)):.0f}")
            except Exception as e:  # the answer this probe exists for
                refusal = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                cells.append("refused")
            cells.append(f"{tf(timed(lambda: cudnn(*(x.transpose(1, 2) for x in (q, k, v))), flush)):.0f}")
            cells.append(f"{tf(timed(lambda: sigmoid_attention(q8, k8, v8, q_descale=qd, k_descale=kd, v_descale=vd), flush)):.0f}")
            cells.append(f"{tf(timed(lambda: sigmoid_attention(q, k, v), flush)):.0f}")
            lines.append(f"| {hd} | {L} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    if refusal:
        lines += ["", f"PyTorch's cuDNN SDPA refused e4m3 inputs: {refusal}"]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
