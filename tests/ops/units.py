"""Helpers for the unit-file tests: parse units, build a throw-away root for systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "deploy" / "systemd"
#: Unit names as systemd sees them (the template is checked per instance).
INSTANCES = {
    "splitface-server@0.service": "splitface-server@.service",
    "splitface-server@1.service": "splitface-server@.service",
    "splitface-dealer.service": "splitface-dealer.service",
    "splitface-edged.service": "splitface-edged.service",
}
SYSTEM_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


def parse_unit(path: Path, instance: str = "") -> dict[str, list[str]]:
    """``Section.Key -> [values]`` (keys may repeat, e.g. SystemCallFilter); ``%i`` expanded."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip().replace("%i",
                                                                                     instance))
    return out


def instance_of(unit: str) -> str:
    return unit.split("@", 1)[1].split(".", 1)[0] if "@" in unit else ""


def make_root(root: Path) -> Path:
    """A minimal root for ``systemd-analyze --root``: the distribution's units (for targets
    such as sysinit.target), ours under /etc/systemd/system, and a stub executable at each
    exact ExecStart path.

    Why stubs: ``verify`` checks that ExecStart's binary exists and is executable, and the real
    /opt/splitface/.venv is not installed in the test machine. The stub is a two-line shell
    script standing in for the venv's console script at the very same path, so the unit text
    itself is verified unchanged (nothing in the unit is rewritten).
    """
    target = root / "usr/lib/systemd/system"
    for src in SYSTEM_UNIT_DIRS:
        if src.is_dir() and not target.exists():
            shutil.copytree(src, target, symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True, exist_ok=True)
    for unit in sorted(set(INSTANCES.values())):
        shutil.copy(UNIT_DIR / unit, etc / unit)
        for exec_start in parse_unit(UNIT_DIR / unit).get("Service.ExecStart", []):
            binary = root / exec_start.split()[0].lstrip("-@+!:").lstrip("/")
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\nexit 0\n")
            binary.chmod(0o755)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=60, check=False)
