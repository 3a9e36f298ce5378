"""sigjit's PyTorch functions take TritonSigmoid 0.1.2's calls unchanged (no torch, no GPU needed).

What: (1) the signatures of sigmoid_attention, sigmoid_attention_padded and sigmoid_attention_ref
against TritonSigmoid's own source, read with ast from the installed triton_sigmoid package (its
__init__ needs torch and a GPU, so it is never imported: CI installs it with --no-deps); (2) where
each argument of a TritonSigmoid-style call lands, positional and keyword, through a recording
stand-in for the tensor backend (so a swapped seq_lens_k/seq_lens_q would fail here); (3) the
scalar options' errors, named before any tensor is touched; (4) TRITON_SIGMOID_ACCURATE.
Runs in the wheel's venv (setup.sh --test) and in CTest against the source tree.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import unittest
from pathlib import Path
from unittest import mock

import sigjit
from sigjit import InvalidArgumentError, _api

TRITON_FILES = {
    "sigmoid_attention": "sigmoid_triton_dense.py",
    "sigmoid_attention_padded": "sigmoid_triton_padded.py",
    "sigmoid_attention_ref": "sigmoid_reference.py",
}


def triton_sigmoid_dir() -> Path | None:
    spec = importlib.util.find_spec("triton_sigmoid")  # locates the package without running it
    return Path(spec.origin).parent if spec and spec.origin else None


def source_params(path: Path, name: str) -> list[tuple[str, str, object]]:
    """(name, kind, default) of a top-level function's parameters, read from source."""
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + [ast.literal_eval(d) for d in args.defaults]
    out = [(a.arg, "positional_or_keyword", d) for a, d in zip(positional, defaults)]
    out += [(a.arg, "keyword_only", inspect.Parameter.empty if d is None else ast.literal_eval(d))
            for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return out


def our_params(fn) -> list[tuple[str, str, object]]:
    return [(p.name, p.kind.name.lower(), p.default) for p in inspect.signature(fn).parameters.values()]


class Signatures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = triton_sigmoid_dir()
        if cls.dir is None:
            raise unittest.SkipTest("triton_sigmoid is not installed; `pip install --no-deps triton-sigmoid==0.1.2` "
                                    "(setup.sh --test does, in the wheel's venv)")

    def test_same_parameters_in_the_same_order(self):
        for name, file in TRITON_FILES.items():
            theirs = source_params(self.dir / file, name)
            ours = our_params(getattr(_api, name))
            with self.subTest(name):
                # Every parameter of theirs, same name, position, kind and default; ours adds
                # keyword-only parameters after them and nothing positional.
                self.assertEqual(ours[:len(theirs)], theirs)
                self.assertTrue(all(kind == "keyword_only" for _, kind, _ in ours[len(theirs):]), ours[len(theirs):])

    def test_sigjit_torch_exports_them(self):
        text = (Path(sigjit.__file__).parent / "torch.py").read_text()
        for name in TRITON_FILES:
            self.assertIn(name, text)


class Recorder:
    """Stands in for sigjit._torch_ops: records what each entry point receives."""

    def __init__(self):
        self.calls = []

    def dense(self, query, key, value, score_mod, opts, descale, quantize):
        self.calls.append(dict(fn="dense", query=query, key=key, value=value, score_mod=score_mod, opts=opts, descale=descale,
                               quantize=quantize))

    def padded(self, query, key, value, seq_lens_k, seq_lens_q, score_mod, opts, descale, quantize):
        self.calls.append(dict(fn="padded", query=query, key=key, value=value, seq_lens_k=seq_lens_k, seq_lens_q=seq_lens_q,
                               score_mod=score_mod, opts=opts, descale=descale, quantize=quantize))

    def varlen(self, q, k, v, cu_q, cu_k, max_q, max_k, score_bias, opts, descale, quantize):
        self.calls.append(dict(fn="varlen", cu_q=cu_q, cu_k=cu_k, max_q=max_q, max_k=max_k, score_bias=score_bias, opts=opts,
                               descale=descale, quantize=quantize))


class Binding(unittest.TestCase):
    def setUp(self):
        self.rec = Recorder()
        patcher = mock.patch.object(_api, "_backend", lambda: self.rec)
        patcher.start()
        self.addCleanup(patcher.stop)
        accurate = mock.patch.object(_api, "ACCURATE_DEFAULT", False)
        accurate.start()
        self.addCleanup(accurate.stop)

    def last(self):
        return self.rec.calls[-1]

    def test_padded_positional_is_triton_order(self):
        _api.sigmoid_attention_padded("Q", "K", "V", "LENS_K", "LENS_Q", True, 0.5, -2.0, "SB")
        c = self.last()
        self.assertEqual((c["query"], c["key"], c["value"]), ("Q", "K", "V"))
        self.assertEqual((c["seq_lens_k"], c["seq_lens_q"]), ("LENS_K", "LENS_Q"))
        self.assertEqual(c["score_mod"], "SB")
        o = c["opts"]
        self.assertEqual((o.causal, o.causal_align, o.scale, o.sigmoid_bias), (True, "top_left", 0.5, -2.0))

    def test_padded_keywords(self):
        _api.sigmoid_attention_padded(query="Q", key="K", value="V", seq_lens_q="LQ", seq_lens_k="LK", is_causal=True, score_mod="SB")
        c = self.last()
        self.assertEqual((c["query"], c["seq_lens_k"], c["seq_lens_q"], c["score_mod"]), ("Q", "LK", "LQ", "SB"))
        self.assertTrue(c["opts"].causal)

    def test_dense_positional_and_keywords(self):
        _api.sigmoid_attention("Q", "K", "V", True, 0.25, -1.5, "SB")
        c = self.last()
        self.assertEqual((c["query"], c["key"], c["value"], c["score_mod"]), ("Q", "K", "V", "SB"))
        self.assertEqual((c["opts"].causal, c["opts"].scale, c["opts"].sigmoid_bias), (True, 0.25, -1.5))
        _api.sigmoid_attention(query="Q", key="K", value="V", is_causal=False)
        self.assertFalse(self.last()["opts"].causal)

    def test_defaults_are_tritons(self):
        _api.sigmoid_attention("Q", "K", "V")
        o = self.last()["opts"]
        self.assertEqual((o.causal, o.scale, o.sigmoid_bias, o.exact_sigmoid), (False, None, None, False))
        self.assertIsNone(self.last()["score_mod"])

    def test_sigjit_spellings_are_aliases(self):
        _api.sigmoid_attention("Q", "K", "V", causal=True, score_bias="SB")
        c = self.last()
        self.assertTrue(c["opts"].causal)
        self.assertEqual(c["score_mod"], "SB")
        _api.sigmoid_attention("Q", "K", "V", is_causal=True, causal=True, score_mod="SB", score_bias="SB")
        self.assertTrue(self.last()["opts"].causal)

    def test_causal_align_opt_in(self):
        _api.sigmoid_attention_padded("Q", "K", "V", is_causal=True, causal_align="bottom_right")
        self.assertEqual(self.last()["opts"].causal_align, "bottom_right")
        _api.sigmoid_attention_varlen("q", "k", "v", "cq", "ck", 8, 8, causal=True)
        self.assertEqual(self.last()["opts"].causal_align, "bottom_right")  # FlashAttention's rule for its form

    def test_fp8_descale_factors_are_flash_attention_3s_keywords(self):
        for call in (lambda **kw: _api.sigmoid_attention("Q", "K", "V", **kw),
                     lambda **kw: _api.sigmoid_attention_padded("Q", "K", "V", **kw),
                     lambda **kw: _api.sigmoid_attention_varlen("q", "k", "v", "CQ", "CK", 7, 9, **kw)):
            call(q_descale="DQ", v_descale="DV")
            self.assertEqual(self.last()["descale"], ("DQ", None, "DV"))
            call()
            self.assertEqual(self.last()["descale"], (None, None, None))
            self.assertFalse(self.last()["quantize"])

    def test_fp8_true_asks_for_quantization_and_is_checked(self):
        for call in (lambda **kw: _api.sigmoid_attention("Q", "K", "V", **kw),
                     lambda **kw: _api.sigmoid_attention_padded("Q", "K", "V", **kw),
                     lambda **kw: _api.sigmoid_attention_varlen("q", "k", "v", "CQ", "CK", 7, 9, **kw)):
            call(fp8=True)
            self.assertTrue(self.last()["quantize"])
            with self.assertRaisesRegex(InvalidArgumentError, "fp8='yes': expected True or False"):
                call(fp8="yes")

    def test_varlen_is_flash_attention_form(self):
        _api.sigmoid_attention_varlen("q", "k", "v", "CQ", "CK", 7, 9, softmax_scale=0.1)
        c = self.last()
        self.assertEqual((c["cu_q"], c["cu_k"], c["max_q"], c["max_k"], c["opts"].scale), ("CQ", "CK", 7, 9, 0.1))

    def test_accurate_env_is_honoured_unless_overridden(self):
        for value, accurate in (("1", True), ("yes", True), ("ON", True), ("0", False), ("", False)):
            with mock.patch.dict(os.environ, {"TRITON_SIGMOID_ACCURATE": value}):
                self.assertEqual(_api.accurate_by_default(), accurate, value)
        with mock.patch.object(_api, "ACCURATE_DEFAULT", True):
            _api.sigmoid_attention("Q", "K", "V")
            self.assertTrue(self.last()["opts"].exact_sigmoid)
            _api.sigmoid_attention("Q", "K", "V", exact_sigmoid=False)
            self.assertFalse(self.last()["opts"].exact_sigmoid)
        _api.sigmoid_attention("Q", "K", "V")
        self.assertFalse(self.last()["opts"].exact_sigmoid)

    def test_accurate_env_read_at_import(self):
        import subprocess
        import sys
        code = "import sigjit._api as a; print(a.ACCURATE_DEFAULT)"
        for value, want in (("true", "True"), ("", "False")):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=dict(os.environ, TRITON_SIGMOID_ACCURATE=value)).stdout.strip()
            self.assertEqual(out, want, value)


class Errors(unittest.TestCase):
    """Scalar mistakes are named before the backend (and torch) is reached."""

    def setUp(self):
        patcher = mock.patch.object(_api, "_backend", mock.Mock(side_effect=AssertionError("backend reached")))
        patcher.start()
        self.addCleanup(patcher.stop)

    def check(self, pattern, fn, *args, **kwargs):
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, pattern):
            fn(*args, **kwargs)

    def test_messages(self):
        f, p = _api.sigmoid_attention, _api.sigmoid_attention_padded
        self.check(r"^is_causal='yes': expected True or False", f, "Q", "K", "V", "yes")
        self.check(r"^causal=False and is_causal=True: pass one of them", f, "Q", "K", "V", True, causal=False)
        self.check(r"^scale=nan: must be finite", f, "Q", "K", "V", scale=float("nan"))
        self.check(r"^scale='x': expected a finite float or None", f, "Q", "K", "V", scale="x")
        self.check(r"^sigmoid_bias=inf: must be finite", p, "Q", "K", "V", sigmoid_bias=float("inf"))
        self.check(r"^causal_align='left': must be 'top_left' .* or 'bottom_right'", p, "Q", "K", "V", causal_align="left")
        self.check(r"^score_mod='A' and score_bias='B': pass one of them", f, "Q", "K", "V", score_mod="A", score_bias="B")
        self.check(r"^exact_sigmoid=2: expected True or False", f, "Q", "K", "V", exact_sigmoid=2)
        self.check(r"^scale=0.1 and softmax_scale=0.2", _api.sigmoid_attention_varlen, "q", "k", "v", "c", "c", 1, 1, scale=0.1,
                   softmax_scale=0.2)

    def test_unknown_keywords_fail_loudly(self):
        with self.assertRaises(TypeError):
            _api.sigmoid_attention("Q", "K", "V", q="Q")  # TypeError names the unexpected keyword
        with self.assertRaises(TypeError):
            _api.sigmoid_attention_padded("Q", "K", "V", None, None, False, None, None, None, "extra positional")

    def test_prepare_names_its_function(self):
        self.check(r"^fn='len': expected sigmoid_attention", _api.prepare, len, "Q")


if __name__ == "__main__":
    unittest.main(verbosity=2)
