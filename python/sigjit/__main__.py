"""`python -m sigjit ...` and the `sigjit` console script of the wheel: run the CLI binary.

What: execs the `sigjit` executable installed inside this package (next to libsigjit.so),
passing the arguments through, so `sigjit info`, `sigjit compile ...`, `sigjit tune ...` work
after `pip install sigjit` with nothing on PATH.
Why exec: the CLI is C++ (it links the library statically); replacing the Python process keeps
its exit status, signals and terminal handling exactly those of the binary.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def cli_path() -> Path:
    """The CLI binary: $SIGJIT_CLI if set, else the one installed in the package, else a source
    checkout's build/sigjit (running from python/ with PYTHONPATH)."""
    env = os.environ.get("SIGJIT_CLI")
    if env:
        return Path(env)
    candidates = [_PACKAGE_DIR / "sigjit"] + [_PACKAGE_DIR.parent.parent / d / "sigjit" for d in ("build", "build-dev")]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return candidates[0]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    exe = cli_path()
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        sys.stderr.write(f"sigjit: the command-line tool is missing: {exe} does not exist or is not executable. It is part of "
                         "the sigjit wheel (`pip install sigjit`, or `pip install .` in a checkout); in a source checkout "
                         "build it with ./setup.sh, or set SIGJIT_CLI=/path/to/sigjit.\n")
        return 127
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(str(exe), [str(exe)] + args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
