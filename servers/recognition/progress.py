"""Training progress that reveals nothing secret: position, time and traffic only.

No loss or accuracy is computed on shares for display: opening them would leak
information about the enrolments. A progress bar is drawn when stderr is a terminal;
each finished epoch is logged (journald keeps the lines under systemd).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

from splitface.shared.transport.base import ChannelStats

log = logging.getLogger("splitface.train")


class TrainingProgress:
    """Callable ``(epoch, batch)`` for ``train_logistic``; call ``close()`` at the end."""

    def __init__(self, epochs: int, batches_per_epoch: int, stats: ChannelStats,
                 tick: Callable[[], object] = lambda: None) -> None:
        self.epochs, self.per_epoch, self.stats, self.tick = epochs, batches_per_epoch, stats, tick
        self.bar = tqdm(total=epochs * batches_per_epoch, unit="batch", desc="secure training",
                        disable=not sys.stderr.isatty(), leave=False)
        self._t0 = self._te = time.perf_counter()
        self._b0 = stats.bytes_sent + stats.bytes_received
        self.lines: list[str] = []

    def __call__(self, epoch: int, batch: int) -> None:
        self.tick()
        self.bar.update(1)
        if batch == self.per_epoch - 1:
            now, traffic = time.perf_counter(), self.stats.bytes_sent + self.stats.bytes_received
            line = (f"epoch {epoch + 1}/{self.epochs}: {self.per_epoch} batches in "
                    f"{now - self._te:.2f} s, {(traffic - self._b0) / 2**20:.1f} MiB exchanged")
            self.lines.append(line)
            log.info(line)
            self._te, self._b0 = now, traffic

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self._t0
