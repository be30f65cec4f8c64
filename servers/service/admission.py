"""Who may ask what, how often, and a record of every refusal.

An accept/reject bit always leaks a little: a terminal with unlimited unit-norm queries
can hill-climb towards a template (docs/SECURITY.md). The defence is rate: each terminal
has a token bucket for requests that produce a result bit (identify, verify), a much
smaller budget of strikes for what an honest terminal never does (a probe the servers
refused as out of range, an offer abandoned without its submit), and each identity a
budget of verifications naming it. Both servers run their own limiter and either may
refuse (coordinator.py): a malicious server cannot lift the limits the honest one keeps.

Every refusal goes to the audit log: one JSON object per line in the server's state
folder (mode 0600, rotated at AUDIT_MAX_BYTES), and to the log at WARNING level. Entries
name the terminal, the operation, the code, the reason and whether this server decided
it or repeats the other server's word; never an embedding or a share.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from splitface.shared.private_files import make_private

log = logging.getLogger("splitface.audit")

AUDIT_MAX_BYTES = 16 << 20
RESULT_OPS = frozenset({"identify", "verify"})
MAX_TRACKED = 100_000  # terminals or identity names with a bucket; the oldest are forgotten


@dataclass(frozen=True)
class RateOptions:
    """Per-terminal and per-identity budgets (public configuration, ``[limits]``)."""

    per_second: float = 10.0  # sustained identify + verify requests per terminal
    burst: float = 30.0
    strikes_per_hour: float = 5.0  # out-of-range probes or abandoned offers, then shut out
    verify_per_identity_per_hour: float = 60.0  # verifications naming one identity


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


class _Buckets:
    """Token buckets by key, the least recently used forgotten beyond MAX_TRACKED (a
    forgotten key starts again full: the bound trades a little leniency for memory)."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity = rate, capacity
        self._by_key: OrderedDict[str, _Bucket] = OrderedDict()

    def get(self, key: str, now: float) -> _Bucket:
        b = self._by_key.pop(key, None)
        if b is None:
            b = _Bucket(self.rate, self.capacity, now)
        self._by_key[key] = b
        while len(self._by_key) > MAX_TRACKED:
            self._by_key.popitem(last=False)
        b.refill(now)
        return b


class RateLimiter:
    """Each server's own admission decision (both servers run one and either may refuse).

    * results: identify + verify per terminal (token bucket);
    * strikes: out-of-range probes and offers abandoned without a submit, which an honest
      terminal never produces; a terminal that spends them is refused everything;
    * verifications naming one identity, from all terminals together: the accept bit of a
      1:1 verification is the hill-climbing oracle (docs/SECURITY.md); counted for every
      name asked, enrolled or not, so the refusal says nothing about enrolment.
    """

    def __init__(self, options: RateOptions = RateOptions(), clock=time.monotonic) -> None:
        self.opts, self._clock = options, clock
        self._results = _Buckets(options.per_second, options.burst)
        self._strikes = _Buckets(options.strikes_per_hour / 3600.0, options.strikes_per_hour)
        self._identity = _Buckets(options.verify_per_identity_per_hour / 3600.0,
                                  options.verify_per_identity_per_hour)

    def admit(self, terminal: str, op: str, identity: str = "") -> str | None:
        """None if the request may run, else the reason it may not."""
        now = self._clock()
        if self._strikes.get(terminal, now).tokens < 1.0:
            return ("too many out-of-range probes or abandoned requests from this terminal: "
                    "refused until its budget refills")
        if op not in RESULT_OPS:
            return None
        if not self._results.get(terminal, now).take(now):
            return f"rate limit: at most {self.opts.per_second:g} identify/verify per second"
        if op == "verify" and not self._identity.get(identity, now).take(now):
            return (f"rate limit: at most {self.opts.verify_per_identity_per_hour:g} "
                    "verifications of one identity an hour")
        return None

    def strike(self, terminal: str, why: str) -> None:
        """Count an out-of-range probe or an abandoned offer against the terminal."""
        now = self._clock()
        self._strikes.get(terminal, now).take(now)
        log.warning("terminal %r: strike (%s)", terminal, why)


class AuditLog:
    """JSON lines of refusals, private to the service user."""

    def __init__(self, path: Path | None, party: int) -> None:
        self.path, self.party = path, party
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            make_private(path)

    def refusal(self, terminal: str, op: str, request_id: str, code: str, reason: str,
                decided_by: str = "self") -> None:
        """Record a refusal; ``decided_by`` is "self", or "peer" when this server only
        repeats the other server's word (it cannot check it, and must not own it)."""
        entry = {"time": round(time.time(), 3), "party": self.party, "terminal": terminal,
                 "op": op, "req": request_id, "code": code, "reason": reason[:300],
                 "decided_by": decided_by}
        log.warning("refused %s %s from terminal %r: %s: %s%s", op, request_id, terminal, code,
                    reason[:300], " (the other server's decision)" if decided_by == "peer"
                    else "")
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
