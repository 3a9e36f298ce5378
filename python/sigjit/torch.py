"""sigjit.torch: sigmoid attention for PyTorch tensors, differentiable and torch.compile-safe.

What: sigmoid_attention (dense [B, L, H, D]), sigmoid_attention_padded (+ seq_lens_q/_k [B]) and
sigmoid_attention_varlen (packed [T, H, D] + cu_seqlens [B + 1], FlashAttention's varlen form),
computing O = sigmoid(scale * Q K^T + bias + s_k) V through libsigjit.so's C API, on the
tensors' device and current CUDA stream.
Why custom ops: the forward and backward are torch.library custom ops (sigjit::attention_forward,
sigjit::attention_backward) with fake (meta) implementations and a registered autograd formula,
so torch.compile(fullgraph=True) traces them as single graph nodes instead of breaking the graph
at an opaque ctypes call.
Cost per call: argument checks in Python and one ctypes call (tens of microseconds of host time);
no device synchronisation unless check_lengths=True (the library then copies the length arrays to
the host and synchronises the stream). The output (and for varlen, gradient) buffers are
allocated here; varlen buffers are zero-filled because rows outside the sequences are not written.
The backward's fp32 dQ workspace (4 bytes per element of q; none with deterministic=True) is
allocated here too, from PyTorch's caching allocator on the current stream, so it shows up in
torch.cuda memory statistics and costs no cudaMalloc in the steady state.
Strided tensors are read in place (e.g. q, k, v as views of one packed QKV projection); a tensor
sigjit cannot read in place (last dimension not contiguous, a broadcast (stride 0) dimension, a
stride that is not a multiple of 8 elements, a first element not 16-byte aligned) is copied with
.contiguous() first, which costs one extra read and write of it.
"""
from __future__ import annotations

from typing import Optional

try:
    import torch
except ImportError as e:  # keep the reason: a broken torch install is not the same as none
    raise ImportError(f"sigjit.torch needs PyTorch ({e}); install torch with CUDA support, or use the ctypes layer "
                      "sigjit._lib directly, which needs no torch") from e

from . import _lib
from ._lib import InvalidArgumentError

Tensor = torch.Tensor
_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_FAKE_PTR = 1 << 20  # aligned, non-null stand-in address: fake tensors have no storage

__all__ = ["sigmoid_attention", "sigmoid_attention_padded", "sigmoid_attention_varlen"]


def _fail(message: str):
    raise InvalidArgumentError(message, _lib.ERROR_INVALID_ARGUMENT)


# ---- mapping tensors to the C struct ----------------------------------------------------------
def _describable(t: Tensor, fake: bool = False) -> Tensor:
    """t itself when sigjit can read it in place, else a contiguous copy (see needs_copy; also
    a first element that is not 16-byte aligned, e.g. a view at an odd offset)."""
    if _lib.needs_copy(t.shape, t.stride()) or (not fake and t.data_ptr() % 16 != 0):
        return t.contiguous()
    return t


def _ref(t: Optional[Tensor], fake: bool) -> _lib.TensorRef:
    if t is None:
        return _lib.TensorRef(0, (0, 0, 0))
    return _lib.TensorRef(_FAKE_PTR if fake else t.data_ptr(), _lib.c_strides(t.shape, t.stride()))


def _ptr(t: Optional[Tensor], fake: bool) -> int:
    return 0 if t is None else (_FAKE_PTR if fake else t.data_ptr())


def _make_args(q, k, v, o, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, scale, sigmoid_bias,
               exact_sigmoid, check_lengths, fake=False) -> _lib.AttentionArgs:
    varlen = layout == "varlen"
    if varlen:
        batch, seqlen_q, seqlen_k = lens_q.shape[0] - 1, max_seqlen_q, max_seqlen_k
        total_q, total_k, heads_q, heads_kv = q.shape[0], k.shape[0], q.shape[1], k.shape[1]
        sb_stride = 0
    else:
        batch, seqlen_q, heads_q = q.shape[0], q.shape[1], q.shape[2]
        seqlen_k, heads_kv, total_q, total_k = k.shape[1], k.shape[2], 0, 0
        sb_stride = 0 if score_bias is None or score_bias.shape[0] == 1 else score_bias.stride(0)
    return _lib.make_args(dtype=_DTYPES[q.dtype], layout=layout, batch=batch, seqlen_q=seqlen_q, seqlen_k=seqlen_k, total_q=total_q,
                          total_k=total_k, heads_q=heads_q, heads_kv=heads_kv, head_dim=q.shape[-1], q=_ref(q, fake), k=_ref(k, fake),
                          v=_ref(v, fake), o=_ref(o, fake) if o is not None else None, lens_q=_ptr(lens_q, fake),
                          lens_k=_ptr(lens_k, fake), causal=causal, scale=scale, sigmoid_bias=sigmoid_bias,
                          score_bias=_ptr(score_bias, fake), score_bias_stride=sb_stride, exact_sigmoid=exact_sigmoid,
                          validate_lengths=check_lengths)


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


# ---- custom ops -------------------------------------------------------------------------------
@torch.library.custom_op("sigjit::attention_forward", mutates_args=())
def _attention_forward(q: Tensor, k: Tensor, v: Tensor, lens_q: Optional[Tensor], lens_k: Optional[Tensor],
                       score_bias: Optional[Tensor], layout: str, max_seqlen_q: int, max_seqlen_k: int, causal: bool,
                       scale: Optional[float], sigmoid_bias: Optional[float], exact_sigmoid: bool, check_lengths: bool,
                       deterministic: bool) -> Tensor:
    # deterministic is the backward's option; it is an input here so that autograd hands it on.
    q, k, v = _describable(q), _describable(k), _describable(v)
    alloc = torch.zeros if layout == "varlen" else torch.empty  # varlen: rows outside the sequences are not written
    with torch.cuda.device(q.device):
        o = alloc(q.shape, dtype=q.dtype, device=q.device)
        args = _make_args(q, k, v, o, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, scale, sigmoid_bias,
                          exact_sigmoid, check_lengths)
        _lib.forward(args, _stream(q.device))
    return o


def _static(*tensors) -> bool:
    return all(isinstance(n, int) for t in tensors if t is not None for n in t.shape)


def _fake_validate(q, k, v, lens_q, lens_k, score_bias, *rest) -> None:
    # Under torch.compile this runs at trace time: shape errors (head_dim, GQA) surface there
    # with the library's message. Symbolic shapes are left to the real call (no guards added).
    if _static(q, k, v, lens_q, score_bias):
        q, k, v = _describable(q, True), _describable(k, True), _describable(v, True)
        _lib.validate(_make_args(q, k, v, q, lens_q, lens_k, score_bias, *rest, fake=True))


@_attention_forward.register_fake
def _attention_forward_fake(q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, scale, sigmoid_bias,
                            exact_sigmoid, check_lengths, deterministic):
    _fake_validate(q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, scale, sigmoid_bias, exact_sigmoid,
                   False)
    return q.new_empty(q.shape)


@torch.library.custom_op("sigjit::attention_backward", mutates_args=())
def _attention_backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, lens_q: Optional[Tensor], lens_k: Optional[Tensor],
                        score_bias: Optional[Tensor], layout: str, max_seqlen_q: int, max_seqlen_k: int, causal: bool,
                        scale: Optional[float], sigmoid_bias: Optional[float], exact_sigmoid: bool,
                        check_lengths: bool, deterministic: bool) -> tuple[Tensor, Tensor, Tensor]:
    # dout from autograd is often expanded (loss = out.sum() gives stride 0 everywhere): copy it.
    dout = _describable(dout.to(q.dtype))
    q, k, v = _describable(q), _describable(k), _describable(v)
    alloc = torch.zeros if layout == "varlen" else torch.empty  # varlen: rows/keys outside the sequences are not written
    with torch.cuda.device(q.device):
        dq = alloc(q.shape, dtype=q.dtype, device=q.device)
        dk = alloc(k.shape, dtype=k.dtype, device=k.device)
        dv = alloc(v.shape, dtype=v.dtype, device=v.device)
        args = _make_args(q, k, v, None, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, scale, sigmoid_bias,
                          exact_sigmoid, check_lengths)
        grads = _lib.make_gradients(_ref(dout, False), _ref(dq, False), _ref(dk, False), _ref(dv, False))
        nbytes = _lib.workspace_size(args, deterministic)
        workspace = torch.empty(nbytes, dtype=torch.uint8, device=q.device) if nbytes else None  # caching allocator: 512-byte aligned
        _lib.backward(args, grads, _stream(q.device), deterministic=deterministic,
                      workspace=0 if workspace is None else workspace.data_ptr(), workspace_bytes=nbytes)
    return dq, dk, dv


@_attention_backward.register_fake
def _attention_backward_fake(dout, q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, scale,
                             sigmoid_bias, exact_sigmoid, check_lengths, deterministic):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, lens_q, lens_k, score_bias, *options = inputs
    ctx.save_for_backward(q, k, v, lens_q, lens_k, score_bias)
    ctx.options = options


def _backward(ctx, dout):
    q, k, v, lens_q, lens_k, score_bias = ctx.saved_tensors
    dq, dk, dv = _attention_backward(dout, q, k, v, lens_q, lens_k, score_bias, *ctx.options)
    # The score bias is not trainable (no gradient), nor are lengths and options.
    return (dq, dk, dv) + (None,) * (3 + len(ctx.options))


_attention_forward.register_autograd(_backward, setup_context=_setup_context)


# ---- public functions -------------------------------------------------------------------------
def _pick(name: str, value, alias: str, alias_value, default):
    """`name` or its TritonSigmoid/FlashAttention spelling `alias`; both given must agree."""
    if alias_value is None:
        return default if value is None else value
    if value is not None and value != alias_value:
        _fail(f"{name}={value!r} and {alias}={alias_value!r}: pass one of them ({alias} is an alias of {name})")
    return alias_value


def _check_tensors(q: Tensor, k: Tensor, v: Tensor, ndim: int, shape_text: str) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            _fail(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != ndim:
            _fail(f"{name}: expected {ndim} dimensions {shape_text}, got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES:
            _fail(f"{name}.dtype={t.dtype}: sigjit supports torch.bfloat16 and torch.float16")
        if t.device.type != "cuda":
            _fail(f"{name}.device={t.device}: sigjit runs on CUDA devices; move q, k and v to one CUDA device")
    if not (q.dtype == k.dtype == v.dtype):
        _fail(f"q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype}): they must be the same")
    if not (q.device == k.device == v.device):
        _fail(f"q, k, v devices differ ({q.device}, {k.device}, {v.device}): they must be on one CUDA device")
    if k.shape != v.shape:
        _fail(f"k and v shapes differ ({tuple(k.shape)} vs {tuple(v.shape)}): v must be shaped like k")
    if q.shape[-1] != k.shape[-1]:
        _fail(f"head_dim: q has {q.shape[-1]}, k and v have {k.shape[-1]}; they must match")


def _lengths(t: Optional[Tensor], name: str, count: int, device: torch.device) -> Tensor:
    if not isinstance(t, torch.Tensor):
        _fail(f"{name}: expected an integer torch.Tensor of shape [{count}], got {type(t).__name__}")
    if t.dim() != 1 or t.shape[0] != count:
        _fail(f"{name}: expected shape [{count}], got {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        _fail(f"{name}.dtype={t.dtype}: expected an integer tensor (int32 preferred; others are converted)")
    return t.to(device=device, dtype=torch.int32).contiguous()


def _score_bias(t: Optional[Tensor], shape: tuple, device: torch.device) -> Optional[Tensor]:
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        _fail(f"score_bias: expected a floating-point torch.Tensor of shape {list(shape)}, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        _fail(f"score_bias: expected shape {list(shape)} (per key, broadcast over queries and heads), got {tuple(t.shape)}")
    if not t.dtype.is_floating_point:
        _fail(f"score_bias.dtype={t.dtype}: expected a floating-point tensor (converted to float32)")
    # Not trainable: the library computes no gradient for it, so it is detached here explicitly.
    t = t.detach().to(device=device, dtype=torch.float32)
    # The library reads rows at any batch stride >= seqlen_k; copy only what it cannot express
    # (a non-unit key stride, broadcast or overlapping rows).
    if t.stride(-1) != 1 or (t.dim() == 2 and t.shape[0] > 1 and t.stride(0) < t.shape[1]):
        t = t.contiguous()
    return t


def _max_seqlen(name: str, n):
    if isinstance(n, torch.SymInt):  # traced under torch.compile with dynamic shapes
        return n
    # Dynamo traces a dynamic int as a symbolic node on which hasattr() breaks the graph, but
    # isinstance(n, int) holds for it: take plain ints first, then anything with __index__.
    if isinstance(n, int) and not isinstance(n, bool):
        if n < 0:
            _fail(f"{name}={n}: must be non-negative (the longest sequence)")
        return n
    if isinstance(n, (torch.Tensor, bool)) or not hasattr(n, "__index__"):
        _fail(f"{name}={n!r}: expected a non-negative Python int (the longest sequence, as in flash_attn_varlen_func)")
    n = int(n)
    if n < 0:
        _fail(f"{name}={n}: must be non-negative (the longest sequence)")
    return n


def _options(causal, is_causal, scale, sigmoid_bias, exact_sigmoid):
    causal = bool(_pick("causal", causal, "is_causal", is_causal, False))
    scale = None if scale is None else float(scale)
    sigmoid_bias = None if sigmoid_bias is None else float(sigmoid_bias)
    return causal, scale, sigmoid_bias, bool(exact_sigmoid)


def sigmoid_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: Optional[bool] = None, scale: Optional[float] = None,
                      sigmoid_bias: Optional[float] = None, score_bias: Optional[Tensor] = None, exact_sigmoid: bool = False,
                      is_causal: Optional[bool] = None, score_mod: Optional[Tensor] = None, deterministic: bool = False) -> Tensor:
    """Sigmoid attention over dense [B, L, H, D] tensors: O = sigmoid(scale QK^T + bias + s_k) V.

    q: [B, Lq, Hq, D]; k, v: [B, Lk, Hkv, D] with Hq a multiple of Hkv (GQA/MQA); bf16 or fp16;
    D in {32, 64, 96, 128, 256}. causal: query i sees keys j <= i + Lk - Lq (bottom-right aligned).
    scale: default 1/sqrt(D). sigmoid_bias: None = -log(Lk) (the library default), a float = that
    bias. score_bias: optional per-key bias [B, Lk] (converted to float32; not trainable).
    exact_sigmoid: 1/(1+exp(-x)) to ~2e-6 instead of the faster tanh form. deterministic: the
    backward runs without atomics and gives bitwise identical gradients run to run (slower: S and
    dP are computed twice); by default dQ is accumulated with fp32 atomics and its last bits vary.
    Aliases as in TritonSigmoid: is_causal = causal, score_mod = score_bias. Returns [B, Lq, Hq, D].
    """
    _check_tensors(q, k, v, 4, "[B, L, H, D]")
    if q.shape[0] != k.shape[0]:
        _fail(f"batch: q has {q.shape[0]} sequences, k and v have {k.shape[0]}; they must match")
    causal, scale, sigmoid_bias, exact = _options(causal, is_causal, scale, sigmoid_bias, exact_sigmoid)
    sb = _score_bias(_pick("score_bias", score_bias, "score_mod", score_mod, None), (k.shape[0], k.shape[1]), q.device)
    return _attention_forward(q, k, v, None, None, sb, "dense", q.shape[1], k.shape[1], causal, scale, sigmoid_bias, exact, False,
                              bool(deterministic))


def sigmoid_attention_padded(q: Tensor, k: Tensor, v: Tensor, seq_lens_q: Optional[Tensor] = None,
                             seq_lens_k: Optional[Tensor] = None, *, causal: Optional[bool] = None, scale: Optional[float] = None,
                             sigmoid_bias: Optional[float] = None, score_bias: Optional[Tensor] = None,
                             exact_sigmoid: bool = False, check_lengths: bool = False, is_causal: Optional[bool] = None,
                             score_mod: Optional[Tensor] = None, deterministic: bool = False) -> Tensor:
    """Sigmoid attention over a padded batch: [B, L, H, D] buffers with trailing padding.

    seq_lens_q, seq_lens_k: [B] valid lengths (int32 preferred; None = the whole buffer). NOTE the
    order: TritonSigmoid's positional order is (seq_lens_k, seq_lens_q); pass them by keyword.
    Padded rows of O are zeros and padded keys are ignored; sigmoid_bias None = -log(seq_lens_k[b])
    per sequence. check_lengths: verify lengths against the buffers before launching (copies them
    to the host and synchronises the stream); otherwise out-of-range lengths are clamped by the
    kernels (never an out-of-bounds access, but wrong rows). Other arguments as sigmoid_attention.
    """
    _check_tensors(q, k, v, 4, "[B, L, H, D]")
    B = q.shape[0]
    if k.shape[0] != B:
        _fail(f"batch: q has {B} sequences, k and v have {k.shape[0]}; they must match")
    causal, scale, sigmoid_bias, exact = _options(causal, is_causal, scale, sigmoid_bias, exact_sigmoid)
    if seq_lens_q is None:
        seq_lens_q = torch.full((B,), q.shape[1], dtype=torch.int32, device=q.device)
    if seq_lens_k is None:
        seq_lens_k = torch.full((B,), k.shape[1], dtype=torch.int32, device=q.device)
    lq, lk = _lengths(seq_lens_q, "seq_lens_q", B, q.device), _lengths(seq_lens_k, "seq_lens_k", B, q.device)
    sb = _score_bias(_pick("score_bias", score_bias, "score_mod", score_mod, None), (B, k.shape[1]), q.device)
    return _attention_forward(q, k, v, lq, lk, sb, "padded", q.shape[1], k.shape[1], causal, scale, sigmoid_bias, exact,
                              bool(check_lengths), bool(deterministic))


def sigmoid_attention_varlen(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor, max_seqlen_q: int,
                             max_seqlen_k: int, *, causal: Optional[bool] = None, scale: Optional[float] = None,
                             sigmoid_bias: Optional[float] = None, score_bias: Optional[Tensor] = None,
                             exact_sigmoid: bool = False, check_lengths: bool = False,
                             softmax_scale: Optional[float] = None, deterministic: bool = False) -> Tensor:
    """Sigmoid attention over packed sequences, as flash_attn_varlen_func takes them.

    q: [total_q, Hq, D]; k, v: [total_k, Hkv, D]; cu_seqlens_q/_k: [B + 1] prefix sums from 0
    (int32 preferred); max_seqlen_q/_k: the longest sequence of each side (ints; they size the
    launch grid, so they must not be smaller than the real maxima: check_lengths=True verifies).
    score_bias: [total_k], indexed by packed key row. softmax_scale: FlashAttention's name for
    scale. Rows of O outside the sequences are zeros. Other arguments as sigmoid_attention.
    """
    _check_tensors(q, k, v, 3, "[total_tokens, H, D]")
    if not isinstance(cu_seqlens_q, torch.Tensor) or cu_seqlens_q.dim() != 1 or cu_seqlens_q.shape[0] < 1:
        _fail("cu_seqlens_q: expected an integer torch.Tensor of shape [B + 1] (prefix sums of the query lengths, from 0)")
    B = cu_seqlens_q.shape[0] - 1
    causal, scale, sigmoid_bias, exact = _options(causal, None, _pick("scale", scale, "softmax_scale", softmax_scale, None),
                                                  sigmoid_bias, exact_sigmoid)
    cq, ck = _lengths(cu_seqlens_q, "cu_seqlens_q", B + 1, q.device), _lengths(cu_seqlens_k, "cu_seqlens_k", B + 1, q.device)
    max_seqlen_q, max_seqlen_k = _max_seqlen("max_seqlen_q", max_seqlen_q), _max_seqlen("max_seqlen_k", max_seqlen_k)
    sb = _score_bias(score_bias, (k.shape[0],), q.device)
    return _attention_forward(q, k, v, cq, ck, sb, "varlen", max_seqlen_q, max_seqlen_k, causal, scale, sigmoid_bias, exact,
                              bool(check_lengths), bool(deterministic))
