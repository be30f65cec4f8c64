"""Tap-to-verify mode: turn one ``TapFlow.verify_once`` result into events and fault states.

The seam is :class:`splitface.edge.daemon.loop.TapVerifier`: anything with ``verify_once
(tap_timeout_s) -> result`` where the result has ``status, accepted, identity, reason,
timings_ms`` and expected failures come back as a status, never as an exception. Statuses are
sorted into: a finished verification (``accepted`` set), nobody tapped, the reader gone (back
off and retry, like an unplugged camera), the servers gone, and anything else (one
``verification_failed`` event, then the next tap).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from splitface.edge.daemon.loop import EdgeLoop

log = logging.getLogger("splitface.edge.daemon")

IDLE = frozenset({"no_card", "no_tap", "timeout", "tap_timeout", "idle"})
READER_DOWN = frozenset({"no_reader", "reader_unavailable", "reader_removed",
                         "pcsc_unavailable", "reader_error"})
SERVERS_DOWN = frozenset({"server_unavailable", "servers_unavailable", "unavailable"})


def handle_tap_result(loop: EdgeLoop, result: Any) -> None:
    """Publish what happened and update the reader/server fault domains."""
    status = str(getattr(result, "status", "error"))
    reason = str(getattr(result, "reason", "") or status)
    if status in READER_DOWN:
        loop.reader_health.failed(reason, status=status)
        return
    loop.reader_health.succeeded()
    if status in IDLE:
        return
    if status in SERVERS_DOWN:
        loop.server_health.failed(reason)
        return
    timings = {str(k): round(float(v), 1)
               for k, v in (getattr(result, "timings_ms", None) or {}).items()}
    accepted = getattr(result, "accepted", None)
    if accepted is None:
        log.info("tap: %s (%s)", status, reason)
        loop.counters.failed += 1
        loop.events.publish("verification_failed", status=status, reason=reason,
                            timings_ms=timings)
        return
    loop.server_health.succeeded()
    if accepted:
        loop.counters.identified += 1
    else:
        loop.counters.unknown += 1
    loop.events.publish("verification", status=status, accepted=bool(accepted),
                        identity=getattr(result, "identity", None), reason=reason,
                        timings_ms=timings)
