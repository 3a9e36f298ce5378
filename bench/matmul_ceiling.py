"""The tensor-core ceiling that issue 6 asks each grid point to be compared against: a large bf16
GEMM (cuBLAS through torch.matmul, 8192^3 unless told otherwise) timed the way sigjit-bench times
attention: CUDA events around each call, a 256 MB L2 flush before each, median after warm-up.

Appends one row (impl "matmul-ceiling", dir "gemm") to the sigjit-bench CSV of the same run, so
bench/summarize.py can print sigjit's TFLOPS as a fraction of what a GEMM reaches on that device
in that process tree (clocks, power and a shared machine affect both alike).
"""
import argparse
import statistics

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=8192, help="M = N = K")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--csv", required=True)
    a = p.parse_args()
    n = a.size
    gen = torch.Generator(device="cuda").manual_seed(5)
    x, y = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(2))
    flush = torch.empty(256 << 20, device="cuda", dtype=torch.uint8)
    for _ in range(10):
        torch.matmul(x, y)
    times = []
    for _ in range(a.reps):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(x, y)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    ms = statistics.median(times)
    tflops = 2.0 * n**3 / (ms * 1e-3) / 1e12
    dev = torch.cuda.get_device_name()
    print(f"matmul-ceiling bf16 {n}^3: {ms:.4f} ms median ({min(times):.4f}-{max(times):.4f}), {tflops:.1f} TFLOPS")
    with open(a.csv, "a") as out:
        out.write(f"matmul-ceiling,{dev},0,{n},0,gemm,0,-,gemm,{ms:.5f},{min(times):.5f},{max(times):.5f},{tflops:.2f}\n")


if __name__ == "__main__":
    main()
