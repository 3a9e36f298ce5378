"""sigjit's PyTorch-facing functions: their signatures and scalar options, without torch.

What: sigmoid_attention and sigmoid_attention_padded with TritonSigmoid 0.1.2's signatures,
positional order and meaning (its top-left causal mask included), sigmoid_attention_varlen in
flash_attn_varlen_func's form, sigmoid_attention_ref (TritonSigmoid's reference signature) and
prepare. sigjit.torch re-exports them; that is the module users import.
Why torch-free: a call pasted from TritonSigmoid must bind to the same parameters, and a wrong
option must be named before any tensor is touched. Both are checked here, and tested in CI
against TritonSigmoid's own source, on a machine without torch. The tensor work (checks, custom
ops, autograd) is sigjit._torch_ops, imported on the first call.
Cost: a few microseconds of Python per call.
"""
from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Optional

from ._lib import ERROR_INVALID_ARGUMENT, InvalidArgumentError

CAUSAL_ALIGNS = ("top_left", "bottom_right")
_TRUE_WORDS = ("1", "true", "yes", "on")  # TritonSigmoid's spelling of TRITON_SIGMOID_ACCURATE


def _fail(message: str):
    raise InvalidArgumentError(message, ERROR_INVALID_ARGUMENT)


class Options(NamedTuple):  # a NamedTuple: torch.compile traces it without a graph break
    """The scalar options of one call, checked and normalised."""

    causal: bool
    causal_align: str
    scale: Optional[float]
    sigmoid_bias: Optional[float]
    exact_sigmoid: bool
    check_lengths: bool
    deterministic: bool


def _flag(name: str, value: Any) -> bool:
    # bool, 0/1 ints and numpy/torch scalar bools; never a truthy string or tensor by accident
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    _fail(f"{name}={value!r}: expected True or False")


def _finite(name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool):
        _fail(f"{name}={value!r}: expected a finite float or None")
    try:
        x = float(value)  # Python and numpy numbers, 0-dim tensors (a host sync for a CUDA one)
    except (TypeError, ValueError, RuntimeError):
        _fail(f"{name}={value!r}: expected a finite float or None")
    if not math.isfinite(x):
        _fail(f"{name}={x}: must be finite")
    return x


def _either(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """`name` or its other spelling `alias` (None = not given); both given must agree."""
    if alias_value is None:
        return value
    if value is not None and value is not alias_value and not _equal(value, alias_value):
        _fail(f"{name}={value!r} and {alias}={alias_value!r}: pass one of them ({alias} is another name for {name})")
    return alias_value


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (RuntimeError, TypeError, ValueError):  # e.g. two different multi-element tensors
        return False


def accurate_by_default() -> bool:
    """TritonSigmoid's switch for the exact sigmoid, honoured so that a ported job keeps it."""
    return os.environ.get("TRITON_SIGMOID_ACCURATE", "").strip().lower() in _TRUE_WORDS


# Read once, at import, as TritonSigmoid reads it (and so that traced calls read no environment).
ACCURATE_DEFAULT = accurate_by_default()


def options(*, is_causal: Any, causal: Any, causal_align: Any, scale: Any, sigmoid_bias: Any, exact_sigmoid: Any,
            check_lengths: Any = False, deterministic: Any = False) -> Options:
    is_causal = _flag("is_causal", is_causal)
    if causal is not None:
        if is_causal and not _flag("causal", causal):
            _fail(f"causal={causal!r} and is_causal={is_causal!r}: pass one of them (causal is another name for is_causal)")
        is_causal = _flag("causal", causal)
    if causal_align not in CAUSAL_ALIGNS:
        _fail(f"causal_align={causal_align!r}: must be 'top_left' (query i sees keys j <= i, TritonSigmoid's mask) or "
              "'bottom_right' (j <= i + len_k - len_q, FlashAttention's)")
    exact = ACCURATE_DEFAULT if exact_sigmoid is None else _flag("exact_sigmoid", exact_sigmoid)
    return Options(causal=is_causal, causal_align=causal_align,
                   scale=_finite("scale", scale), sigmoid_bias=_finite("sigmoid_bias", sigmoid_bias), exact_sigmoid=exact,
                   check_lengths=_flag("check_lengths", check_lengths), deterministic=_flag("deterministic", deterministic))


def _backend():
    from . import _torch_ops  # imports torch: deferred to the first call
    return _torch_ops


# ---- TritonSigmoid's functions -------------------------------------------------------------------
def sigmoid_attention(query, key, value, is_causal=False, scale=None, sigmoid_bias=None, score_mod=None, *, causal=None,
                      score_bias=None, exact_sigmoid=None, causal_align="top_left", deterministic=False, q_descale=None,
                      k_descale=None, v_descale=None, fp8=False):
    """Sigmoid attention over dense [B, L, H, D] tensors: O = sigmoid(scale Q K^T + bias + s_k) V.

    TritonSigmoid's signature and meaning: query [B, Lq, Hq, D]; key, value [B, Lk, Hkv, D] (Hq a
    multiple of Hkv: GQA/MQA, beyond TritonSigmoid; Lq may differ from Lk); bf16 or fp16; D in
    {32, 64, 96, 128, 256}. is_causal: query i sees keys j <= i (causal_align='bottom_right' for
    FlashAttention's j <= i + Lk - Lq). scale: default 1/sqrt(D). sigmoid_bias: None = -log(Lk).
    score_mod: per-key bias [B, Lk], not trainable. Keyword-only, sigjit's own: causal (=
    is_causal), score_bias (= score_mod), exact_sigmoid (1/(1+exp(-x)) to 2e-6; None follows
    TRITON_SIGMOID_ACCURATE at import, default the faster tanh form), deterministic (bitwise reproducible
    backward, slower). Returns [B, Lq, Hq, D].
    FP8 (inference, Hopper): query, key and value in torch.float8_e4m3fn, D 64 or 128, with
    FlashAttention-3's q_descale, k_descale, v_descale (float32 [B, Hkv], or one-element tensors
    for one factor per tensor; None = 1): S = q_descale k_descale Q K^T, O = v_descale P V; the
    output is bfloat16; no gradient. fp8=True: the same from bf16/fp16 inputs, the one-line switch
    for inference: bf16 is quantized inside the library (one factor per sequence and key/value
    head), fp16 here (one factor per key/value head, quantize_fp8).
    """
    opts = options(is_causal=is_causal, causal=causal, causal_align=causal_align, scale=scale, sigmoid_bias=sigmoid_bias,
                   exact_sigmoid=exact_sigmoid, deterministic=deterministic)
    score_mod = _either("score_mod", score_mod, "score_bias", score_bias)
    return _backend().dense(query, key, value, score_mod, opts, (q_descale, k_descale, v_descale), quantize=_flag("fp8", fp8))


def sigmoid_attention_padded(query, key, value, seq_lens_k=None, seq_lens_q=None, is_causal=False, scale=None,
                             sigmoid_bias=None, score_mod=None, *, causal=None, score_bias=None, exact_sigmoid=None,
                             causal_align="top_left", check_lengths=False, deterministic=False, q_descale=None, k_descale=None,
                             v_descale=None, fp8=False):
    """Sigmoid attention over a padded batch: [B, L, H, D] buffers with trailing padding.

    TritonSigmoid's signature, order and meaning: seq_lens_k, then seq_lens_q, each [B] valid
    lengths (int32 preferred; None = the whole buffer). Padded rows of O are zeros and padded keys
    are ignored; sigmoid_bias None = -log(seq_lens_k[b]) per sequence; is_causal: query i sees keys
    j <= i (top-left, TritonSigmoid's mask, whatever the two lengths; causal_align='bottom_right'
    for FlashAttention's). check_lengths: verify the lengths against the buffers first (copies them
    to the host and synchronises the stream); otherwise out-of-range lengths are clamped by the
    kernels (never an out-of-bounds access, but wrong rows). Other arguments as sigmoid_attention.
    """
    opts = options(is_causal=is_causal, causal=causal, causal_align=causal_align, scale=scale, sigmoid_bias=sigmoid_bias,
                   exact_sigmoid=exact_sigmoid, check_lengths=check_lengths, deterministic=deterministic)
    score_mod = _either("score_mod", score_mod, "score_bias", score_bias)
    return _backend().padded(query, key, value, seq_lens_k, seq_lens_q, score_mod, opts, (q_descale, k_descale, v_descale),
                             quantize=_flag("fp8", fp8))


# ---- FlashAttention's form ----------------------------------------------------------------------
def sigmoid_attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=None, scale=None,
                             sigmoid_bias=None, score_bias=None, exact_sigmoid=False, check_lengths=False, softmax_scale=None,
                             causal_align="bottom_right", deterministic=False, q_descale=None, k_descale=None, v_descale=None,
                             fp8=False):
    """Sigmoid attention over packed sequences, as flash_attn_varlen_func takes them.

    q: [total_q, Hq, D]; k, v: [total_k, Hkv, D]; cu_seqlens_q/_k: [B + 1] prefix sums from 0
    (int32 preferred); max_seqlen_q/_k: the longest sequence of each side (ints; they size the
    launch grid, so they must not be smaller than the real maxima: check_lengths=True verifies).
    causal: bottom-right aligned as in FlashAttention (causal_align='top_left' for TritonSigmoid's
    mask). score_bias: [total_k], indexed by packed key row. softmax_scale: FlashAttention's name
    for scale. Rows of O outside the sequences are zeros. Other arguments as sigmoid_attention.
    """
    opts = options(is_causal=False, causal=causal, causal_align=causal_align,
                   scale=_either("scale", scale, "softmax_scale", softmax_scale), sigmoid_bias=sigmoid_bias,
                   exact_sigmoid=exact_sigmoid, check_lengths=check_lengths, deterministic=deterministic)
    return _backend().varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, score_bias, opts, (q_descale, k_descale, v_descale),
                             quantize=_flag("fp8", fp8))


# ---- reference and preparation --------------------------------------------------------------------
def sigmoid_attention_ref(q, k, v, seq_lens_k=None, seq_lens_q=None, scale=None, sigmoid_bias=None, upcast=True,
                          reorder_ops=False, causal=False, score_mod=None):
    """Plain-PyTorch sigmoid attention (CPU or GPU) for your own tests: TritonSigmoid's
    sigmoid_attention_ref signature and meaning (top-left causal mask, padded rows of O zero,
    bias -log(seq_lens_k)), plus GQA. upcast=True computes in fp32 (fp64 for fp64 inputs);
    upcast=False keeps Q K^T and P V in the input dtype as the kernels' inputs are. reorder_ops
    scales K instead of Q. Memory: the full [B, H, Lq, Lk] score matrix."""
    return _backend().reference(q, k, v, seq_lens_k, seq_lens_q, _finite("scale", scale), _finite("sigmoid_bias", sigmoid_bias),
                                _flag("upcast", upcast), _flag("reorder_ops", reorder_ops), _flag("causal", causal), score_mod)


def prepare(fn, *args, backward=None, **kwargs) -> None:
    """Loads every kernel that fn(*args, **kwargs), one of the functions above, would launch
    (kernel cache or NVRTC), and those of its backward when backward is True (None: when query,
    key or value requires grad), without running anything. Call it with the shapes and options
    of your step before capturing a CUDA graph (then no call inside the capture compiles, loads,
    synchronises or allocates outside PyTorch's allocator), or at start-up to take the compile
    off the first step. Tensors of the same shapes, dtype and layout; values are not read."""
    if fn not in (sigmoid_attention, sigmoid_attention_padded, sigmoid_attention_varlen):
        _fail(f"fn={getattr(fn, '__name__', fn)!r}: expected sigmoid_attention, sigmoid_attention_padded or sigmoid_attention_varlen")
    with _backend().preparing(None if backward is None else _flag("backward", backward)):
        fn(*args, **kwargs)

