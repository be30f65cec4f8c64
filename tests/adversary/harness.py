"""The attacker's tools: a malicious server with full control of its messages.

``RushingChannel`` is the malicious server's end of the peer link. Every round, the
honest party's message is read *before* the malicious one is sent (rushing), and a
strategy decides what to send after seeing it and everything the malicious party knows
(adaptive): its own shares, its MAC key share, the openings so far, the coin, chi.

``pair_with_adversary`` builds an honest party and a malicious one on one in-process
dealer (the real :class:`DealerCore`, so the malicious party may also ask the dealer for
anything under its own party id). ``run_honest_vs_adversary`` runs a computation on both
and reports what the honest party did: returned an output, or raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.local import local_pair as local_prep_pair
from splitface.shared import ring
from splitface.shared.transport.local import LocalChannel, local_pair
from splitface.shared.wire import Message

# strategy(kind, ours, honest, view) -> the message to send instead of ``ours`` (or ours)
Strategy = Callable[[str, Message, Message, "AdversaryView"], Message]


@dataclass
class AdversaryView:
    """What the malicious party has seen: every honest message, in order, and its party."""

    party: Party | None = None
    seen: list[Message] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def last(self, kind: str) -> Message | None:
        for m in reversed(self.seen):
            if m.kind == kind:
                return m
        return None


class RushingChannel:
    """The malicious end of the link: read the honest message first, then choose ours."""

    def __init__(self, inner: LocalChannel, strategy: Strategy, view: AdversaryView) -> None:
        self.inner, self.strategy, self.view = inner, strategy, view
        self.stats = inner.stats
        self._held: Message | None = None

    def send(self, msg: Message) -> None:
        if self._held is not None:  # a message with no reply expected: flush the old one
            self.inner.send(self._held)
        self._held = msg

    def recv(self, expect: str | tuple[str, ...] | None = None,
             timeout: float | None = None) -> Message:
        honest = self.inner.recv(None, timeout)  # rushing: whatever the honest party sent
        self.view.seen.append(honest)
        if self._held is not None:
            out = self.strategy(self._held.kind, self._held, honest, self.view)
            self._held = None
            self.view.sent.append(out)
            self.inner.send(out)
        if expect is not None:
            allowed = (expect,) if isinstance(expect, str) else expect
            if honest.kind not in allowed:
                from splitface.shared.wire import WireError

                raise WireError(f"unexpected message kind {honest.kind!r}")
        return honest

    def close(self) -> None:
        self.inner.close()


def honest_strategy(kind: str, ours: Message, honest: Message, view: AdversaryView) -> Message:
    return ours


def pair_with_adversary(strategy: Strategy, *, evil: int = 1, core: DealerCore | None = None,
                        epoch: int | None = None
                        ) -> tuple[Party, Party, AdversaryView, DealerCore]:
    """(honest party, malicious party, the adversary's view, the dealer); the dealer
    session runs at ``epoch`` (default: the dealer's current one)."""
    core = core or DealerCore()
    c0, c1 = local_pair()
    chans = [c0, c1]
    view = AdversaryView()
    chans[evil] = RushingChannel(chans[evil], strategy, view)
    preps = local_prep_pair(core, epoch=epoch)
    parties = [Party(i, chans[i], preps[i]) for i in (0, 1)]
    view.party = parties[evil]
    return parties[1 - evil], parties[evil], view, core


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


def run_honest_vs_adversary(fn: Callable[[Party], Any], honest: Party, evil: Party,
                            evil_fn: Callable[[Party], Any] | None = None,
                            timeout: float = 60.0) -> tuple[Outcome, Outcome]:
    """Run ``fn`` on the honest party and ``evil_fn`` (default ``fn``) on the malicious one."""
    outs = [Outcome(), Outcome()]

    def go(i: int, p: Party, f: Callable[[Party], Any]) -> None:
        try:
            outs[i].value = f(p)
        except BaseException as exc:  # the harness reports, the test judges
            outs[i].error = exc
            p.channel.close()

    threads = [threading.Thread(target=go, args=(0, honest, fn), daemon=True),
               threading.Thread(target=go, args=(1, evil, evil_fn or fn), daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError("computation did not finish")
    return outs[0], outs[1]


def shift_low(a: np.ndarray, delta: int, index: int = 0) -> np.ndarray:
    """Copy of a ring array with ``delta`` added to element ``index`` (mod 2^128)."""
    out = np.array(a, copy=True)
    flat = out.reshape(2, -1)
    v = ring.to_pyints(flat[:, index:index + 1])[0]
    flat[:, index:index + 1] = ring.from_pyint((v + delta) % (1 << 128), (1,))
    return out
