"""An honest Coordinator (P0) in process, against a scripted malicious P1 on a LocalChannel
(from the 2026-11-30 attacker review)."""

from __future__ import annotations

import os

from splitface.servers.cards.nonces import NonceStore
from splitface.servers.cards.registry import CardRegistry
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.base import session_id
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.local import LocalPreprocessing
from splitface.servers.service.coordinator import Coordinator
from splitface.servers.service.handlers import NodeOptions
from splitface.shared.transport.local import local_pair
from splitface.shared.wire import Message


class FakeDealerClient:
    """The DealerClient calls the coordinator makes, on an in-process DealerCore."""

    def __init__(self, core: DealerCore, party: int) -> None:
        self.core, self.party = core, party

    def current_epoch(self, timeout_s: float | None = None) -> int:
        return self.core.epoch

    def rotate(self, epoch: int) -> int:
        return self.core.request_rotation(self.party, epoch)

    def confirm(self, epoch: int) -> None:
        self.core.keys.confirm(self.party, epoch)

    def close(self) -> None:
        pass


def honest_p0(tmp_path, core: DealerCore, store):
    c0, c1 = local_pair()

    def prep_factory(session: str, epoch: int):
        return LocalPreprocessing(core, 0, session, epoch)

    node = Coordinator(0, None, c0, prep_factory, FakeDealerClient(core, 0), store,
                       CardRegistry(tmp_path / "cards0.db"), NonceStore(),
                       NodeOptions(peer_timeout_s=5.0))
    return node, c1


def evil_answer_resync(core: DealerCore, chan, state: dict, epoch: int) -> Party:
    """P1's side of the handshake with a chosen key state; returns its Party in the session."""
    msg = chan.recv("resync", timeout=10)
    nonce = os.urandom(16)
    sid = session_id(msg.meta["n"], nonce)
    prep = LocalPreprocessing(core, 1, sid, epoch)
    prep.open()  # registered first, so P0's registration completes the pair
    chan.send(Message("resync_ack", {"token": msg.meta["token"], "n": nonce, "state": state,
                                     "models": msg.meta["models"]}))  # P0's own: no healing
    chan.recv("resync_go", timeout=10)
    return Party(1, chan, prep)
