"""In-process preprocessing: both parties draw from one DealerCore (tests, single-host runs)."""

from __future__ import annotations

import os

import numpy as np

from splitface.servers.mpc.prep import material
from splitface.servers.mpc.prep.base import Preprocessing
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.material import Item, Request


class LocalPreprocessing(Preprocessing):
    """One party's view of a shared in-process dealer; parts are paired by sequence number.

    The session must be registered by both parties (:meth:`open`) before anything is served.
    """

    def __init__(self, core: DealerCore, party: int, session: str = "local-session",
                 epoch: int | None = None) -> None:
        self.core, self.party, self.session = core, party, session
        self.epoch = core.epoch if epoch is None else epoch
        self._seq = 0

    def open(self, timeout_s: float | None = None) -> None:
        """Register the session with the in-process dealer (both parties do, in turn)."""
        self.core.register(self.session, self.party, self.epoch)

    def mac_key_share(self, epoch: int | None = None) -> np.ndarray:
        return self.core.mac_key_share(self.party, self.epoch if epoch is None else epoch)

    def _fetch(self, req: Request) -> Item:
        part = self.core.serve(self.session, self.party, self._seq, req)
        self._seq += 1
        if part.seed is not None:
            return material.item_p0(req, part.seed, part.arrays)
        return material.item_p1(req, part.arrays)


def local_pair(core: DealerCore | None = None, session: str | None = None,
               epoch: int | None = None) -> tuple[LocalPreprocessing, LocalPreprocessing]:
    """Preprocessing for both parties from one (new) dealer, the session registered by both."""
    core = core or DealerCore()
    session = session or os.urandom(12).hex()
    pair = LocalPreprocessing(core, 0, session, epoch), LocalPreprocessing(core, 1, session, epoch)
    pair[0].open()
    pair[1].open()
    core.session_epoch(session)  # raises unless both registrations paired up
    return pair
