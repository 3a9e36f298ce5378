"""sigjit: JIT-compiled sigmoid attention for NVIDIA GPUs, from Python.

    O = sigmoid(scale * Q K^T + bias + s_k) V

`sigjit.torch` is the PyTorch binding: TritonSigmoid's sigmoid_attention and
sigmoid_attention_padded (same signatures and meaning), FlashAttention's varlen form,
sigmoid_attention_ref and prepare; differentiable, torch.compile-able. This top-level module
needs neither torch nor a GPU: it loads libsigjit.so lazily (on first use, not on import) through
ctypes (`sigjit._lib`), so importing it costs nothing and fails nowhere. See python/README.md.
"""
try:  # written into the wheel by CMake from project(VERSION); loads nothing
    from ._version import __version__
except ImportError:  # a source checkout (PYTHONPATH=python): read CMakeLists.txt's project(VERSION)
    import re as _re
    from pathlib import Path as _Path
    try:
        _m = _re.search(r"project\(sigjit VERSION ([0-9][0-9.]*)", (_Path(__file__).resolve().parents[2] / "CMakeLists.txt").read_text())
    except OSError:
        _m = None
    __version__ = _m.group(1) if _m else "0+unknown"
    del _re, _Path, _m

from ._lib import (CompileError, CudaError, InvalidArgumentError, SigjitError, library_path, load,  # noqa: F401
                   validate, version)

__all__ = ["__version__", "SigjitError", "InvalidArgumentError", "CudaError", "CompileError", "load", "library_path", "validate", "version"]
