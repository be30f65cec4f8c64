"""The sandbox settings of the units hold for the native code the services really run.

Two checks that `systemd-analyze verify` cannot do, run on the dependency stacks in
tests/ops/workloads.py (the lead's servers and the edge daemon run on exactly these libraries):

* SystemCallFilter=: every system call the stack makes under strace must be allowed by the
  unit's filter as systemd expands it (``systemd-analyze syscall-filter``). This is how we found
  that libzmq's I/O thread calls sched_setscheduler() (via pthread_setschedparam, asserting
  success) and OpenBLAS calls mbind(): denying @resources would abort every ZeroMQ context.
* MemoryDenyWriteExecute=: systemd 252 enforces it with seccomp (no mmap with PROT_WRITE and
  PROT_EXEC, no mprotect/pkey_mprotect adding PROT_EXEC). The server stack's numba kernels
  need exactly that, so the server and dealer units leave it unset; under the kernel's
  PR_SET_MDWE the stack must still run, on the numpy reference (a site may set it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.ops.units import REPO, UNIT_DIR, parse_unit
from tests.ops.workloads import NO_MDWE

MODELS = REPO / "var" / "models"
needs_strace = pytest.mark.skipif(shutil.which("strace") is None or
                                  shutil.which("systemd-analyze") is None,
                                  reason="strace/systemd-analyze missing: run "
                                         "scripts/install_system_deps.sh")
needs_models = pytest.mark.skipif(not list(MODELS.glob("*.tflite")),
                                  reason="no models in var/models: run scripts/build_models.sh")
STACKS = {"server": ("splitface-server@.service", "splitface-dealer.service"),
          "edge": ("splitface-edged.service",)}


def _workload(stack: str, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "tests.ops.workloads", stack, *extra]
    return [*argv, "--models", str(MODELS)] if stack == "edge" else argv


@cache
def _groups() -> dict[str, list[str]]:
    text = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif line.startswith("    ") and current and not line.strip().startswith("#"):
            groups[current].append(line.strip())
        elif not line.strip():
            current = ""
    return groups


def _expand(names: list[str]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= _expand(_groups()[name]) if name.startswith("@") else {name}
    return out


def allowed_syscalls(unit: Path) -> set[str]:
    """The allow-list systemd builds from the unit's SystemCallFilter= lines, in order."""
    allowed: set[str] = set()
    for i, value in enumerate(parse_unit(unit)["Service.SystemCallFilter"]):
        deny = value.startswith("~")
        names = _expand(value.lstrip("~").split())
        assert i > 0 or not deny, "the first SystemCallFilter= must be an allow-list"
        allowed = allowed - names if deny else allowed | names
    return allowed | _expand(["@default"])  # systemd always permits @default


@cache
def _can_trace() -> str:
    """'' when strace can trace here; else why not (containers may forbid ptrace)."""
    result = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"],
                            capture_output=True, text=True, timeout=30)
    return "" if result.returncode == 0 else result.stderr.strip()


@cache
def _service_user_blocked() -> str:
    """'' when the unprivileged user the workloads drop to can read the checkout, the venv
    and the models; else why not (a CI clone under a 0700 temporary folder, for one)."""
    if os.geteuid() != 0:
        return ""
    # only what reading the files needs: a failure of the stack itself (numba refusing to
    # load its kernels as a user who cannot write their cache, as it did) must fail the
    # workload tests, not skip them
    probe = ("import pathlib, sys, cryptography.hazmat.backends, splitface.shared.wire;"
             " [p.stat() for p in pathlib.Path(sys.argv[1]).glob('*')]")
    result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             sys.executable, "-c", probe, str(MODELS)], cwd="/",
                            capture_output=True, text=True, timeout=60)
    return "" if result.returncode == 0 else (result.stderr.strip().splitlines() or ["?"])[-1]


def _require_service_user() -> None:
    if _service_user_blocked():
        pytest.skip("the unprivileged service user cannot read this checkout "
                    f"({_service_user_blocked()}); run the suite from a world-readable path")


def _strace(stack: str, tmp_path: Path) -> str:
    if _can_trace():
        pytest.skip(f"strace cannot trace in this environment: {_can_trace()}")
    _require_service_user()
    log = tmp_path / f"{stack}.strace"
    result = subprocess.run(["strace", "-f", "-qq", "-s", "0", "-o", str(log),
                             *_workload(stack)], cwd=REPO, capture_output=True, text=True,
                            timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    return log.read_text()


def _service_part(log: str) -> str:
    """Drop what a privilege-dropping child did before its setuid() (systemd does that part
    itself, before the filter applies); see workloads.as_service_user."""
    lines = log.splitlines()
    start: dict[str, int] = {}
    for i, line in enumerate(lines):
        pid, _, rest = line.partition(" ")
        if re.match(r"\s*setuid\(\d+\)\s+= 0", rest):
            start[pid] = i
    return "\n".join(line for i, line in enumerate(lines)
                     if i > start.get(line.partition(" ")[0], -1))


def _exec_gain(log: str) -> list[str]:
    """Calls systemd 252's seccomp MemoryDenyWriteExecute= refuses."""
    return re.findall(r"^\d+\s+(mmap\(.*PROT_WRITE\|PROT_EXEC.*"
                      r"|(?:pkey_)?mprotect\(.*PROT_EXEC.*)$", log, re.M)


def _syscalls(log: str) -> set[str]:
    return set(re.findall(r"^\d+\s+([a-z_0-9]+)\(", log, re.M))


@needs_strace
@pytest.mark.parametrize("stack", [pytest.param("server"),
                                   pytest.param("edge", marks=needs_models)])
def test_syscalls_stay_inside_the_filter(stack: str, tmp_path: Path) -> None:
    log = _service_part(_strace(stack, tmp_path))
    used = _syscalls(log)
    assert {"execve", "socket", "connect", "mmap"} <= used  # the trace is real
    for unit in STACKS[stack]:
        denied = used - allowed_syscalls(UNIT_DIR / unit)
        assert not denied, f"{unit} would refuse {sorted(denied)} made by the {stack} stack"
    if stack == "server":
        # numba maps its compiled kernels executable: MemoryDenyWriteExecute=yes would
        # refuse that, so the units leave it unset (test_systemd_units.py); set in a
        # drop-in, the servers fall back to numpy (test_stack_runs_under_kernel_mdwe)
        assert _exec_gain(log), "the trace shows no compiled kernel being mapped"


@needs_strace
def test_filter_check_can_fail() -> None:
    """Negative control: with @resources denied, libzmq's sched_setscheduler is refused."""
    unit = UNIT_DIR / "splitface-server@.service"
    allowed = allowed_syscalls(unit)
    assert "sched_setscheduler" in allowed and "mbind" in allowed
    assert "sched_setscheduler" not in allowed - _expand(["@resources"])
    assert "mount" not in allowed and "reboot" not in allowed and "init_module" not in allowed
    log = ("7 mmap(NULL, 4096, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_DENYWRITE, 3, 0) = 0x7f00\n"
           "7 mmap(NULL, 4096, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE, -1, 0) = 0x7f10\n"
           "8 mprotect(0x7f20, 4096, PROT_READ|PROT_EXEC) = 0\n"
           "8 mprotect(0x7f30, 4096, PROT_READ) = 0\n")
    assert len(_exec_gain(log)) == 2
    assert _syscalls(_service_part("9 setgroups(0, NULL) = 0\n9 setuid(65534) = 0\n"
                                   "9 socket(AF_UNIX, SOCK_DGRAM, 0) = 3\n")) == {"socket"}


@pytest.mark.parametrize("stack", [pytest.param("server"),
                                   pytest.param("edge", marks=needs_models)])
def test_stack_runs_under_kernel_mdwe(stack: str) -> None:
    """PR_SET_MDWE in a child (it cannot be undone); the child first checks W+X is refused.

    The edge unit still does not set MemoryDenyWriteExecute=: this passes on x86-64, but the
    terminals are ARM64, where XNNPACK's code paths differ and cannot be checked here.
    """
    _require_service_user()
    result = subprocess.run(_workload(stack, "--mdwe"), cwd=REPO, capture_output=True,
                            text=True, timeout=150)
    if result.returncode == NO_MDWE:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{stack} stack ok" in result.stdout


def test_a_service_user_loads_the_compiled_kernels() -> None:
    """The units run the daemons as a user who can write neither the installed source tree
    (ProtectSystem=strict) nor a home (ProtectHome=yes). numba then refused to define any
    cached kernel, and every server and dealer failed at import; the units now point
    NUMBA_CACHE_DIR at their CacheDirectory=, and without it the kernels use a private
    temporary folder (aesni._numba_cache_dir)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process as the unprivileged user")
    _require_service_user()
    script = ("from splitface.servers.mpc.fss import kernels\n"
              "from splitface.servers.mpc.warmup import load_compiled_kernels\n"
              "load_compiled_kernels()\n"
              "print('loaded', kernels.AVAILABLE)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             sys.executable, "-c", script], cwd="/", capture_output=True,
                            text=True, timeout=300, env={**env, "HOME": "/nonexistent"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded True" in result.stdout
