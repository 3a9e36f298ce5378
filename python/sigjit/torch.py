"""sigjit.torch: sigmoid attention for PyTorch tensors, differentiable and torch.compile-safe.

    from sigjit.torch import sigmoid_attention, sigmoid_attention_padded   # was: from triton_sigmoid import ...

sigmoid_attention and sigmoid_attention_padded take TritonSigmoid 0.1.2's arguments, positional or
keyword, with its meaning (its top-left causal mask included); sigmoid_attention_varlen takes
flash_attn_varlen_func's. sigmoid_attention_ref is a plain-PyTorch reference for your own tests;
prepare(fn, *args, **kwargs) loads a call's kernels ahead of time (before capturing a CUDA graph).
FP8 (inference, Hopper): pass torch.float8_e4m3fn tensors with q_descale/k_descale/v_descale;
quantize_fp8(x) makes them from bf16/fp16 ones (one factor per head).
Signatures and option checks: sigjit._api; tensors, custom ops and autograd: sigjit._torch_ops.
"""
from __future__ import annotations

from . import _torch_ops  # noqa: F401  (registers the custom ops sigjit::attention_forward/backward)
from ._torch_ops import quantize_fp8  # noqa: F401
from ._api import (prepare, sigmoid_attention, sigmoid_attention_padded, sigmoid_attention_ref,  # noqa: F401
                   sigmoid_attention_varlen)

__all__ = ["sigmoid_attention", "sigmoid_attention_padded", "sigmoid_attention_varlen", "sigmoid_attention_ref", "prepare", "quantize_fp8"]
