"""Tests of an installed sigjit wheel (setup.sh --test runs them in a fresh venv, from a temp
directory, with `python -I`: the source tree is not on sys.path). Stdlib unittest only.

Environment (set by setup.sh): SIGJIT_EXPECTED_VERSION (CMake's project version),
SIGJIT_SOURCE_DIR (the checkout, which no file of the wheel may refer to).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import unittest
from pathlib import Path

import sigjit

PACKAGE_DIR = Path(sigjit.__file__).resolve().parent
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"]).resolve()
VENV = Path(sys.prefix).resolve()
SCRIPTS = Path(sysconfig.get_paths()["scripts"])
# What libsigjit.so and the CLI may need: the C/C++ runtime and the dynamic loader, nothing else.
BASE_SYSTEM = re.compile(r"^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so\.\d+$|^ld-linux-.*\.so\.\d+$")


def run(*cmd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=full_env, timeout=300)


def readelf_dynamic(path: Path) -> str:
    if not shutil.which("readelf"):
        raise unittest.SkipTest("readelf (binutils) not installed")
    return run("readelf", "-d", path).stdout


class InstalledPackage(unittest.TestCase):
    def test_imported_from_site_packages_not_the_source_tree(self):
        self.assertTrue(PACKAGE_DIR.is_relative_to(SITE_PACKAGES), f"{PACKAGE_DIR} is not under {SITE_PACKAGES}")
        src = os.environ.get("SIGJIT_SOURCE_DIR")
        if src:  # (the venv itself may lie in the checkout: build/wheel-venv)
            self.assertNotEqual(PACKAGE_DIR, (Path(src) / "python" / "sigjit").resolve())

    def test_version_is_the_cmake_version(self):
        expected = os.environ.get("SIGJIT_EXPECTED_VERSION")
        if not expected:
            self.skipTest("SIGJIT_EXPECTED_VERSION not set")
        self.assertEqual(sigjit.__version__, expected)
        from importlib.metadata import version
        self.assertEqual(version("sigjit"), expected)

    def test_version_does_not_load_the_library(self):
        code = "import sigjit, sigjit._lib as l; print(sigjit.__version__, l._lib is None)"
        r = run(sys.executable, "-I", "-c", code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.strip().endswith("True"), r.stdout)

    def test_library_loaded_from_the_package(self):
        path = Path(sigjit.library_path()).resolve()
        self.assertEqual(path, PACKAGE_DIR / "libsigjit.so")
        self.assertTrue(sigjit.version().startswith(f"sigjit {sigjit.__version__} "), sigjit.version())

    def test_validate_raises_invalid_argument(self):
        from sigjit import _lib
        a = _lib.default_args()
        a.batch = a.seqlen_q = a.seqlen_k = a.heads_q = 1
        a.head_dim = 100
        with self.assertRaisesRegex(sigjit.InvalidArgumentError, "head_dim"):
            sigjit.validate(a)


class CommandLine(unittest.TestCase):
    def test_version_flag(self):
        expected = f"sigjit {sigjit.__version__}"
        for cmd in ([SCRIPTS / "sigjit", "--version"], [sys.executable, "-I", "-m", "sigjit", "--version"],
                    [PACKAGE_DIR / "sigjit", "--version"]):
            with self.subTest(cmd=cmd):
                r = run(*cmd)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertEqual(r.stdout.strip(), expected)

    def test_info_runs_without_a_gpu(self):
        r = run(SCRIPTS / "sigjit", "info")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"^sigjit [0-9.]+ \(NVRTC [0-9]+\.[0-9]+")
        self.assertIn("GPU ", r.stdout)
        self.assertRegex(r.stdout, r"NVRTC     [0-9]+\.[0-9]+ \(")

    def test_python_m_sigjit_info(self):
        r = run(sys.executable, "-I", "-m", "sigjit", "info")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("GPU ", r.stdout)

    def test_compile_uses_the_venvs_nvrtc(self):
        r = run(SCRIPTS / "sigjit", "compile", "--head-dim", "128", "--dtype", "bf16", "--layout", "padded", "--arch", "sm_90")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("kernel ", r.stdout)
        m = re.search(r"^nvrtc +\S+ \((.+)\)$", r.stdout, re.M)
        self.assertIsNotNone(m, r.stdout)
        nvrtc = Path(m.group(1)).resolve()
        self.assertTrue(nvrtc.is_relative_to(VENV), f"NVRTC {nvrtc} is not the venv's ({VENV})")
        self.assertTrue(nvrtc.is_relative_to(SITE_PACKAGES / "nvidia"), nvrtc)

    def test_missing_nvrtc_override_is_a_clear_error(self):
        r = run(SCRIPTS / "sigjit", "compile", "--head-dim", "64", "--dtype", "bf16", "--layout", "dense", "--arch", "sm_80",
                env={"SIGJIT_NVRTC_LIBRARY": "/nonexistent/libnvrtc.so.13"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("SIGJIT_NVRTC_LIBRARY=/nonexistent/libnvrtc.so.13", r.stdout + r.stderr)


class WheelFiles(unittest.TestCase):
    binaries = [PACKAGE_DIR / "libsigjit.so", PACKAGE_DIR / "sigjit"]

    def test_binaries_need_only_the_base_system(self):
        for path in self.binaries:
            with self.subTest(path=path.name):
                needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", readelf_dynamic(path))
                self.assertTrue(needed, f"{path}: no NEEDED entries parsed")
                extra = [n for n in needed if not BASE_SYSTEM.match(n)]
                self.assertEqual(extra, [], f"{path.name} needs {extra}")

    def test_no_rpath(self):
        for path in self.binaries:
            with self.subTest(path=path.name):
                self.assertNotRegex(readelf_dynamic(path), r"\((RPATH|RUNPATH)\)")

    def test_no_file_refers_to_the_build_tree(self):
        src = os.environ.get("SIGJIT_SOURCE_DIR")
        if not src:
            self.skipTest("SIGJIT_SOURCE_DIR not set")
        needle = str(Path(src).resolve()).encode()
        for path in sorted(PACKAGE_DIR.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                with self.subTest(path=path.name):
                    data = path.read_bytes()
                    # The binaries' own (stripped) build paths would show up here, e.g. an RPATH.
                    self.assertNotIn(needle + b"/build", data, f"{path} refers to the build tree")

    def test_only_sigjit_api_is_exported(self):
        if not shutil.which("nm"):
            self.skipTest("nm (binutils) not installed")
        out = run("nm", "-D", "--defined-only", PACKAGE_DIR / "libsigjit.so").stdout
        names = [line.split()[-1] for line in out.splitlines() if line.split() and line.split()[-2] in "TDRBVW"]
        strays = [n for n in names if not (n.startswith("sigjit_") or n.startswith("_ZN6sigjit") or n.startswith("_ZTIN6sigjit")
                                         or n.startswith("_ZTSN6sigjit") or n.startswith("_ZTVN6sigjit"))]
        self.assertEqual(strays, [], "libsigjit.so exports more than sigjit's API")


if __name__ == "__main__":
    unittest.main()
