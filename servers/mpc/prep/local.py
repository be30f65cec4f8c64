"""In-process preprocessing: both parties draw from one DealerCore (tests, single-host runs)."""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc.prep import material
from splitface.servers.mpc.prep.base import AuthPair, Preprocessing
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.material import Request


class LocalPreprocessing(Preprocessing):
    """One party's view of a shared in-process dealer; parts are paired by sequence number."""

    def __init__(self, core: DealerCore, party: int, session: str = "local") -> None:
        self.core, self.party, self.session = core, party, session
        self._seq = 0

    def mac_key_share(self) -> np.ndarray:
        return self.core.mac_key_share(self.party)

    def _fetch(self, req: Request) -> list[AuthPair]:
        part = self.core.serve(self.session, self.party, self._seq, req)
        self._seq += 1
        if part.seed is not None:
            return material.expand_p0(req, part.seed)
        return material.unpack_p1(req, part.arrays)


def local_pair(core: DealerCore | None = None, session: str = "local"
               ) -> tuple[LocalPreprocessing, LocalPreprocessing]:
    """Preprocessing for both parties from one (new) dealer."""
    core = core or DealerCore()
    return LocalPreprocessing(core, 0, session), LocalPreprocessing(core, 1, session)
