#!/usr/bin/env python3
"""Prove that every pinned requirement installs from a binary wheel on every target, without installing.

  python scripts/check_wheels.py requirements.txt benchmarks/requirements.txt     # make check-wheels

Targets: manylinux x86_64 and aarch64 (glibc <= 2.34, Amazon Linux 2023's), CPython 3.11 and 3.12.
pip resolves each target (`pip install --dry-run --only-binary=:all: --platform ... --report`, PEP 658
metadata only: no wheel is downloaded), against PyPI alone, whatever local mirrors pip is configured
with, because that is what a fresh machine sees. A requirement with no wheel for a target, that is an
sdist to compile there, fails the check and is named.

torch is checked the way `make install` installs it (scripts/install_torch.sh): `torch==X+cpu` from
the PyTorch CPU index, and the wheel must not depend on CUDA packages. `--torch-from requirements`
checks the plain pin from PyPI instead (what a bare `pip install -r requirements.txt` would take).
When the torch index cannot be reached, torch is reported as not checked (and fails with --strict).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PYPI = "https://pypi.org/simple"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ARCHES = ("x86_64", "aarch64")
PYTHONS = ("3.11", "3.12")
MAX_GLIBC_MINOR = 34  # Amazon Linux 2023 has glibc 2.34; Ubuntu 22.04 has 2.35
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")
CUDA_DEPENDENCY = re.compile(r"^(nvidia-|cuda-|triton\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    arch: str
    python: str

    def __str__(self) -> str:
        return f"{self.arch} cp{self.python.replace('.', '')}"

    def pip_flags(self) -> list[str]:
        # pip matches --platform tags literally: list every manylinux tag a glibc <= 2.34 host accepts.
        tags = [f"manylinux_2_{minor}_{self.arch}" for minor in range(17, MAX_GLIBC_MINOR + 1)]
        tags += [f"manylinux2014_{self.arch}"] + ([f"manylinux2010_{self.arch}"] if self.arch == "x86_64" else [])
        return [
            *(flag for tag in tags for flag in ("--platform", tag)),
            "--python-version",
            self.python,
            "--implementation",
            "cp",
            "--only-binary=:all:",
        ]


def pins(files: list[Path]) -> list[str]:
    """`name==version` lines of requirement files (comments and blank lines skipped)."""
    found = []
    for path in files:
        for line in path.read_text().splitlines():
            if match := PIN.match(line):
                found.append(f"{match[1]}=={match[2]}")
    return found


def resolve(requirements: list[str], target: Target, index: str, extra_index: str | None = None) -> tuple[bool, dict]:
    """pip's dry-run resolution of requirements (no dependencies) for target: (ok, report or {'error': ...})."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet"]
        cmd += ["--target", str(Path(tmp) / "target"), "--report", str(report), "--index-url", index]
        cmd += (["--extra-index-url", extra_index] if extra_index else []) + target.pip_flags() + requirements
        done = subprocess.run(cmd, capture_output=True, text=True, env=pypi_only_env())
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
            return False, {"error": errors[-1] if errors else done.stderr.strip()[-300:]}
        return True, json.loads(report.read_text())


def pypi_only_env() -> dict[str, str]:
    """The environment without pip's configured mirrors and local wheel folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def cuda_dependencies(report: dict) -> dict[str, list[str]]:
    """Package -> its CUDA runtime dependencies, for each resolved package that has some."""
    found = {}
    for item in report.get("install", []):
        needs = [re.split(r"[\s\[;<>=!~]", dep, maxsplit=1)[0] for dep in item["metadata"].get("requires_dist") or []]
        needs = [name for name in needs if CUDA_DEPENDENCY.match(name)]
        if needs:
            found[f"{item['metadata']['name']} {item['metadata']['version']}"] = needs
    return found


def wheel_names(report: dict) -> list[str]:
    return [item["download_info"]["url"].rsplit("/", 1)[-1] for item in report.get("install", [])]


def check_target(requirements: list[str], target: Target) -> list[str]:
    """Problems for one target: each requirement without a wheel, and CUDA builds among the others."""
    problems = []
    ok, report = resolve(requirements, target, PYPI)
    if not ok:  # pip names only the first failure: find them all, one requirement at a time
        failures = {req: result for req in requirements for good, result in [resolve([req], target, PYPI)] if not good}
        problems += [f"{target}: {req}: no binary wheel ({result['error']})" for req, result in failures.items()]
        ok, report = resolve([req for req in requirements if req not in failures], target, PYPI)
    for package, needs in cuda_dependencies(report).items():
        problems.append(f"{target}: {package} is a CUDA build (needs {', '.join(needs)})")
    return problems


def check_torch(version: str, target: Target, index: str) -> tuple[list[str], str]:
    """(problems, what was resolved) for torch==version+cpu from the CPU index."""
    ok, report = resolve([f"torch=={version}+cpu"], target, index)
    if not ok:
        return [f"{target}: torch=={version}+cpu not found on {index} ({report['error']})"], ""
    cuda = cuda_dependencies(report)
    problems = [f"{target}: {pkg} from {index} is a CUDA build" for pkg in cuda]
    return problems, ", ".join(wheel_names(report))


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=10):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="requirement files with name==version pins")
    parser.add_argument("--torch-from", choices=("installer", "requirements"), default="installer")
    parser.add_argument("--torch-index", default=TORCH_CPU_INDEX)
    parser.add_argument("--strict", action="store_true", help="fail when the torch index cannot be reached")
    args = parser.parse_args()
    requirements = pins(args.files)
    torch_pin = next((req for req in requirements if req.lower().startswith("torch==")), None)
    if args.torch_from == "installer" and torch_pin:
        requirements.remove(torch_pin)
    targets = [Target(arch, python) for arch in ARCHES for python in PYTHONS]
    problems, notes = [], []
    print(f"checking {len(requirements)} pins on {', '.join(map(str, targets))} against {PYPI}")
    for target in targets:
        found = check_target(requirements, target)
        print(f"  {target}: {'ok' if not found else f'{len(found)} problem(s)'}")
        problems += found
    if args.torch_from == "installer" and torch_pin:
        version = torch_pin.split("==", 1)[1]
        if reachable(args.torch_index):
            for target in targets:
                found, wheels = check_torch(version, target, args.torch_index)
                print(f"  torch {target}: {wheels or 'FAILED'}")
                problems += found
        else:
            notes.append(f"torch=={version}+cpu NOT CHECKED: {args.torch_index} is not reachable from here")
    for note in notes:
        print(f"note: {note}")
    if problems or (notes and args.strict):
        print("FAILED:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        sys.exit(1)
    print("every pin has a binary wheel on every target")


if __name__ == "__main__":
    main()
