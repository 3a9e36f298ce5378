"""The grouped-bar figure of bench/compare.py's results, one panel per head dim x direction x
padding. Separate from compare.py (which needs torch and a GPU) so that bench/summarize.py can
re-render a figure from a stored CSV on any machine."""
import math


def plot(rows, path, impls):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not importable: no figure ({path} not written)")
        return False
    panels = sorted({(r["hd"], r["dir"], r["pad"]) for r in rows}, key=lambda p: (p[0], p[1] != "fwd", p[2]))
    cols = len({p[2] for p in panels}) or 1
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.2 * nrows), squeeze=False)
    present = [i for i in impls if any(r["impl"] == i for r in rows)]
    width = 0.8 / max(1, len(present))
    for ax, (hd, d, pad) in zip(axes.flat, panels):
        sel = [r for r in rows if (r["hd"], r["dir"], r["pad"]) == (hd, d, pad)]
        Ls = sorted({r["L"] for r in sel})
        for j, impl in enumerate(present):
            vals = [next((r["tflops"] for r in sel if r["impl"] == impl and r["L"] == L), 0.0) for L in Ls]
            ax.bar([i + (j - (len(present) - 1) / 2) * width for i in range(len(Ls))], vals, width, label=impl)
        ax.set_xticks(range(len(Ls)), [str(L) for L in Ls])
        ax.set_title(f"hd {hd}, {d}, padding {pad}%", fontsize=10)
        ax.set_xlabel("L")
        ax.set_ylabel("TFLOPS")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(present))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")
    return True
