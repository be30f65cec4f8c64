"""Who may ask what, how often, and a record of every refusal.

An accept/reject bit always leaks a little: a terminal with unlimited unit-norm queries
can hill-climb towards a template (docs/SECURITY.md). The defence is rate: each terminal
has a token bucket for requests that produce a result bit (identify, verify), and a much
smaller budget for probes the servers refused as out of range, which an honest terminal
never sends; a terminal that spends it is refused everything until its budget refills.
P0 decides admission and tells P1 (coordinator.py), so both servers answer alike.

Every refusal goes to the audit log: one JSON object per line in the server's state
folder (mode 0600, rotated at AUDIT_MAX_BYTES), and to the log at WARNING level. Entries
name the terminal, the operation, the code and the reason; never an embedding or a share.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from splitface.shared.private_files import make_private

log = logging.getLogger("splitface.audit")

AUDIT_MAX_BYTES = 16 << 20
RESULT_OPS = frozenset({"identify", "verify"})


@dataclass(frozen=True)
class RateOptions:
    """Per-terminal budgets (public configuration)."""

    per_second: float = 10.0  # sustained identify + verify requests
    burst: float = 30.0
    bad_probes_per_hour: float = 5.0  # out-of-range probes before the terminal is shut out


class _Bucket:
    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self.at = capacity, now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, now: float, n: float = 1.0) -> bool:
        self.refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class RateLimiter:
    """Token buckets per terminal: results, and out-of-range probes."""

    def __init__(self, options: RateOptions = RateOptions(), clock=time.monotonic) -> None:
        self.opts, self._clock = options, clock
        self._results: dict[str, _Bucket] = {}
        self._bad: dict[str, _Bucket] = {}

    def _bad_bucket(self, terminal: str, now: float) -> _Bucket:
        b = self._bad.get(terminal)
        if b is None:
            b = self._bad[terminal] = _Bucket(self.opts.bad_probes_per_hour / 3600.0,
                                              self.opts.bad_probes_per_hour, now)
        return b

    def admit(self, terminal: str, op: str) -> str | None:
        """None if the request may run, else the reason it may not."""
        now = self._clock()
        bad = self._bad_bucket(terminal, now)
        bad.refill(now)
        if bad.tokens < 1.0:
            return ("too many out-of-range probes from this terminal: refused until its "
                    "budget refills")
        if op not in RESULT_OPS:
            return None
        b = self._results.get(terminal)
        if b is None:
            b = self._results[terminal] = _Bucket(self.opts.per_second, self.opts.burst, now)
        if not b.take(now):
            return f"rate limit: at most {self.opts.per_second:g} identify/verify per second"
        return None

    def bad_probe(self, terminal: str) -> None:
        """Count a refused probe against the terminal's small budget."""
        now = self._clock()
        self._bad_bucket(terminal, now).take(now)


class AuditLog:
    """JSON lines of refusals, private to the service user."""

    def __init__(self, path: Path | None, party: int) -> None:
        self.path, self.party = path, party
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            make_private(path)

    def refusal(self, terminal: str, op: str, request_id: str, code: str, reason: str
                ) -> None:
        entry = {"time": round(time.time(), 3), "party": self.party, "terminal": terminal,
                 "op": op, "req": request_id, "code": code, "reason": reason[:300]}
        log.warning("refused %s %s from terminal %r: %s: %s", op, request_id, terminal, code,
                    reason[:300])
        if self.path is None:
            return
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock:
            try:
                if self.path.exists() and self.path.stat().st_size > AUDIT_MAX_BYTES:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                    make_private(self.path)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as f:
                    f.write(line)
            except OSError as exc:  # the audit log failing must not stop the service
                log.error("cannot write the audit log %s: %s", self.path, exc)
