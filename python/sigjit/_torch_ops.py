"""The tensor side of sigjit.torch: checks, custom ops, autograd, and the eager fast path.

What: maps torch tensors onto libsigjit.so's C API (sigjit._lib) for the functions of
sigjit._api, on the tensors' device and current CUDA stream.
Two routes to the same kernels:
- eager (the common case): a torch.autograd.Function calls the library directly. The first call
  of a torch.library custom op in a process imports PyTorch's compiler stack (dynamo, sympy,
  FSDP: about 4 s measured on an H200), which an eager caller would pay for nothing;
- traced (torch.compile, export, functorch transforms, fake or subclass tensors): the
  torch.library custom ops sigjit::attention_forward / attention_backward with fake
  implementations and a registered autograd formula, so the graph keeps one node per call.
Cost per call: argument checks and one ctypes call (tens of microseconds of host time); no
device synchronisation unless check_lengths=True. Outputs, the varlen zero fill and the
backward's fp32 dQ workspace come from PyTorch's caching allocator on the current stream, so a
call captured in a CUDA graph allocates nothing outside it (sigjit.torch.prepare loads the
kernels beforehand).
Strided tensors are read in place (e.g. views of one packed QKV projection); a tensor sigjit cannot
read in place (last dimension not contiguous, a broadcast dimension, a stride that is not a
multiple of 8 elements, a first element not 16-byte aligned) is copied with .contiguous() first.
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from typing import Callable, Optional

try:
    import torch
except ImportError as e:  # keep the reason: a broken torch install is not the same as none
    raise ImportError(f"sigjit's PyTorch functions need PyTorch ({e}); install torch with CUDA support, or use the ctypes "
                      "layer sigjit._lib, which needs no torch") from e

from . import _lib
from ._api import Options, _fail

Tensor = torch.Tensor
_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_FP8 = getattr(torch, "float8_e4m3fn", None)  # PyTorch >= 2.1
if _FP8 is not None:
    _DTYPES[_FP8] = "fp8"
_FAKE_PTR = 1 << 20  # aligned, non-null stand-in address: fake tensors have no storage
_PLAIN = (torch.Tensor, torch.nn.Parameter)


# ---- mapping tensors to the C struct ----------------------------------------------------------
def _describable(t: Tensor, fake: bool = False) -> Tensor:
    """t itself when sigjit can read it in place, else a contiguous copy."""
    if _lib.needs_copy(t.shape, t.stride()) or (not fake and t.data_ptr() % 16 != 0):
        return t.contiguous()
    return t


def _ref(t: Optional[Tensor], fake: bool) -> _lib.TensorRef:
    if t is None:
        return _lib.TensorRef(0, (0, 0, 0))
    return _lib.TensorRef(_FAKE_PTR if fake else t.data_ptr(), _lib.c_strides(t.shape, t.stride()))


def _ptr(t: Optional[Tensor], fake: bool) -> int:
    return 0 if t is None else (_FAKE_PTR if fake else t.data_ptr())


def _make_args(q, k, v, o, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale, sigmoid_bias,
               exact_sigmoid, check_lengths, fake=False, descale=(None, None, None)) -> _lib.AttentionArgs:
    if layout == "varlen":
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
                          lens_k=_ptr(lens_k, fake), causal=causal, causal_align=causal_align, scale=scale, sigmoid_bias=sigmoid_bias,
                          score_bias=_ptr(score_bias, fake), score_bias_stride=sb_stride, exact_sigmoid=exact_sigmoid,
                          validate_lengths=check_lengths, descale=tuple(_ptr(d, fake) for d in descale),
                          descale_strides=_descale_strides(descale))


def _descale_strides(descale) -> tuple:
    """(batch, head) element strides of the [B, Hkv] descale tensors (all alike), (0, 0) for one factor."""
    given = [d for d in descale if d is not None]
    if not given or given[0].numel() == 1:
        return (0, 0)
    if given[0].dim() == 1:  # [Hkv]: the same factors for every sequence
        return (0, given[0].stride(0))
    return (given[0].stride(0), given[0].stride(1))


def quantize_fp8(x: Tensor, heads_dim: int = -2):
    """x quantized to torch.float8_e4m3fn with one descale factor per head (amax / 448, so the
    largest magnitude of each head maps to e4m3's largest normal): returns (codes, descale), descale
    float32 [H] over dimension `heads_dim` (default: the second to last, as in [B, L, H, D] and
    [T, H, D]), ready for q_descale/k_descale/v_descale. The on-the-fly quantization of bf16/fp16
    inputs for the FP8 forward. The maximum is over the whole tensor, padding included: zero the
    padding first, or let fp8=True quantize (it reads only the valid rows)."""
    if _FP8 is None:
        _fail("quantize_fp8: this PyTorch has no torch.float8_e4m3fn (PyTorch 2.1 or newer)")
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point or x.dim() < 2:
        _fail("quantize_fp8: expected a floating-point torch.Tensor with a heads dimension")
    dim = heads_dim % x.dim()
    others = [d for d in range(x.dim()) if d != dim]
    shape = [1] * x.dim()
    shape[dim] = -1
    return _scaled_to_e4m3(x, x.detach().abs().float().amax(dim=others), shape)


def _scaled_to_e4m3(x: Tensor, amax: Tensor, shape):
    """x in e4m3 with descale amax / 448 (viewed as `shape` against x), so that each group's largest
    magnitude maps to e4m3's largest normal; an all-zero group keeps a tiny positive factor."""
    descale = (amax / 448.0).clamp_min(torch.finfo(torch.float32).tiny)
    return (x.float() / descale.view(shape)).to(_FP8), descale


def _quantize_per_kv_head(x: Tensor, heads_kv: int, valid: Optional[Tensor]):
    """x [..., H, D] (H a multiple of heads_kv) to e4m3 with one factor per key/value head: amax / 448
    over that head's group of heads and over the valid tokens only (`valid`: a bool mask over x's
    token dimensions, or None for all), so that padding, which the kernels never read, cannot
    spoil a head's scale with garbage (NaN, Inf or huge values in a torch.empty buffer)."""
    groups = x.unflatten(-2, (heads_kv, x.shape[-2] // heads_kv))  # [..., Hkv, G, D]
    if groups.numel() == 0:
        return groups.to(_FP8).flatten(-3, -2), torch.ones(heads_kv, dtype=torch.float32, device=x.device)
    magnitude = groups.detach().abs().float()
    if valid is not None:
        magnitude = torch.where(valid[..., None, None, None], magnitude, 0.0)
    amax = magnitude.amax(dim=[d for d in range(groups.dim()) if d != groups.dim() - 3])
    codes, descale = _scaled_to_e4m3(groups, amax, (-1, 1, 1))
    return codes.flatten(-3, -2), descale


def _quantized(q: Tensor, k: Tensor, v: Tensor, descale, quantize: bool, valid_q: Optional[Callable[[], Tensor]] = None,
               valid_k: Optional[Callable[[], Tensor]] = None):
    """fp8=True: q, k and v for the FP8 forward, with their descale factors and whether the library
    quantizes them. bf16: the library does (ForwardOptions::fp8: one factor per (sequence,
    key/value head) over the valid rows, two kernels, no PyTorch ops). fp16, which the library's
    quantization does not take: e4m3 here, one factor per key/value head over the whole batch (a
    query head shares its GQA group's, as FlashAttention-3's q_descale is indexed), computed over
    the valid tokens (valid_q, valid_k: callables giving masks over the token dimensions, None for
    all). Otherwise the arguments unchanged."""
    if not quantize:
        return q, k, v, descale, False
    if any(d is not None for d in descale):
        _fail("fp8=True quantizes the inputs itself: pass bf16/fp16 query, key and value without q_descale/k_descale/v_descale "
              "(or torch.float8_e4m3fn inputs with them, and fp8=False)")
    if q.dtype == _FP8:
        return q, k, v, descale, False
    if _FP8 is None:
        _fail("fp8=True: this PyTorch has no torch.float8_e4m3fn (PyTorch 2.1 or newer)")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        _fail("fp8=True: sigjit's FP8 attention is forward only (inference); run it under torch.no_grad() or "
              "torch.inference_mode(), or drop fp8=True to train in bfloat16")
    heads_q, heads_kv = q.shape[-2], k.shape[-2]
    if heads_kv == 0 or heads_q % heads_kv != 0:
        _fail(f"heads: query has {heads_q}, key/value {heads_kv}; query heads must be a multiple of key/value heads")
    if q.dtype == torch.bfloat16:
        return q, k, v, descale, True
    masks = (valid_q() if valid_q else None, valid_k() if valid_k else None)
    (q8, qd), (k8, kd), (v8, vd) = (_quantize_per_kv_head(x, heads_kv, m) for x, m in ((q, masks[0]), (k, masks[1]), (v, masks[1])))
    return q8, k8, v8, (qd, kd, vd), False


def _valid_rows(lengths: Tensor, rows: int) -> Tensor:
    """[B, rows] mask of the padded layout's valid rows (lengths [B], on the device: no sync)."""
    return torch.arange(rows, device=lengths.device)[None, :] < lengths.to(torch.int64)[:, None]


def _descales(descale, q: Tensor, batch: int, heads_kv: int) -> tuple:
    """FlashAttention-3's q/k/v_descale, checked: float32 [B, Hkv], [Hkv] (one per head, every
    sequence) or one element (per tensor) on q's device, all three alike; None stays None (1)."""
    if all(d is None for d in descale):
        return (None, None, None)
    if q.dtype != _FP8:
        _fail(f"q_descale/k_descale/v_descale: descale factors belong to torch.float8_e4m3fn inputs, not {q.dtype}; pass None")
    out, shape = [], None
    for name, d in zip(("q_descale", "k_descale", "v_descale"), descale):
        if d is None:
            out.append(None)
            continue
        if not isinstance(d, torch.Tensor) or not d.dtype.is_floating_point:
            _fail(f"{name}: expected a floating-point torch.Tensor of shape [{batch}, {heads_kv}] or one element, got {type(d).__name__}")
        if d.numel() != 1 and tuple(d.shape) not in ((batch, heads_kv), (heads_kv,)):
            _fail(f"{name}: expected shape [{batch}, {heads_kv}] (batch, key/value heads), [{heads_kv}] or one element, got {tuple(d.shape)}")
        d = d.detach().to(device=q.device, dtype=torch.float32).contiguous()
        if shape is not None and tuple(d.shape) != shape and not (d.numel() == 1 and math.prod(shape) == 1):
            _fail("q_descale/k_descale/v_descale: give all of them with one shape ([batch, key/value heads], [key/value heads] or one element)")
        shape = tuple(d.shape)
        out.append(d)
    return tuple(out)


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


# ---- the two library calls ----------------------------------------------------------------------
def _forward_impl(q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale, sigmoid_bias,
                  exact_sigmoid, check_lengths, descale=(None, None, None), quantize=False) -> Tensor:
    """quantize: bf16 q, k, v quantized to e4m3 by the library for the FP8 forward (fp8=True)."""
    q, k, v = _describable(q), _describable(k), _describable(v)
    with torch.cuda.device(q.device):  # every row is written, varlen rows outside the sequences as zeros
        o = torch.empty(q.shape, dtype=torch.bfloat16 if q.dtype == _FP8 else q.dtype, device=q.device)  # FP8: bf16 O
        args = _make_args(q, k, v, o, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                          sigmoid_bias, exact_sigmoid, check_lengths, descale=descale)
        # FP8: the V^T workspace (with quantize, the e4m3 copies too) from PyTorch's caching
        # allocator, as the backward's dQ workspace, so that a CUDA graph capture allocates
        # nothing outside PyTorch's pool.
        nbytes = _lib.forward_workspace_size(args, fp8=quantize) if q.dtype == _FP8 or quantize else 0
        workspace = torch.empty(nbytes, dtype=torch.uint8, device=q.device) if nbytes else None
        _lib.forward(args, _stream(q.device), fp8=quantize, workspace=0 if workspace is None else workspace.data_ptr(),
                     workspace_bytes=nbytes)
    return o


def _backward_impl(dout, q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                   sigmoid_bias, exact_sigmoid, check_lengths, deterministic) -> tuple[Tensor, Tensor, Tensor]:
    # dout from autograd is often expanded (loss = out.sum() gives stride 0 everywhere): copy it.
    dout = _describable(dout.to(q.dtype))
    q, k, v = _describable(q), _describable(k), _describable(v)
    with torch.cuda.device(q.device):  # every row is written, varlen rows outside the sequences as zeros
        dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
        dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
        args = _make_args(q, k, v, None, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                          sigmoid_bias, exact_sigmoid, check_lengths)
        grads = _lib.make_gradients(_ref(dout, False), _ref(dq, False), _ref(dk, False), _ref(dv, False))
        nbytes = _lib.workspace_size(args, deterministic)
        workspace = torch.empty(nbytes, dtype=torch.uint8, device=q.device) if nbytes else None  # caching allocator: 512-byte aligned
        _lib.backward(args, grads, _stream(q.device), deterministic=deterministic,
                      workspace=0 if workspace is None else workspace.data_ptr(), workspace_bytes=nbytes)
    return dq, dk, dv


# ---- traced route: custom ops ---------------------------------------------------------------------
@torch.library.custom_op("sigjit::attention_forward", mutates_args=())
def _attention_forward(q: Tensor, k: Tensor, v: Tensor, lens_q: Optional[Tensor], lens_k: Optional[Tensor],
                       score_bias: Optional[Tensor], layout: str, max_seqlen_q: int, max_seqlen_k: int, causal: bool,
                       causal_align: str, scale: Optional[float], sigmoid_bias: Optional[float], exact_sigmoid: bool,
                       check_lengths: bool, deterministic: bool) -> Tensor:
    # deterministic is the backward's option; it is an input here so that autograd hands it on.
    return _forward_impl(q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                         sigmoid_bias, exact_sigmoid, check_lengths)


def _static(*tensors) -> bool:
    return all(isinstance(n, int) for t in tensors if t is not None for n in t.shape)


@_attention_forward.register_fake
def _attention_forward_fake(q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                            sigmoid_bias, exact_sigmoid, check_lengths, deterministic):
    # Under torch.compile this runs at trace time: shape errors (head_dim, GQA) surface there
    # with the library's message. Symbolic shapes are left to the real call (no guards added).
    if _static(q, k, v, lens_q, score_bias):
        fq, fk, fv = _describable(q, True), _describable(k, True), _describable(v, True)
        _lib.validate(_make_args(fq, fk, fv, fq, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align,
                                 scale, sigmoid_bias, exact_sigmoid, False, fake=True))
    return q.new_empty(q.shape)


@torch.library.custom_op("sigjit::attention_backward", mutates_args=())
def _attention_backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, lens_q: Optional[Tensor], lens_k: Optional[Tensor],
                        score_bias: Optional[Tensor], layout: str, max_seqlen_q: int, max_seqlen_k: int, causal: bool,
                        causal_align: str, scale: Optional[float], sigmoid_bias: Optional[float], exact_sigmoid: bool,
                        check_lengths: bool, deterministic: bool) -> tuple[Tensor, Tensor, Tensor]:
    return _backward_impl(dout, q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                          sigmoid_bias, exact_sigmoid, check_lengths, deterministic)


@_attention_backward.register_fake
def _attention_backward_fake(dout, q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align,
                             scale, sigmoid_bias, exact_sigmoid, check_lengths, deterministic):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


# FP8 (inference): forward only, so no autograd formula; the descale factors are inputs.
@torch.library.custom_op("sigjit::attention_forward_fp8", mutates_args=())
def _attention_forward_fp8(q: Tensor, k: Tensor, v: Tensor, lens_q: Optional[Tensor], lens_k: Optional[Tensor],
                           score_bias: Optional[Tensor], layout: str, max_seqlen_q: int, max_seqlen_k: int, causal: bool,
                           causal_align: str, scale: Optional[float], sigmoid_bias: Optional[float], exact_sigmoid: bool,
                           check_lengths: bool, q_descale: Optional[Tensor], k_descale: Optional[Tensor],
                           v_descale: Optional[Tensor], quantize: bool) -> Tensor:
    return _forward_impl(q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                         sigmoid_bias, exact_sigmoid, check_lengths, descale=(q_descale, k_descale, v_descale), quantize=quantize)


@_attention_forward_fp8.register_fake
def _attention_forward_fp8_fake(q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                                sigmoid_bias, exact_sigmoid, check_lengths, q_descale, k_descale, v_descale, quantize):
    descale = (q_descale, k_descale, v_descale)
    if _static(q, k, v, lens_q, score_bias, *descale):
        fq, fk, fv = _describable(q, True), _describable(k, True), _describable(v, True)
        _lib.validate(_make_args(fq, fk, fv, fq, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align,
                                 scale, sigmoid_bias, exact_sigmoid, False, fake=True, descale=descale))
    return q.new_empty(q.shape, dtype=torch.bfloat16)


def _setup_context(ctx, inputs, output):
    q, k, v, lens_q, lens_k, score_bias, *options = inputs
    ctx.save_for_backward(q, k, v, lens_q, lens_k, score_bias)
    ctx.options = options


def _custom_op_backward(ctx, dout):
    q, k, v, lens_q, lens_k, score_bias = ctx.saved_tensors
    dq, dk, dv = _attention_backward(dout, q, k, v, lens_q, lens_k, score_bias, *ctx.options)
    # The score bias is not trainable (no gradient), nor are lengths and options.
    return (dq, dk, dv) + (None,) * (3 + len(ctx.options))


_attention_forward.register_autograd(_custom_op_backward, setup_context=_setup_context)


# ---- eager route ----------------------------------------------------------------------------------
class _EagerAttention(torch.autograd.Function):
    """The custom ops' autograd formula without the dispatcher (see the module comment)."""

    @staticmethod
    def forward(ctx, q, k, v, lens_q, lens_k, score_bias, *options):
        ctx.save_for_backward(q, k, v, lens_q, lens_k, score_bias)
        ctx.options = options
        return _forward_impl(q, k, v, lens_q, lens_k, score_bias, *options[:-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        q, k, v, lens_q, lens_k, score_bias = ctx.saved_tensors
        dq, dk, dv = _backward_impl(dout, q, k, v, lens_q, lens_k, score_bias, *ctx.options)
        return (dq, dk, dv) + (None,) * (3 + len(ctx.options))


def _functorch_active() -> bool:
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active and active())


def _eager(tensors) -> bool:
    """True when nothing is tracing these tensors: plain tensors, no compile/export, no vmap/grad."""
    if torch.compiler.is_compiling():
        return False
    return all(t is None or type(t) in _PLAIN for t in tensors) and not _functorch_active()


# ---- prepare --------------------------------------------------------------------------------------
_preparing = threading.local()


@contextmanager
def preparing(backward: Optional[bool]):
    """Inside: calls load their kernels (sigjit_prepare) and return None instead of running."""
    previous = getattr(_preparing, "request", None)
    _preparing.request = {"backward": backward}
    try:
        yield
    finally:
        _preparing.request = previous


def _prepare(request, q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale, sigmoid_bias,
             exact_sigmoid, check_lengths, deterministic) -> None:
    backward = request["backward"]
    if backward is None:
        backward = any(t.requires_grad for t in (q, k, v))
    q, k, v = _describable(q), _describable(k), _describable(v)
    with torch.cuda.device(q.device):
        o = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # the layout the real call's output gets; never written
        args = _make_args(q, k, v, o, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, causal, causal_align, scale,
                          sigmoid_bias, exact_sigmoid, False)
        _lib.prepare(args, forward=True, backward=backward, deterministic=deterministic)


def _run(q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, o: Options, descale=(None, None, None),
         quantize=False):
    args = (q, k, v, lens_q, lens_k, score_bias, layout, max_seqlen_q, max_seqlen_k, o.causal, o.causal_align, o.scale, o.sigmoid_bias,
            o.exact_sigmoid, o.check_lengths, o.deterministic)
    if q.dtype == _FP8 or quantize:
        return _run_fp8(args, descale, quantize)
    if torch.compiler.is_compiling():  # first: the thread-local below would break the graph
        return _attention_forward(*args)
    request = getattr(_preparing, "request", None)
    if request is not None:
        return _prepare(request, *args)
    if not _eager((q, k, v, lens_q, lens_k, score_bias)):
        return _attention_forward(*args)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _EagerAttention.apply(*args)
    return _forward_impl(*args[:-1])


def _run_fp8(args, descale, quantize):
    """The FP8 forward (quantize: of bf16 inputs, quantized by the library): inference only; eager,
    or the custom op sigjit::attention_forward_fp8 under tracing."""
    q, k, v = args[:3]
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        _fail("FP8 inputs: sigjit's FP8 attention is forward only (inference); run it under torch.no_grad() or "
              "torch.inference_mode(), or train in bfloat16")
    if torch.compiler.is_compiling() or not _eager(args[:6] + tuple(descale)):
        return _attention_forward_fp8(*args[:-1], *descale, quantize)
    request = getattr(_preparing, "request", None)
    if request is not None:
        if request["backward"]:
            _fail("prepare(backward=True): FP8 attention has no backward")
        q2, k2, v2 = _describable(q), _describable(k), _describable(v)
        with torch.cuda.device(q.device):
            o = torch.empty(q.shape, dtype=torch.bfloat16, device=q.device)
            _lib.prepare(_make_args(q2, k2, v2, o, *args[3:14], False, descale=descale), forward=True, backward=False, deterministic=False,
                         fp8=quantize)
        return None
    return _forward_impl(*args[:-1], descale=descale, quantize=quantize)


# ---- argument checks ------------------------------------------------------------------------------
def _check_tensors(q: Tensor, k: Tensor, v: Tensor, ndim: int, shape_text: str, names=("query", "key", "value")) -> None:
    for name, t in zip(names, (q, k, v)):
        if not isinstance(t, torch.Tensor):
            _fail(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != ndim:
            _fail(f"{name}: expected {ndim} dimensions {shape_text}, got shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES:
            hint = (f"; sigjit has no fp32 kernels: cast with {name}.to(torch.bfloat16) (or float16), and the output back with "
                    ".float() if needed" if t.dtype == torch.float32 else "")
            _fail(f"{name}.dtype={t.dtype}: sigjit supports torch.bfloat16 and torch.float16 (and torch.float8_e4m3fn for the "
                  f"FP8 forward on Hopper){hint}")
        if t.device.type != "cuda":
            _fail(f"{name}.device={t.device}: sigjit runs on CUDA devices; move {', '.join(names)} to one CUDA device "
                  "(sigjit.torch.sigmoid_attention_ref runs anywhere)")
    if not (q.dtype == k.dtype == v.dtype):
        _fail(f"{', '.join(names)} dtypes differ ({q.dtype}, {k.dtype}, {v.dtype}): they must be the same")
    if not (q.device == k.device == v.device):
        _fail(f"{', '.join(names)} devices differ ({q.device}, {k.device}, {v.device}): they must be on one CUDA device")
    if k.shape != v.shape:
        _fail(f"{names[1]} and {names[2]} shapes differ ({tuple(k.shape)} vs {tuple(v.shape)}): {names[2]} must be shaped like {names[1]}")
    if q.shape[-1] != k.shape[-1]:
        _fail(f"head_dim: {names[0]} has {q.shape[-1]}, {names[1]} and {names[2]} have {k.shape[-1]}; they must match")


def _lengths(t, name: str, count: int, device: torch.device) -> Tensor:
    if not isinstance(t, torch.Tensor):
        _fail(f"{name}: expected an integer torch.Tensor of shape [{count}], got {type(t).__name__}")
    if t.dim() != 1 or t.shape[0] != count:
        _fail(f"{name}: expected shape [{count}], got {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        _fail(f"{name}.dtype={t.dtype}: expected an integer tensor (int32 preferred; others are converted)")
    return t.to(device=device, dtype=torch.int32).contiguous()


def _score_bias(t, name: str, shape: tuple, device: torch.device) -> Optional[Tensor]:
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        _fail(f"{name}: expected a floating-point torch.Tensor of shape {list(shape)}, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        _fail(f"{name}: expected shape {list(shape)} (per key, broadcast over queries and heads), got {tuple(t.shape)}")
    if not t.dtype.is_floating_point:
        _fail(f"{name}.dtype={t.dtype}: expected a floating-point tensor (converted to float32)")
    # Not trainable: the library computes no gradient for it, so it is detached here explicitly.
    t = t.detach().to(device=device, dtype=torch.float32)
    # The library reads rows at any batch stride >= seqlen_k; copy only what it cannot express.
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


def _same_batch(q: Tensor, k: Tensor) -> None:
    if q.shape[0] != k.shape[0]:
        _fail(f"batch: query has {q.shape[0]} sequences, key and value have {k.shape[0]}; they must match")


# ---- entry points of sigjit._api ------------------------------------------------------------------
def dense(query, key, value, score_mod, o: Options, descale=(None, None, None), quantize=False):
    _check_tensors(query, key, value, 4, "[B, L, H, D]")
    _same_batch(query, key)
    query, key, value, descale, in_library = _quantized(query, key, value, descale, quantize)
    sb = _score_bias(score_mod, "score_mod", (key.shape[0], key.shape[1]), query.device)
    descale = _descales(descale, query, query.shape[0], key.shape[2])
    return _run(query, key, value, None, None, sb, "dense", query.shape[1], key.shape[1], o, descale, in_library)


def padded(query, key, value, seq_lens_k, seq_lens_q, score_mod, o: Options, descale=(None, None, None), quantize=False):
    _check_tensors(query, key, value, 4, "[B, L, H, D]")
    _same_batch(query, key)
    B = query.shape[0]
    if seq_lens_q is None:
        seq_lens_q = torch.full((B,), query.shape[1], dtype=torch.int32, device=query.device)
    if seq_lens_k is None:
        seq_lens_k = torch.full((B,), key.shape[1], dtype=torch.int32, device=query.device)
    lq, lk = _lengths(seq_lens_q, "seq_lens_q", B, query.device), _lengths(seq_lens_k, "seq_lens_k", B, query.device)
    query, key, value, descale, in_library = _quantized(query, key, value, descale, quantize, lambda: _valid_rows(lq, query.shape[1]),
                                                        lambda: _valid_rows(lk, key.shape[1]))
    sb = _score_bias(score_mod, "score_mod", (B, key.shape[1]), query.device)
    descale = _descales(descale, query, B, key.shape[2])
    return _run(query, key, value, lq, lk, sb, "padded", query.shape[1], key.shape[1], o, descale, in_library)


def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, score_bias, o: Options, descale=(None, None, None),
           quantize=False):
    _check_tensors(q, k, v, 3, "[total_tokens, H, D]", names=("q", "k", "v"))
    if not isinstance(cu_seqlens_q, torch.Tensor) or cu_seqlens_q.dim() != 1 or cu_seqlens_q.shape[0] < 1:
        _fail("cu_seqlens_q: expected an integer torch.Tensor of shape [B + 1] (prefix sums of the query lengths, from 0)")
    B = cu_seqlens_q.shape[0] - 1
    cq, ck = _lengths(cu_seqlens_q, "cu_seqlens_q", B + 1, q.device), _lengths(cu_seqlens_k, "cu_seqlens_k", B + 1, q.device)
    # Rows past the last sequence are not read: they stay out of the scales.
    q, k, v, descale, in_library = _quantized(q, k, v, descale, quantize, lambda: _valid_rows(cq[-1:], q.shape[0])[0],
                                              lambda: _valid_rows(ck[-1:], k.shape[0])[0])
    max_seqlen_q, max_seqlen_k = _max_seqlen("max_seqlen_q", max_seqlen_q), _max_seqlen("max_seqlen_k", max_seqlen_k)
    sb = _score_bias(score_bias, "score_bias", (k.shape[0],), q.device)
    descale = _descales(descale, q, B, k.shape[1])
    return _run(q, k, v, cq, ck, sb, "varlen", max_seqlen_q, max_seqlen_k, o, descale, in_library)


def reference(q, k, v, seq_lens_k, seq_lens_q, scale, sigmoid_bias, upcast, reorder_ops, causal, score_mod) -> Tensor:
    """sigjit._api.sigmoid_attention_ref's body: one batched einsum per GEMM, masks as bool."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            _fail(f"{name}: expected a 4-dimensional torch.Tensor [B, L, H, D]")
    B, Lq, Hq, D = q.shape
    Lk, Hkv = k.shape[1], k.shape[2]
    if Hkv == 0 or Hq % Hkv != 0:
        _fail(f"heads: query has {Hq}, key/value {Hkv}; query heads must be a multiple of key/value heads")
    out_dtype, device = q.dtype, q.device
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    gemm = work if upcast else q.dtype
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    k = k.repeat_interleave(Hq // Hkv, dim=2)
    v = v.repeat_interleave(Hq // Hkv, dim=2)
    q, k, v = q.to(gemm), k.to(gemm), v.to(gemm)
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k * scale) if reorder_ops else torch.einsum("bqhd,bkhd->bhqk", q * scale, k)
    logits = logits.to(work)
    keys = torch.arange(Lk, device=device)
    lens_k = torch.full((B,), Lk, device=device) if seq_lens_k is None else seq_lens_k.to(device=device).long()
    if sigmoid_bias is None:
        bias = -torch.log(lens_k.clamp_min(1).to(work)).view(B, 1, 1, 1)
    else:
        bias = sigmoid_bias
    logits = logits + bias
    if score_mod is not None:
        logits = logits + score_mod.to(device=device, dtype=work).view(B, 1, 1, Lk)
    visible = (keys.view(1, 1, 1, Lk) < lens_k.view(B, 1, 1, 1))
    if causal:  # top-left: query i sees keys j <= i
        visible = visible & (keys.view(1, 1, 1, Lk) <= torch.arange(Lq, device=device).view(1, 1, Lq, 1))
    p = torch.sigmoid(logits).masked_fill(~visible, 0.0)
    out = torch.einsum("bhqk,bkhd->bqhd", p.to(gemm), v).to(work)
    if seq_lens_q is not None:
        rows = torch.arange(Lq, device=device).view(1, Lq, 1, 1)
        out = out.masked_fill(rows >= seq_lens_q.to(device=device).long().view(B, 1, 1, 1), 0.0)
    return out.to(out_dtype)
