"""ctypes layer over libsigjit.so (the C API of include/sigjit/sigjit.h); no torch, no numpy.

What: loads the library, mirrors sigjit_attention_args / sigjit_gradients /
sigjit_backward_options field for field,
turns status codes into Python exceptions carrying sigjit_last_error(), and builds argument
structs from (pointer, shape, strides) descriptions so that sigjit.torch and the CPU tests
share one mapping from tensors to the C struct.
Why ctypes: no build step beyond the C++ build, and the C ABI is the stable surface (the
struct_size field catches a header/library mismatch at the first call).
Cost: one ctypes call per entry point (a few microseconds of Python overhead per call).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

# ---- enums and status codes (sigjit.h) ------------------------------------------------------
OK, ERROR_INVALID_ARGUMENT, ERROR_CUDA, ERROR_COMPILE, ERROR_INTERNAL = 0, 1, 2, 3, 4
BF16, FP16, FP8_E4M3 = 0, 1, 2
DENSE, PADDED, VARLEN = 0, 1, 2
BIAS_LOG_N, BIAS_SCALAR = 0, 1
SIGMOID_FAST, SIGMOID_EXACT = 0, 1
CAUSAL_BOTTOM_RIGHT, CAUSAL_TOP_LEFT = 0, 1

DTYPES = {"bf16": BF16, "fp16": FP16, "fp8": FP8_E4M3}
LAYOUTS = {"dense": DENSE, "padded": PADDED, "varlen": VARLEN}
CAUSAL_ALIGNS = {"bottom_right": CAUSAL_BOTTOM_RIGHT, "top_left": CAUSAL_TOP_LEFT}


class SigjitError(RuntimeError):
    """A failed sigjit call; `status` is the C status code, the message is sigjit_last_error()."""

    def __init__(self, message: str, status: int = ERROR_INTERNAL):
        super().__init__(message)
        self.status = status


class InvalidArgumentError(SigjitError, ValueError):
    """The arguments were rejected; the message names the argument and what is allowed."""


class CudaError(SigjitError):
    """The CUDA driver failed: no device, a device older than sm_80, a failed launch or copy."""


class CompileError(SigjitError):
    """NVRTC rejected a generated kernel; the message holds its log."""


_ERRORS = {ERROR_INVALID_ARGUMENT: InvalidArgumentError, ERROR_CUDA: CudaError, ERROR_COMPILE: CompileError}


# ---- struct mirrors (field order and types exactly as in sigjit.h) --------------------------
class Strides(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int64), ("token", ctypes.c_int64), ("head", ctypes.c_int64)]


_c_enum = ctypes.c_int  # C enums are int-sized on every ABI sigjit supports (x86-64, aarch64)
_i32p = ctypes.POINTER(ctypes.c_int32)


class AttentionArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_int32),
        ("dtype", _c_enum),
        ("layout", _c_enum),
        ("batch", ctypes.c_int32),
        ("seqlen_q", ctypes.c_int32),
        ("seqlen_k", ctypes.c_int32),
        ("total_q", ctypes.c_int32),
        ("total_k", ctypes.c_int32),
        ("heads_q", ctypes.c_int32),
        ("heads_kv", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("q", ctypes.c_void_p),
        ("k", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("o", ctypes.c_void_p),
        ("q_strides", Strides),
        ("k_strides", Strides),
        ("v_strides", Strides),
        ("o_strides", Strides),
        ("seq_lens_q", _i32p),
        ("seq_lens_k", _i32p),
        ("cu_seqlens_q", _i32p),
        ("cu_seqlens_k", _i32p),
        ("host_seq_lens_q", _i32p),
        ("host_seq_lens_k", _i32p),
        ("host_cu_seqlens_q", _i32p),
        ("host_cu_seqlens_k", _i32p),
        ("validate_lengths", ctypes.c_int32),
        ("causal", ctypes.c_int32),
        ("has_scale", ctypes.c_int32),
        ("scale", ctypes.c_float),
        ("bias_mode", _c_enum),
        ("bias", ctypes.c_float),
        ("score_bias", ctypes.POINTER(ctypes.c_float)),
        ("score_bias_stride", ctypes.c_int64),
        ("sigmoid", _c_enum),
        ("causal_align", _c_enum),
        ("reserved0", ctypes.c_int32),
        ("q_descale", ctypes.POINTER(ctypes.c_float)),
        ("k_descale", ctypes.POINTER(ctypes.c_float)),
        ("v_descale", ctypes.POINTER(ctypes.c_float)),
        ("descale_stride_batch", ctypes.c_int64),
        ("descale_stride_head", ctypes.c_int64),
    ]


class Gradients(ctypes.Structure):
    _fields_ = [
        ("dout", ctypes.c_void_p),
        ("dq", ctypes.c_void_p),
        ("dk", ctypes.c_void_p),
        ("dv", ctypes.c_void_p),
        ("dout_strides", Strides),
        ("dq_strides", Strides),
        ("dk_strides", Strides),
        ("dv_strides", Strides),
    ]


class PrepareOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_int32),
        ("forward", ctypes.c_int32),
        ("backward", ctypes.c_int32),
        ("deterministic", ctypes.c_int32),
        ("fp8", ctypes.c_int32),
    ]


class BackwardOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_int32),
        ("deterministic", ctypes.c_int32),
        ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t),
    ]


class ForwardOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_int32),
        ("fp8", ctypes.c_int32),
        ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t),
    ]


# ---- loading ----------------------------------------------------------------------------------
_LIB_NAME = "libsigjit.so"
_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_DIR = _PACKAGE_DIR.parent.parent  # python/sigjit -> repository root
_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None


def candidate_paths() -> list[Path]:
    """Where load() looks, in order: $SIGJIT_LIBRARY, next to the package, the repo's build dirs."""
    out = []
    env = os.environ.get("SIGJIT_LIBRARY")
    if env:
        out.append(Path(env))
    out += [_PACKAGE_DIR / _LIB_NAME, _PACKAGE_DIR.parent / _LIB_NAME]
    out += [_REPO_DIR / d / _LIB_NAME for d in ("build", "build-dev")]  # setup.sh, scripts/device_run.sh
    return out


def load() -> ctypes.CDLL:
    """The loaded library (loaded once per process)."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    env = os.environ.get("SIGJIT_LIBRARY")
    if env and not Path(env).is_file():
        # An explicit setting that is wrong must not silently fall back to another build.
        raise ImportError(f"SIGJIT_LIBRARY={env}: no such file; point it at libsigjit.so (built by `cmake --build build`)")
    tried = []
    for path in candidate_paths():
        if not path.is_file():
            tried.append(str(path))
            continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise ImportError(f"{path}: cannot load sigjit's shared library: {e}") from e
        _declare(lib)
        _lib, _lib_path = lib, str(path)
        _check_struct_size(lib)
        return lib
    raise ImportError("libsigjit.so not found; build it (`cmake --build build`, target sigjit_shared) and set "
                      "SIGJIT_LIBRARY=/path/to/libsigjit.so. Looked in: " + ", ".join(tried))


def library_path() -> str:
    load()
    return _lib_path or ""


def _declare(lib: ctypes.CDLL) -> None:
    args_p, grads_p = ctypes.POINTER(AttentionArgs), ctypes.POINTER(Gradients)
    lib.sigjit_attention_args_default.restype = AttentionArgs
    lib.sigjit_attention_args_default.argtypes = []
    lib.sigjit_validate.restype = ctypes.c_int
    lib.sigjit_validate.argtypes = [args_p]
    lib.sigjit_forward.restype = ctypes.c_int
    lib.sigjit_forward.argtypes = [args_p, ctypes.c_void_p]
    lib.sigjit_forward_options_default.restype = ForwardOptions
    lib.sigjit_forward_options_default.argtypes = []
    lib.sigjit_forward_ex.restype = ctypes.c_int
    lib.sigjit_forward_ex.argtypes = [args_p, ctypes.POINTER(ForwardOptions), ctypes.c_void_p]
    lib.sigjit_forward_workspace_size.restype = ctypes.c_int
    lib.sigjit_forward_workspace_size.argtypes = [args_p, ctypes.POINTER(ctypes.c_size_t)]
    lib.sigjit_forward_workspace_size_ex.restype = ctypes.c_int
    lib.sigjit_forward_workspace_size_ex.argtypes = [args_p, ctypes.POINTER(ForwardOptions), ctypes.POINTER(ctypes.c_size_t)]
    lib.sigjit_backward.restype = ctypes.c_int
    lib.sigjit_backward.argtypes = [args_p, grads_p, ctypes.c_void_p]
    lib.sigjit_backward_options_default.restype = BackwardOptions
    lib.sigjit_backward_options_default.argtypes = []
    lib.sigjit_backward_ex.restype = ctypes.c_int
    lib.sigjit_backward_ex.argtypes = [args_p, grads_p, ctypes.POINTER(BackwardOptions), ctypes.c_void_p]
    lib.sigjit_backward_workspace_size.restype = ctypes.c_int
    lib.sigjit_backward_workspace_size.argtypes = [args_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_size_t)]
    lib.sigjit_prepare_options_default.restype = PrepareOptions
    lib.sigjit_prepare_options_default.argtypes = []
    lib.sigjit_prepare.restype = ctypes.c_int
    lib.sigjit_prepare.argtypes = [args_p, ctypes.POINTER(PrepareOptions)]
    lib.sigjit_last_error.restype = ctypes.c_char_p
    lib.sigjit_last_error.argtypes = []
    lib.sigjit_version.restype = ctypes.c_char_p
    lib.sigjit_version.argtypes = []


def _check_struct_size(lib: ctypes.CDLL) -> None:
    for name, size, mirror in (("sigjit_attention_args", lib.sigjit_attention_args_default().struct_size, AttentionArgs),
                               ("sigjit_backward_options", lib.sigjit_backward_options_default().struct_size, BackwardOptions),
                               ("sigjit_forward_options", lib.sigjit_forward_options_default().struct_size, ForwardOptions),
                               ("sigjit_prepare_options", lib.sigjit_prepare_options_default().struct_size, PrepareOptions)):
        if size != ctypes.sizeof(mirror):
            raise ImportError(f"{_lib_path}: {name} is {size} bytes in the library but {ctypes.sizeof(mirror)} in "
                              "sigjit/_lib.py; the Python package and libsigjit.so come from different sigjit versions")


def _check(status: int, what: str) -> None:
    if status == OK:
        return
    message = load().sigjit_last_error().decode("utf-8", "replace")
    raise _ERRORS.get(status, SigjitError)(f"{what}: {message}" if what else message, status)


# ---- entry points -------------------------------------------------------------------------------
def default_args() -> AttentionArgs:
    """sigjit_attention_args_default(): struct_size and the library's defaults filled in."""
    return load().sigjit_attention_args_default()


def validate(args: AttentionArgs) -> None:
    """Host-side checks only (no GPU needed); raises InvalidArgumentError naming the argument."""
    _check(load().sigjit_validate(ctypes.byref(args)), "")


def _forward_options(fp8: bool, workspace: int = 0, workspace_bytes: int = 0) -> ForwardOptions:
    o = load().sigjit_forward_options_default()
    o.fp8, o.workspace, o.workspace_bytes = int(fp8), workspace or None, workspace_bytes
    return o


def forward(args: AttentionArgs, stream: int = 0, *, fp8: bool = False, workspace: int = 0, workspace_bytes: int = 0) -> None:
    """Launches the forward on `stream` (a cudaStream_t as an int; 0 = legacy default stream).
    fp8: bf16 q, k and v quantized to e4m3 in the library (one factor per sequence and key/value
    head) for the FP8 forward. workspace: for the FP8 forward, a device pointer of at least
    forward_workspace_size(args, fp8) bytes (16-byte aligned); 0 = sigjit manages one per context
    and stream."""
    o = _forward_options(fp8, workspace, workspace_bytes)
    _check(load().sigjit_forward_ex(ctypes.byref(args), ctypes.byref(o), ctypes.c_void_p(stream or None)), "")


def forward_workspace_size(args: AttentionArgs, fp8: bool = False) -> int:
    """Bytes of workspace forward(args, fp8=fp8) needs (the FP8 forward's V^T, with fp8 also the
    quantized copies; 0 for 16-bit); validates args."""
    n = ctypes.c_size_t(0)
    o = _forward_options(fp8)
    _check(load().sigjit_forward_workspace_size_ex(ctypes.byref(args), ctypes.byref(o), ctypes.byref(n)), "")
    return n.value


def backward(args: AttentionArgs, grads: Gradients, stream: int = 0, *, deterministic: bool = False, workspace: int = 0,
             workspace_bytes: int = 0) -> None:
    """Launches the backward on `stream`: by default the fused kernel (dQ atomics into an fp32
    workspace) and the dQ convert kernel; deterministic=True: the two kernels without atomics
    (bitwise reproducible). workspace: a device pointer of at least workspace_size() bytes
    (16-byte aligned), 0 = sigjit manages one per context and stream."""
    o = load().sigjit_backward_options_default()
    o.deterministic, o.workspace, o.workspace_bytes = int(deterministic), workspace or None, workspace_bytes
    _check(load().sigjit_backward_ex(ctypes.byref(args), ctypes.byref(grads), ctypes.byref(o), ctypes.c_void_p(stream or None)), "")


def prepare(args: AttentionArgs, *, forward: bool = True, backward: bool = False, deterministic: bool = False, fp8: bool = False) -> None:
    """Loads (kernel cache or NVRTC) every kernel forward(args, fp8=fp8) and, with backward=True,
    backward(args, ..., deterministic=deterministic) would launch, launching nothing."""
    o = load().sigjit_prepare_options_default()
    o.forward, o.backward, o.deterministic, o.fp8 = int(forward), int(backward), int(deterministic), int(fp8)
    _check(load().sigjit_prepare(ctypes.byref(args), ctypes.byref(o)), "")


def workspace_size(args: AttentionArgs, deterministic: bool = False) -> int:
    """Bytes of dQ workspace backward() needs for args (0 when deterministic); validates args."""
    n = ctypes.c_size_t(0)
    _check(load().sigjit_backward_workspace_size(ctypes.byref(args), int(deterministic), ctypes.byref(n)), "")
    return n.value


def version() -> str:
    return load().sigjit_version().decode()


# ---- building argument structs ----------------------------------------------------------------
class TensorRef(NamedTuple):
    """A [B, L, H, D] (varlen: [total, H, D]) tensor as the C API sees it: its first element's
    address and its (batch, token, head) element strides, already mapped by c_strides()."""

    ptr: int
    strides: tuple[int, int, int]


def c_strides(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, int, int]:
    """The C API's (batch, token, head) strides of a [B, L, H, D] or [T, H, D] tensor.

    Zero means "contiguous" to the C API, so a real zero stride (an expanded tensor) must not
    reach it: callers copy such tensors first (needs_copy). A dimension of size 1 never steps,
    and PyTorch reports arbitrary strides for it, so it is passed as 0 (the contiguous value).
    """
    if len(shape) not in (3, 4) or len(strides) != len(shape):
        raise ValueError(f"expected a [B, L, H, D] or [T, H, D] shape with matching strides, got shape {tuple(shape)} strides {tuple(strides)}")
    dims = list(zip(shape[:-1], strides[:-1]))
    if len(dims) == 2:
        dims.insert(0, (1, 0))  # varlen: no batch dimension
    return tuple(0 if n == 1 else int(s) for n, s in dims)  # type: ignore[return-value]


def needs_copy(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """True when the C API cannot take the layout as it is: last dim not unit-stride, a
    broadcast (stride 0) dimension of size > 1, or a stride that is not a multiple of 8
    elements (sigjit moves 16-byte vectors)."""
    if shape[-1] > 1 and strides[-1] != 1:
        return True
    return any(n > 1 and (s == 0 or s % 8 != 0) for n, s in zip(shape[:-1], strides[:-1]))


_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_PTR = (0, (1 << 64) - 1)


def _checked(name: str, value, bounds) -> int:
    """`value` as an int inside `bounds` (ctypes would silently wrap anything outside: 2**32 + 2 as
    an int32 field becomes 2); bool and int only (a float or string is an error naming `name`)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if not (hasattr(value, "__index__") and not isinstance(value, (float, str, bytes))):
            raise InvalidArgumentError(f"{name}={value!r}: must be an integer in [{bounds[0]}, {bounds[1]}]", ERROR_INVALID_ARGUMENT)
        value = value.__index__()
    if not bounds[0] <= value <= bounds[1]:
        raise InvalidArgumentError(f"{name}={value}: out of range, must be in [{bounds[0]}, {bounds[1]}]", ERROR_INVALID_ARGUMENT)
    return value


def _flag(name: str, value) -> int:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return int(value)
    raise InvalidArgumentError(f"{name}={value!r}: must be True or False", ERROR_INVALID_ARGUMENT)


def _strides(name: str, strides) -> "Strides":
    values = tuple(strides)
    if len(values) != 3:
        raise InvalidArgumentError(f"{name}.strides={values!r}: must be (batch, token, head)", ERROR_INVALID_ARGUMENT)
    return Strides(*(_checked(f"{name}.strides[{i}]", v, _INT64) for i, v in enumerate(values)))


def _ptr(name: str, value) -> Optional[int]:
    return None if value is None else (_checked(name, value, _PTR) or None)


def make_args(*, dtype: str, layout: str, batch: int, seqlen_q: int, seqlen_k: int, heads_q: int, heads_kv: int, head_dim: int,
              q: TensorRef, k: TensorRef, v: TensorRef, o: Optional[TensorRef], total_q: int = 0, total_k: int = 0,
              lens_q: int = 0, lens_k: int = 0, causal: bool = False, scale: Optional[float] = None,
              sigmoid_bias: Optional[float] = None, score_bias: int = 0, score_bias_stride: int = 0,
              exact_sigmoid: bool = False, validate_lengths: bool = False, causal_align: str = "bottom_right",
              descale: tuple = (0, 0, 0), descale_strides: tuple = (0, 0)) -> AttentionArgs:
    """One sigjit_attention_args from plain values. lens_q/lens_k are device pointers to
    seq_lens (padded) or cu_seqlens (varlen); sigmoid_bias None = the library's -log(n) default;
    causal_align "bottom_right" (query i sees keys j <= i + len_k - len_q) or "top_left" (j <= i,
    TritonSigmoid's rule); descale: device pointers (0: none) to the fp8 dtype's q, k and v descale
    factors, read at [b * descale_strides[0] + h_kv * descale_strides[1]]."""
    if dtype not in DTYPES:
        raise InvalidArgumentError(f"dtype={dtype!r}: must be one of {', '.join(DTYPES)}", ERROR_INVALID_ARGUMENT)
    if layout not in LAYOUTS:
        raise InvalidArgumentError(f"layout={layout!r}: must be one of {', '.join(LAYOUTS)}", ERROR_INVALID_ARGUMENT)
    a = default_args()
    a.dtype, a.layout = DTYPES[dtype], LAYOUTS[layout]
    # Every int is range-checked before ctypes stores it (ctypes wraps silently).
    ints = dict(batch=batch, seqlen_q=seqlen_q, seqlen_k=seqlen_k, total_q=total_q, total_k=total_k, heads_q=heads_q,
                heads_kv=heads_kv, head_dim=head_dim)
    for name, value in ints.items():
        setattr(a, name, _checked(name, value, _INT32))
    a.q, a.k, a.v = _ptr("q.ptr", q.ptr), _ptr("k.ptr", k.ptr), _ptr("v.ptr", v.ptr)
    a.o = _ptr("o.ptr", o.ptr) if o is not None else None
    a.q_strides, a.k_strides, a.v_strides = _strides("q", q.strides), _strides("k", k.strides), _strides("v", v.strides)
    if o is not None:
        a.o_strides = _strides("o", o.strides)
    lens_q, lens_k = _checked("lens_q", lens_q, _PTR), _checked("lens_k", lens_k, _PTR)
    lq, lk = (ctypes.cast(ctypes.c_void_p(p), _i32p) if p else None for p in (lens_q, lens_k))
    if layout == "padded":
        a.seq_lens_q, a.seq_lens_k = lq, lk
    elif layout == "varlen":
        a.cu_seqlens_q, a.cu_seqlens_k = lq, lk
    a.validate_lengths = _flag("validate_lengths", validate_lengths)
    a.causal = _flag("causal", causal)
    if causal_align not in CAUSAL_ALIGNS:
        raise InvalidArgumentError(f"causal_align={causal_align!r}: must be one of {', '.join(CAUSAL_ALIGNS)}", ERROR_INVALID_ARGUMENT)
    a.causal_align = CAUSAL_ALIGNS[causal_align]
    if scale is not None:
        a.has_scale, a.scale = 1, float(scale)
    if sigmoid_bias is not None:
        a.bias_mode, a.bias = BIAS_SCALAR, float(sigmoid_bias)
    if _checked("score_bias", score_bias, _PTR):
        a.score_bias = ctypes.cast(ctypes.c_void_p(score_bias), ctypes.POINTER(ctypes.c_float))
        a.score_bias_stride = _checked("score_bias_stride", score_bias_stride, _INT64)
    a.sigmoid = SIGMOID_EXACT if exact_sigmoid else SIGMOID_FAST
    for name, p in zip(("q_descale", "k_descale", "v_descale"), descale):
        if _checked(name, p, _PTR):
            setattr(a, name, ctypes.cast(ctypes.c_void_p(p), ctypes.POINTER(ctypes.c_float)))
    a.descale_stride_batch = _checked("descale_stride_batch", descale_strides[0], _INT64)
    a.descale_stride_head = _checked("descale_stride_head", descale_strides[1], _INT64)
    return a


def make_gradients(dout: TensorRef, dq: TensorRef, dk: TensorRef, dv: TensorRef) -> Gradients:
    g = Gradients()
    g.dout, g.dq, g.dk, g.dv = _ptr("dout.ptr", dout.ptr), _ptr("dq.ptr", dq.ptr), _ptr("dk.ptr", dk.ptr), _ptr("dv.ptr", dv.ptr)
    g.dout_strides, g.dq_strides = _strides("dout", dout.strides), _strides("dq", dq.strides)
    g.dk_strides, g.dv_strides = _strides("dk", dk.strides), _strides("dv", dv.strides)
    return g
