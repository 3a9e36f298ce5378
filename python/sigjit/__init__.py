"""sigjit: JIT-compiled sigmoid attention for NVIDIA GPUs, from Python.

    O = sigmoid(scale * Q K^T + bias + s_k) V

`sigjit.torch` is the PyTorch binding (sigmoid_attention, sigmoid_attention_padded,
sigmoid_attention_varlen; differentiable, torch.compile-safe custom ops). This top-level module
needs neither torch nor a GPU: it loads libsigjit.so lazily (on first use, not on import) through
ctypes (`sigjit._lib`), so importing it costs nothing and fails nowhere. See python/README.md.
"""
from ._lib import (CompileError, CudaError, InvalidArgumentError, SigjitError, library_path, load,  # noqa: F401
                   validate, version)

__all__ = ["SigjitError", "InvalidArgumentError", "CudaError", "CompileError", "load", "library_path", "validate", "version"]
