"""The dealer's MAC keys: one alpha per *key epoch*, kept across restarts.

Stored shares carry MACs under the alpha of the epoch they were made in, so the dealer
must give each server the same share of that alpha after every restart (a fresh split at
start made every stored share unusable). An epoch ends when a MAC check fails (the key is
retired) or when an operator rotates it; the next epoch gets a fresh alpha from the CSPRNG.
The dealer keeps an old epoch until both servers confirm that their stored shares have
been re-authenticated under a later one (docs/PROTOCOL.md, "Re-keying"), because the
re-keying material needs MACs under both keys.

The state file is JSON, written atomically with mode 0600 (it holds the key itself).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitface.servers.mpc.errors import ProtocolError
from splitface.shared import ring
from splitface.shared.fixedpoint import S
from splitface.shared.prg import Prg
from splitface.shared.private_files import write_secret_file

STATE_VERSION = 1
MAX_EPOCHS = 64  # old epochs kept for re-keying; beyond this a rotation is refused


@dataclass(frozen=True)
class EpochKey:
    """alpha of one epoch and party 0's additive share of it (party 1's is alpha - share0)."""

    alpha: int
    share0: int

    def share(self, party: int) -> np.ndarray:
        s0 = self.share0
        return ring.from_pyint(s0 if party == 0 else (self.alpha - s0) % (1 << 128))

    def alpha_ring(self) -> np.ndarray:
        return ring.from_pyint(self.alpha)


class KeyRing:
    """Epoch -> alpha, the current epoch, and what each server has confirmed it moved past.

    ``path`` None keeps everything in memory (tests, in-process runs).
    """

    def __init__(self, path: Path | None = None, *, rng: Prg | None = None) -> None:
        self._path = path
        self._rng = rng or Prg()
        self._lock = threading.Lock()
        self._epochs: dict[int, EpochKey] = {}
        self._confirmed = [0, 0]
        self.current = 0
        if path is not None and path.exists():
            self._load(path)
        if not self._epochs:
            self.current = 1
            self._epochs[1] = self._fresh()
            self._save()

    # ------------------------------------------------------------ queries
    def key(self, epoch: int) -> EpochKey:
        with self._lock:
            k = self._epochs.get(epoch)
        if k is None:
            raise ProtocolError(f"MAC key epoch {epoch} is unknown to the dealer "
                                f"(current {self.current})")
        return k

    def share(self, epoch: int, party: int) -> np.ndarray:
        return self.key(epoch).share(party)

    def epochs(self) -> list[int]:
        with self._lock:
            return sorted(self._epochs)

    # ------------------------------------------------------------ changes
    def rotate(self, epoch: int) -> int:
        """End ``epoch`` if it is the current one (a failed check, or an operator's rotation);
        returns the current epoch afterwards. Idempotent: rotating an old epoch is a no-op."""
        with self._lock:
            if epoch == self.current:
                if len(self._epochs) >= MAX_EPOCHS:
                    raise ProtocolError("too many MAC key epochs await re-keying; the servers "
                                        "must finish re-keying before another rotation")
                self.current += 1
                self._epochs[self.current] = self._fresh()
                self._save_locked()
            return self.current

    def confirm(self, party: int, epoch: int) -> None:
        """Party ``party`` holds no share under an epoch older than ``epoch`` any more; epochs
        that neither server needs are forgotten."""
        with self._lock:
            if epoch not in self._epochs or epoch < self._confirmed[party]:
                return
            self._confirmed[party] = epoch
            floor = min(self._confirmed)
            for e in [e for e in self._epochs if e < floor]:
                del self._epochs[e]
            self._save_locked()

    # ------------------------------------------------------------ persistence
    def _fresh(self) -> EpochKey:
        alpha = int.from_bytes(self._rng.bytes(S // 8), "little")
        share0 = int.from_bytes(self._rng.bytes(16), "little")
        return EpochKey(alpha, share0)

    def _save(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        if self._path is None:
            return
        state = {"version": STATE_VERSION, "current": self.current,
                 "confirmed": self._confirmed,
                 "epochs": {str(e): [f"{k.alpha:016x}", f"{k.share0:032x}"]
                            for e, k in self._epochs.items()}}
        write_secret_file(self._path, json.dumps(state, sort_keys=True).encode())

    def _load(self, path: Path) -> None:
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} is readable by others; run chmod 600 {path}")
        try:
            state = json.loads(path.read_bytes())
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported version {state.get('version')!r}")
            epochs = {int(e): EpochKey(int(a, 16), int(s, 16))
                      for e, (a, s) in state["epochs"].items()}
            current = int(state["current"])
            confirmed = [int(c) for c in state["confirmed"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is corrupt: {exc}") from None
        if current not in epochs or len(confirmed) != 2 or any(
                not 0 <= k.alpha < 1 << S or not 0 <= k.share0 < 1 << 128
                for k in epochs.values()):
            raise ValueError(f"{path} is corrupt: inconsistent epochs")
        self._epochs, self.current, self._confirmed = epochs, current, confirmed
