"""TritonSigmoid's benchmark grid and the ragged lengths of its padded points.

Shared by bench/triton_bench.py; bench/sigjit_bench.cpp implements the same rule
(seq_lengths) so both libraries see identical batches.
"""

TOKENS_PER_BATCH = 16384
HIDDEN = 2048


def shape(seq_len: int, head_dim: int):
    return max(1, TOKENS_PER_BATCH // seq_len), HIDDEN // head_dim


def seq_lengths(seq_len: int, batch: int, pad_percent: int):
    """Valid lengths spread evenly so that the mean padding is pad_percent of the buffer."""
    out = []
    for b in range(batch):
        cut = int(2 * pad_percent / 100.0 * seq_len * (b + 0.5) / batch)
        out.append(max(1, seq_len - cut))
    return out


def flops(lens_q, lens_k, heads, head_dim, causal=False):
    """TritonSigmoid's count: 4*H*D*sum(Lq_i*Lk_i) over valid tokens, halved when causal."""
    total = 4 * heads * head_dim * sum(q * k for q, k in zip(lens_q, lens_k))
    return total / 2 if causal else total
