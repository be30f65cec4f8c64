"""Run a whole deployment (dealer, P0, P1) as local processes: the demo and the tests.

Uses the real daemons (``splitface-dealer``, ``splitface-server``) with configs and keys
made by ``splitface-keys init --layout local``; stops them with SIGTERM and waits.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from splitface.shared import keys


def free_base_port(span: int = 12) -> int:
    """A base port with ``span`` free ports above it (loopback), for a deployment.

    Drawn below the kernel's ephemeral range: a port from that range, free when drawn,
    could be handed to one of the deployment's own outgoing connections (a server's to
    the dealer) before the daemon that should listen on it binds it."""
    low = _ephemeral_low()
    if low < 10000 + 100 * span:  # (almost) all ports are ephemeral: nothing to avoid
        low = 65000
    for _ in range(200):
        base = 10000 + secrets.randbelow(low - 10000 - span)
        if all(_free(base + i) for i in range(span)):
            return base
    raise RuntimeError("no free port range")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux: IANA's dynamic range
        return 49152


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@dataclass
class LocalDeployment:
    """A deployment folder and the daemon processes started from it."""

    root: Path
    base_port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, *, edges: int = 2, base_port: int = 7400,
               admins: tuple[str, ...] = ("edge-1",), threshold: float | None = None,
               train: dict[str, float] | None = None,
               limits: dict[str, float] | None = None) -> LocalDeployment:
        """Generate keys and configs (``splitface-keys init``) and tune the server configs
        (``train`` and ``limits`` set keys of those tables)."""
        model_dir = Path(__file__).resolve().parents[1] / "var" / "models"  # made by make models
        model_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "splitface.shared.cli_keys", "init", "--out",
                        str(root), "--edges", str(edges), "--layout", "local", "--base-port",
                        str(base_port), "--model-dir", str(model_dir)],
                       check=True, capture_output=True, text=True)
        for p in ("p0", "p1"):
            cfg = root / p / "config.toml"
            text = cfg.read_text()
            text = _set_key(text, "admin_terminals", "[" + ", ".join(f'"{a}"' for a in admins)
                            + "]")
            if threshold is not None:
                text = _set_key(text, "threshold", threshold)
            for k, v in {**(train or {}), **(limits or {})}.items():
                text = _set_key(text, k, v)
            cfg.write_text(text)
        return cls(root, base_port)

    def start(self, which: tuple[str, ...] = ("dealer", "p0", "p1"),
              extra_env: dict[str, str] | None = None,
              modules: dict[str, str] | None = None) -> None:
        """Start daemons; ``modules`` runs another entry module for a name (the tests' modified
        servers play a malicious party this way)."""
        env = {**os.environ, **(extra_env or {})}
        for name in which:
            module = (modules or {}).get(name) or ("splitface.servers.cli.dealer"
                                                   if name == "dealer" else
                                                   "splitface.servers.cli.server")
            cmd = [sys.executable, "-m", module] if name == "dealer" \
                else [sys.executable, "-m", module, "--party", name[1]]
            cmd += ["--config", "config.toml"]
            log = self.root / f"{name}.log"
            self.logs[name] = log
            with open(log, "ab") as out:
                self.procs[name] = subprocess.Popen(cmd, cwd=self.root / name, stdout=out,
                                                    stderr=subprocess.STDOUT, env=env)

    def stop(self, which: tuple[str, ...] | None = None, timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM, then wait; returns exit codes (SIGKILL only if a daemon hangs)."""
        names = list(which or self.procs)
        for n in names:
            if self.procs[n].poll() is None:
                self.procs[n].send_signal(signal.SIGTERM)
        codes = {}
        for n in names:
            try:
                codes[n] = self.procs[n].wait(timeout)
            except subprocess.TimeoutExpired:
                self.procs[n].send_signal(signal.SIGUSR1)  # its stacks go to its log
                time.sleep(0.5)
                self.procs[n].kill()
                codes[n] = self.procs[n].wait()
            del self.procs[n]
        return codes

    def kill(self, name: str) -> None:
        """Crash a daemon (SIGKILL), for fault tests."""
        self.procs[name].kill()
        self.procs[name].wait()
        del self.procs[name]

    def edge_keys(self, name: str = "edge-1") -> tuple[bytes, bytes, bytes, bytes]:
        """(public, secret, P0 public, P1 public) for terminal ``name``."""
        d = self.root / name / "keys"
        pub, sec = keys.load_secret_key(d / f"{name}.key_secret")
        return pub, sec, keys.load_public_key(d / "p0.key"), keys.load_public_key(d / "p1.key")

    def endpoints(self) -> tuple[str, str]:
        return f"tcp://127.0.0.1:{self.base_port}", f"tcp://127.0.0.1:{self.base_port + 1}"

    def raw_sockets(self, context: zmq.Context, name: str = "edge-1") -> list[zmq.Socket]:
        """Bare REQ sockets of terminal ``name`` to P0 and P1 (CURVE keys set, connected):
        for tests and benchmarks that send what no SplitfaceClient would."""
        pub, sec, k0, k1 = self.edge_keys(name)
        socks = []
        for endpoint, server_key in zip(self.endpoints(), (k0, k1), strict=True):
            s = context.socket(zmq.REQ)
            s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, server_key
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            socks.append(s)
        return socks

    def rss_mb(self) -> dict[str, float]:
        """Each running daemon's resident memory in MB."""
        return {n: rss_mb(p.pid) for n, p in self.procs.items()}

    def cpu_seconds(self) -> dict[str, float]:
        """Each running daemon's CPU time so far (user + system, all its threads)."""
        return {n: cpu_seconds(p.pid) for n, p in self.procs.items()}

    def client(self, name: str = "edge-1", timeout: float = 20.0, retries: int = 0):
        """A SplitfaceClient of terminal ``name`` for both servers (use it as a context)."""
        from splitface.edge.client import ClientOptions, ServerEndpoint, SplitfaceClient

        pub, sec, k0, k1 = self.edge_keys(name)
        e0, e1 = self.endpoints()
        return SplitfaceClient(ClientOptions((ServerEndpoint(e0, k0), ServerEndpoint(e1, k1)),
                                             pub, sec, timeout_s=timeout, retries=retries))

    def wait_ready(self, client, timeout: float = 30.0) -> None:
        """Until both servers answer status and P0 reports its peer link up."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            for n, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{n} exited with {p.returncode}: "
                                       f"{self.logs[n].read_text()[-2000:]}")
            try:
                s0, _ = client.status()
                if s0.get("peer_ok"):
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.3)
        raise TimeoutError(f"deployment not ready: {last}")


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_seconds(pid: int) -> float:
    """A process's CPU time in seconds (Linux /proc: utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _set_key(text: str, key: str, value: float | str) -> str:
    """Set ``key = value`` on the first line that assigns ``key`` (it must exist)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.split("=")[0].strip() == key:
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    raise KeyError(f"{key} is not in the generated config")
