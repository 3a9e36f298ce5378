"""What the bench scripts share: CUDA-event timing with the L2 flushed, and the markdown report.

timed(fn, flush, reps): the median of `reps` timings of fn() after three warm-up calls, each with
`flush` (a >= 256 MB device buffer, l2_flush_buffer()) zeroed first so that no input is served from
L2. emit(lines, out): prints the report and appends it to the file `out` (if any), so one results
file can collect several runs. gpu_us_by_kernel(fn, calls): GPU microseconds per call of each
kernel fn() launches, from torch.profiler's device records.
"""
import statistics

import torch


def l2_flush_buffer():
    return torch.empty(256 << 20, dtype=torch.uint8, device="cuda")


def timed(fn, flush, reps=20):
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


def emit(lines, out=None):
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n\n")


def gpu_us_by_kernel(fn, calls):
    """{kernel name: GPU microseconds per call} over `calls` back-to-back calls of fn() after one
    warm-up call (compiled and warm before profiling); CUPTI's device records, so driver-API
    launches and memsets count too. No L2 flush between calls."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    us = {}
    for e in prof.events():  # device-side records only: kernels, memsets, copies
        if e.device_type == torch.autograd.DeviceType.CUDA:
            us[e.name] = us.get(e.name, 0.0) + e.time_range.elapsed_us() / calls
    return us
