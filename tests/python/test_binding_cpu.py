"""CPU tests of the Python package (no GPU, no torch needed): CTest label cpu.

What: the ctypes struct mirrors against the C header (offsets printed by the C compiler through
tests/python/abi_dump.cpp, $SIGJIT_ABI_DUMP), the library's defaults round trip, argument
validation through sigjit_validate with fake aligned non-null pointers (validation never touches
the device), the loader's error when SIGJIT_LIBRARY is wrong, and sigjit.torch's ImportError
without torch. Why: the binding passes raw pointers through a hand-written struct mirror; a
wrong offset would be silent memory corruption on the GPU, so it is checked field by field.
Cost: well under a second.

    PYTHONPATH=python SIGJIT_LIBRARY=build/libsigjit.so SIGJIT_ABI_DUMP=build/tests/sigjit_abi_dump \
        python3 -m unittest tests/python/test_binding_cpu.py -v
"""
import ctypes
import importlib.util
import os
import subprocess
import sys
import unittest

import sigjit
from sigjit import _lib

FAKE = 1 << 20  # 16-byte aligned, non-null; never dereferenced by validation


def gpu_count():
    """CUDA devices the driver reports (0 without a driver)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    n = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(n)) != 0:
        return 0
    return n.value


def ref(ptr=FAKE, strides=(0, 0, 0)):
    return _lib.TensorRef(ptr, strides)


def dense_args(**over):
    kw = dict(dtype="bf16", layout="dense", batch=2, seqlen_q=128, seqlen_k=128, heads_q=8, heads_kv=8, head_dim=64, q=ref(), k=ref(),
              v=ref(), o=ref())
    kw.update(over)
    return _lib.make_args(**kw)


class StructLayout(unittest.TestCase):
    """ctypes mirrors == the C header, field by field."""

    @classmethod
    def setUpClass(cls):
        path = os.environ.get("SIGJIT_ABI_DUMP")
        if not path or not os.path.isfile(path):
            raise unittest.SkipTest("SIGJIT_ABI_DUMP is not set to the built sigjit_abi_dump (CTest sets it)")
        out = subprocess.run([path], check=True, capture_output=True, text=True).stdout
        cls.c = {name: int(value) for name, value in (line.split() for line in out.splitlines())}

    def check_struct(self, c_name, py_type):
        self.assertEqual(ctypes.sizeof(py_type), self.c[f"{c_name}.sizeof"], f"sizeof({c_name})")
        c_fields = {k.split(".", 1)[1] for k in self.c if k.startswith(c_name + ".") and not k.endswith(".sizeof")}
        py_fields = [name for name, _ in py_type._fields_]
        self.assertEqual(set(py_fields), c_fields, f"{c_name}: field names")
        for name in py_fields:
            self.assertEqual(getattr(py_type, name).offset, self.c[f"{c_name}.{name}"], f"offsetof({c_name}, {name})")

    def test_strides(self):
        self.check_struct("sigjit_strides", _lib.Strides)

    def test_attention_args(self):
        self.check_struct("sigjit_attention_args", _lib.AttentionArgs)

    def test_gradients(self):
        self.check_struct("sigjit_gradients", _lib.Gradients)

    def test_backward_options(self):
        self.check_struct("sigjit_backward_options", _lib.BackwardOptions)

    def test_forward_options(self):
        self.check_struct("sigjit_forward_options", _lib.ForwardOptions)

    def test_prepare_options(self):
        self.check_struct("sigjit_prepare_options", _lib.PrepareOptions)

    def test_enum_size(self):
        self.assertEqual(ctypes.sizeof(ctypes.c_int), self.c["enum.sizeof"])


class Library(unittest.TestCase):
    def test_version(self):
        self.assertIn("sigjit", sigjit.version())
        self.assertTrue(sigjit.library_path().endswith(".so") or ".so." in sigjit.library_path())

    def test_defaults_round_trip(self):
        a = _lib.default_args()
        self.assertEqual(a.struct_size, ctypes.sizeof(_lib.AttentionArgs))
        self.assertEqual((a.dtype, a.layout, a.bias_mode, a.sigmoid), (_lib.BF16, _lib.DENSE, _lib.BIAS_LOG_N, _lib.SIGMOID_FAST))
        self.assertEqual((a.validate_lengths, a.causal, a.has_scale, a.heads_kv), (1, 0, 0, 0))
        self.assertEqual((a.causal_align, a.reserved0), (_lib.CAUSAL_BOTTOM_RIGHT, 0))
        self.assertFalse(a.q or a.k or a.v or a.o or a.seq_lens_q or a.cu_seqlens_k or a.score_bias)

    def test_make_args_maps_options(self):
        a = dense_args(causal=True, scale=0.5, sigmoid_bias=-3.0, exact_sigmoid=True, dtype="fp16", validate_lengths=True)
        self.assertEqual((a.causal, a.has_scale, a.scale, a.bias_mode, a.bias), (1, 1, 0.5, _lib.BIAS_SCALAR, -3.0))
        self.assertEqual((a.sigmoid, a.dtype, a.validate_lengths), (_lib.SIGMOID_EXACT, _lib.FP16, 1))
        a = dense_args(layout="padded", lens_q=FAKE, lens_k=FAKE + 64)
        self.assertEqual(ctypes.cast(a.seq_lens_k, ctypes.c_void_p).value, FAKE + 64)
        self.assertFalse(a.cu_seqlens_q)
        self.assertEqual(dense_args(causal=True).causal_align, _lib.CAUSAL_BOTTOM_RIGHT)
        self.assertEqual(dense_args(causal=True, causal_align="top_left").causal_align, _lib.CAUSAL_TOP_LEFT)

    def test_make_args_rejects_unknown_causal_align(self):
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"causal_align='top-right': must be one of bottom_right, top_left"):
            dense_args(causal=True, causal_align="top-right")

    def test_valid_args_pass(self):
        _lib.validate(dense_args())
        _lib.validate(dense_args(heads_kv=2, causal=True, score_bias=FAKE, score_bias_stride=128))
        _lib.validate(dense_args(causal=True, causal_align="top_left"))
        _lib.validate(dense_args(layout="padded", lens_q=FAKE, lens_k=FAKE))
        _lib.validate(dense_args(layout="varlen", total_q=300, total_k=300, lens_q=FAKE, lens_k=FAKE))

    def test_previous_struct_size_accepted(self):
        # A caller built against sigjit.h before causal_align: its struct ends there (rounded up
        # to the struct's 8-byte alignment), and the library reads nothing past it.
        a = dense_args(causal=True)
        a.struct_size = (_lib.AttentionArgs.causal_align.offset + 7) // 8 * 8
        self.assertLess(a.struct_size, ctypes.sizeof(_lib.AttentionArgs))
        a.causal_align, a.reserved0 = 7, 9  # not read
        _lib.validate(a)

    def test_struct_size_mismatch(self):
        a = dense_args()
        a.struct_size -= 4
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, "struct_size"):
            _lib.validate(a)


class Validation(unittest.TestCase):
    """Each bad argument raises InvalidArgumentError (a ValueError) naming the argument."""

    def assert_rejects(self, pattern, args):
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, pattern) as cm:
            _lib.validate(args)
        self.assertIsInstance(cm.exception, ValueError)
        self.assertEqual(cm.exception.status, _lib.ERROR_INVALID_ARGUMENT)

    def test_bad_head_dim(self):
        self.assert_rejects(r"head_dim=80: unsupported; supported head dims are 32, 64, 96, 128, 256", dense_args(head_dim=80))

    def test_misaligned_pointer(self):
        self.assert_rejects(r"^k: pointer .* is not 16-byte aligned", dense_args(k=ref(FAKE + 2)))

    def test_null_pointer(self):
        self.assert_rejects(r"^o: null pointer", dense_args(o=ref(0)))

    def test_gqa_mismatch(self):
        self.assert_rejects(r"heads_kv=3: heads_q=8 must be a positive multiple of heads_kv", dense_args(heads_kv=3))

    def test_bad_stride(self):
        self.assert_rejects(r"v_strides.token=100: strides must be multiples of 8", dense_args(v=ref(strides=(0, 100, 0))))

    def test_bad_causal_align(self):
        a = dense_args(causal=True)
        a.causal_align = 5
        self.assert_rejects(r"^causal_align=5: must be bottom_right \(0\) or top_left \(1\)", a)

    def test_bad_scale(self):
        self.assert_rejects(r"scale=inf: must be finite", dense_args(scale=float("inf")))

    def test_padded_needs_lengths(self):
        self.assert_rejects(r"seq_lens_q/seq_lens_k: the padded layout needs both", dense_args(layout="padded", lens_q=FAKE))

    def test_varlen_needs_cu_seqlens(self):
        self.assert_rejects(r"cu_seqlens_q/cu_seqlens_k: the varlen layout needs both", dense_args(layout="varlen", total_q=10, total_k=10))

    def test_host_lengths_checked(self):
        a = dense_args(layout="padded", lens_q=FAKE, lens_k=FAKE)
        lens = (ctypes.c_int32 * 2)(128, 129)
        a.host_seq_lens_q = a.host_seq_lens_k = ctypes.cast(lens, ctypes.POINTER(ctypes.c_int32))
        self.assert_rejects(r"seq_lens_q\[1\]=129: must be in \[0, seqlen_q=128\]", a)

    def test_python_side_names(self):
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, "dtype='fp32': must be one of bf16, fp16"):
            dense_args(dtype="fp32")

    def test_out_of_range_ints_are_refused_not_wrapped(self):
        # F17: ctypes would wrap each of these to a small valid value (2**32 + 2 -> 2) that passes validation.
        cases = [("batch", dict(batch=2**32 + 2)), ("seqlen_q", dict(seqlen_q=2**32 + 16)), ("head_dim", dict(head_dim=2**32 + 64)),
                 ("heads_q", dict(heads_q=-(2**31) - 1)), ("q.strides", dict(q=ref(strides=(0, 2**64 + 128, 0)))),
                 ("k.ptr", dict(k=ref(2**64 + 16))), ("lens_q", dict(layout="padded", lens_q=2**64, lens_k=FAKE)),
                 ("score_bias", dict(score_bias=-16))]
        for name, kwargs in cases:
            with self.subTest(name=name), self.assertRaisesRegex(sigjit.InvalidArgumentError, rf"^{name}.*out of range, must be in \["):
                dense_args(**kwargs)
        for name, kwargs in [("causal", dict(causal="yes")), ("validate_lengths", dict(validate_lengths=2)),
                             ("batch", dict(batch=2.0)), ("seqlen_k", dict(seqlen_k="128"))]:
            with self.subTest(name=name), self.assertRaisesRegex(sigjit.InvalidArgumentError, rf"^{name}="):
                dense_args(**kwargs)
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"^dq.ptr=.*out of range"):
            _lib.make_gradients(ref(), ref(2**64 + 16), ref(), ref())

    def test_backward_validates_gradients(self):
        # Rejected before anything touches a device, so this needs no GPU.
        grads = _lib.make_gradients(ref(), ref(), ref(FAKE + 4), ref())
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"^dk: pointer .* is not 16-byte aligned"):
            _lib.backward(dense_args(o=None), grads)

    def test_backward_workspace(self):
        # 2 sequences x 128 rows x 8 heads x 64 dims x 4 bytes, then the persistent backward's
        # counters (16 bytes, and two arrays of one int per sequence, each rounded up to 16); in
        # deterministic mode (the ordered dQ reduction at hd 64) the values plus one int per
        # (sequence, head, 64 rows).
        self.assertEqual(_lib.workspace_size(dense_args(o=None)), 2 * 128 * 8 * 64 * 4 + 16 + 16 + 16)
        self.assertEqual(_lib.workspace_size(dense_args(o=None), deterministic=True), 2 * 128 * 8 * 64 * 4 + 2 * 8 * 2 * 4)
        grads = _lib.make_gradients(ref(), ref(), ref(), ref())
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"^workspace: workspace_bytes=64 is too small; this call needs 524336 B"):
            _lib.backward(dense_args(o=None), grads, workspace=FAKE, workspace_bytes=64)
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"^workspace: pointer .* is not 16-byte aligned"):
            _lib.backward(dense_args(o=None), grads, workspace=FAKE + 4, workspace_bytes=1 << 20)

    def test_forward_workspace_with_fp8(self):
        # fp8=True (the library quantizes bf16 q, k, v): the workspace holds one e4m3 byte per
        # element of each, the factors and V^T on top; 16-bit calls need none; fp16 is refused.
        self.assertEqual(_lib.forward_workspace_size(dense_args()), 0)
        elements = 3 * 2 * 128 * 8 * 64
        self.assertGreaterEqual(_lib.forward_workspace_size(dense_args(), fp8=True), elements + 2 * 128 * 8 * 64)
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"options\.fp8"):
            _lib.forward_workspace_size(dense_args(dtype="fp16"), fp8=True)
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"options\.fp8"):
            _lib.forward(dense_args(head_dim=96), fp8=True)

    def test_forward_fails_cleanly(self):
        # No GPU: a CudaError (no driver/device); on a GPU machine the fake pointers are rejected
        # as not device memory. Either way an exception with a message, never a crash.
        with self.assertRaises(sigjit.SigjitError) as cm:
            _lib.forward(dense_args())
        self.assertTrue(str(cm.exception))


    def test_prepare_validates_then_needs_a_device(self):
        # Arguments are validated before any device access: a bad head_dim is named here...
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"head_dim=80"):
            _lib.prepare(dense_args(head_dim=80), backward=True)
        # ...and good ones reach the device: without a GPU a CudaError, never a crash; with one,
        # the kernels load (prepare reads no tensor, so the fake pointers are never touched).
        if gpu_count() == 0:
            with self.assertRaises(sigjit.CudaError):
                _lib.prepare(dense_args(), backward=True)
        else:
            _lib.prepare(dense_args(), backward=True)


class Strides(unittest.TestCase):
    def test_contiguous(self):
        self.assertEqual(_lib.c_strides((2, 16, 4, 64), (4096, 256, 64, 1)), (4096, 256, 64))
        self.assertEqual(_lib.c_strides((100, 4, 64), (256, 64, 1)), (0, 256, 64))  # varlen: no batch

    def test_size_one_dims_are_contiguous(self):
        # PyTorch reports arbitrary strides for size-1 dims; the C API must not see them.
        self.assertEqual(_lib.c_strides((1, 16, 1, 64), (7, 64, 3, 1)), (0, 64, 0))

    def test_needs_copy(self):
        self.assertFalse(_lib.needs_copy((2, 16, 4, 64), (4096, 256, 64, 1)))
        self.assertFalse(_lib.needs_copy((2, 16, 4, 64), (3 * 4096, 3 * 256, 64, 1)))  # a slice of packed QKV
        self.assertTrue(_lib.needs_copy((2, 16, 4, 64), (0, 0, 0, 0)))  # expanded, e.g. the grad of out.sum()
        self.assertTrue(_lib.needs_copy((2, 16, 4, 64), (4096, 1, 16, 256)))  # last dim not contiguous
        self.assertTrue(_lib.needs_copy((2, 16, 4, 64), (4096, 256, 0, 1)))  # heads broadcast
        self.assertFalse(_lib.needs_copy((2, 16, 1, 64), (1024, 64, 0, 1)))  # size-1 broadcast dim is fine
        self.assertTrue(_lib.needs_copy((2, 16, 4, 64), (4096, 260, 65, 1)))  # strides not multiples of 8


def run_python(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full)


class Loader(unittest.TestCase):
    def test_wrong_sigjit_library(self):
        r = run_python("import sigjit; sigjit.version()", SIGJIT_LIBRARY="/nonexistent/libsigjit.so")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("SIGJIT_LIBRARY=/nonexistent/libsigjit.so: no such file", r.stderr)

    def test_import_is_lazy(self):
        # Importing the package must not load the library (so it never fails at import time).
        r = run_python("import sigjit, sigjit._lib as l; assert l._lib is None", SIGJIT_LIBRARY="/nonexistent/libsigjit.so")
        self.assertEqual(r.returncode, 0, r.stderr)


class TorchImport(unittest.TestCase):
    def test_import_without_torch(self):
        if importlib.util.find_spec("torch") is not None:
            self.skipTest("torch is installed here; the missing-torch error is tested only where torch is absent (CI)")
        with self.assertRaisesRegex(ImportError, r"sigjit's PyTorch functions need PyTorch"):
            import sigjit.torch  # noqa: F401

    def test_argument_errors_with_torch(self):
        if importlib.util.find_spec("torch") is None:
            self.skipTest("torch is not installed (CI): the binding's tensor checks run on the device (tests/python/test_torch_gpu.py)")
        import torch
        from sigjit.torch import sigmoid_attention, sigmoid_attention_varlen
        q = torch.zeros(1, 16, 2, 64, dtype=torch.bfloat16)
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"query.device=cpu: sigjit runs on CUDA devices"):
            sigmoid_attention(q, q, q)
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"query.dtype=torch.float32: .*cast with query.to\(torch.bfloat16\)"):
            sigmoid_attention(q.float(), q, q)
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"query: expected 4 dimensions"):
            sigmoid_attention(q[0], q, q)
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, r"q: expected 3 dimensions"):
            sigmoid_attention_varlen(q, q, q, None, None, 16, 16)

    def test_fp8_quantization_maps_each_heads_amax_to_448(self):
        # The on-the-fly quantization of fp8=True and quantize_fp8 (plain tensor math, so CPU
        # tensors do): each head's (or key/value head group's) largest magnitude becomes e4m3's
        # largest normal, descale = amax / 448, and padding never enters a factor.
        if importlib.util.find_spec("torch") is None:
            self.skipTest("torch is not installed (CI)")
        import torch
        if not hasattr(torch, "float8_e4m3fn"):
            self.skipTest("this PyTorch has no float8_e4m3fn")
        from sigjit._torch_ops import _quantize_per_kv_head, quantize_fp8
        gen = torch.Generator().manual_seed(7)
        x = torch.randn(2, 33, 4, 64, generator=gen) * torch.tensor([1.0, 3.0, 0.1, 20.0]).view(1, 1, 4, 1)
        codes, descale = quantize_fp8(x)
        self.assertEqual(codes.dtype, torch.float8_e4m3fn)
        self.assertEqual(tuple(descale.shape), (4,))
        amax = x.abs().amax(dim=(0, 1, 3))
        torch.testing.assert_close(descale, amax / 448)
        self.assertTrue(torch.equal(codes.float().abs().amax(dim=(0, 1, 3)), torch.full((4,), 448.0)))
        err = ((codes.float() * descale.view(1, 1, 4, 1) - x).norm() / x.norm()).item()
        self.assertLess(err, 0.05, "e4m3's rounding is about 3.6 % per element")
        # Two key/value heads of two query heads each; padding (the last 10 rows of sequence 1) is
        # NaN and huge values, and must not reach the factors.
        valid = torch.ones(2, 33, dtype=torch.bool)
        valid[1, 23:] = False
        dirty = x.clone()
        dirty[1, 23:] = float("nan")
        dirty[1, 30:] = 1e30
        codes, descale = _quantize_per_kv_head(dirty, 2, valid)
        self.assertEqual(tuple(descale.shape), (2,))
        groups = torch.where(valid[..., None, None], x, 0.0).unflatten(-2, (2, 2))
        torch.testing.assert_close(descale, groups.abs().amax(dim=(0, 1, 3, 4)) / 448)
        self.assertTrue(torch.isfinite(codes[valid].float()).all())
        zeros, ones = _quantize_per_kv_head(x[:, :0], 2, None)
        self.assertEqual(zeros.shape[1], 0)
        self.assertTrue(torch.equal(ones, torch.ones(2)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
