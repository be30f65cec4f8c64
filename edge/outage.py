"""Riding out a server outage in the middle of a batch.

The client retries a transient failure a few times within a second or two
(``SplitfaceClient._with_retries``); a server or dealer restart takes longer. A batch that
meets a transient failure pauses here, polls both servers' ``status`` with short timeouts
until both answer with their peer link up, and then retries the same request. One outage
may last ``patience_s`` from its first failure; the next success ends it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from splitface.edge.client import ServerRefused, ServersDisagree, ServerUnavailable, SplitfaceClient

log = logging.getLogger("splitface.edge.batch")


@dataclass(frozen=True)
class OutageOptions:
    """How long a batch waits for the servers, and how it polls them meanwhile."""

    patience_s: float = 120.0  # per outage, from its first failure
    poll_s: float = 1.0
    probe_timeout_s: float = 2.0


class Outage:
    """Tracks one outage at a time for a batch; :meth:`wait` until the servers are back."""

    def __init__(self, client: SplitfaceClient, options: OutageOptions | None = None) -> None:
        self.client = client
        self.options = options or OutageOptions()
        self.since: float | None = None  # first failure of the current outage
        self.exhausted = False  # an outage outlasted the patience: the batch stops sending

    def over(self) -> None:
        """A request went through: the next failure starts a new outage."""
        if self.since is not None:
            log.warning("servers answer again after %.1f s", time.monotonic() - self.since)
        self.since = None

    def wait(self, why: str, item: str) -> bool:
        """True once both servers answer with their peer link up; False when this outage has
        lasted ``patience_s``."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        deadline = self.since + self.options.patience_s
        if now >= deadline:
            self.exhausted = True
            return False
        log.warning("%s; waiting up to %.0f s for the servers before retrying %s", why,
                    deadline - now, item)
        opts = replace(self.client.opts, timeout_s=self.options.probe_timeout_s, retries=0)
        with SplitfaceClient(opts, context=self.client.ctx) as probe:
            while time.monotonic() < deadline:
                # a pause first: a pair that answers status but was busy or aborting
                # is not hammered with the same request
                time.sleep(max(0.0, min(self.options.poll_s, deadline - time.monotonic())))
                try:
                    s0, s1 = probe.status()
                    if s0.get("peer_ok") and s1.get("peer_ok"):
                        return True
                except (ServerUnavailable, ServerRefused, ServersDisagree):
                    pass
        log.warning("servers still unavailable after %.0f s: giving up", self.options.patience_s)
        self.exhausted = True
        return False
