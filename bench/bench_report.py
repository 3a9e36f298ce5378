"""What the bench scripts share: CUDA-event timing with the L2 flushed, and the markdown report.

timed(fn, flush, reps): the median of `reps` timings of fn() after three warm-up calls, each with
`flush` (a >= 256 MB device buffer, l2_flush_buffer()) zeroed first so that no input is served from
L2. emit(lines, out): prints the report and appends it to the file `out` (if any), so one results
file can collect several runs.
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
