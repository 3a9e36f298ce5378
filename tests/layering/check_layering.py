#!/usr/bin/env python3
"""The dependency rule of sigjit's source folders, checked on every #include.

Folders depend only downward:
    base (the SIGJIT_* switches) <- problem (what the user asks) <- cuda (driver utilities) <- kernels (the families)
    <- jit (NVRTC, loaded-kernel table, store glue) <- tune <- runtime (entry points) <- cli
and cache (the on-disk store) knows nothing of kernels; jit and everything above may use it.
Public headers (include/sigjit/) and kernel templates (templates/sigjit/) may be included from
anywhere. The CLI uses the public tuning and cache APIs, never sigjit::detail.
CMakeLists.txt builds each folder as its own object library with the same DEPENDS lists.

Usage: check_layering.py [REPO_ROOT]; exit 1 with one line per violation.
"""
import pathlib
import re
import sys

BELOW = {
    "base": set(),
    "problem": {"base"},
    "cache": {"base"},
    "cuda": {"base", "problem"},
    "kernels": {"base", "problem", "cuda"},
    "jit": {"base", "problem", "cuda", "kernels", "cache"},
    "tune": {"base", "problem", "cuda", "kernels", "cache", "jit"},
    "runtime": {"base", "problem", "cuda", "kernels", "cache", "jit", "tune"},
    "cli": {"base", "problem", "cuda", "kernels", "cache", "jit", "tune", "runtime"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def violations(root: pathlib.Path):
    for folder, allowed in BELOW.items():
        for path in sorted((root / folder).glob("*")):
            if path.suffix not in {".cpp", ".hpp", ".h"}:
                continue
            text = path.read_text()
            for inc in INCLUDE.findall(text):
                top = inc.split("/", 1)[0]
                if top in BELOW and top != folder and top not in allowed:
                    yield f"{path.relative_to(root)}: includes {inc} ({folder}/ may use {', '.join(sorted(allowed)) or 'nothing of sigjit'})"
            if folder == "cli" and "detail::" in text:
                yield f"{path.relative_to(root)}: uses sigjit::detail (the CLI uses the public tuning and cache APIs)"


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
    missing = [f for f in BELOW if not (root / f).is_dir()]
    if missing:
        print(f"layering: folders missing under {root}: {', '.join(missing)}")
        return 1
    found = list(violations(root))
    for v in found:
        print(v)
    checked = sum(1 for f in BELOW for p in (root / f).glob("*") if p.suffix in {".cpp", ".hpp", ".h"})
    print(f"layering: {checked} files checked, {len(found)} violations")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
