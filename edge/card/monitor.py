"""Reader and card presence events from SCardGetStatusChange, with deadlines.

Events: a card arriving (with its ATR), leaving, turning out mute, and readers being
plugged in or unplugged (through the ``\\\\?PnP?\\Notification`` pseudo-reader).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from smartcard import scard

from splitface.shared.closing import Closing

from .errors import NoCardError, NoReaderError, ReaderUnavailableError, UnresponsiveCardError
from .pcsc import PNP_READER, PcscContext, pcsc_error

_POLL_MS_MAX = 1000


class CardEventKind(Enum):
    INSERTED = "inserted"
    REMOVED = "removed"
    MUTE = "mute"
    READER_ADDED = "reader_added"
    READER_REMOVED = "reader_removed"


@dataclass(frozen=True)
class CardEvent:
    kind: CardEventKind
    reader: str
    atr: bytes = b""


@dataclass(frozen=True)
class ReaderFilter:
    """Which readers count: all, or those whose name contains ``name_contains``."""

    name_contains: str = ""

    def __call__(self, readers: list[str]) -> list[str]:
        return [r for r in readers if self.name_contains in r]


@dataclass
class _ReaderState:
    event: int = scard.SCARD_STATE_UNAWARE
    present: bool = False
    mute: bool = False
    atr: bytes = field(default=b"")


class ReaderMonitor(Closing):
    """Tracks readers and cards; ``events()`` yields changes until a deadline."""

    def __init__(
        self, reader_filter: ReaderFilter | None = None, context: PcscContext | None = None
    ) -> None:
        self._filter = reader_filter or ReaderFilter()
        self._own_context = context is None
        self._ctx = context or PcscContext()
        self._states: dict[str, _ReaderState] = {}
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._pnp_supported = True
        self._primed = False

    def close(self) -> None:
        if self._own_context:
            self._ctx.close()

    def cancel(self) -> None:
        """Wake a blocked ``events()`` from another thread."""
        self._ctx.cancel()

    def readers(self) -> list[str]:
        return self._filter(self._ctx.readers())

    def _sync_readers(self) -> list[CardEvent]:
        current = set(self.readers())
        events = [
            CardEvent(CardEventKind.READER_REMOVED, r) for r in self._states if r not in current
        ]
        for reader in [r for r in self._states if r not in current]:
            del self._states[reader]
        for reader in sorted(current - set(self._states)):
            self._states[reader] = _ReaderState()
            if self._primed:
                events.append(CardEvent(CardEventKind.READER_ADDED, reader))
        return events

    def _apply(self, reader: str, event_state: int, atr: bytes) -> list[CardEvent]:
        st = self._states.get(reader)
        if st is None:
            return []
        # pcsc-lite counts insertions and removals in the upper 16 bits: a card taken away
        # and put back between two polls leaves PRESENT set but moves the counter
        retapped = (st.present and self._primed
                    and (event_state >> 16) != (st.event >> 16) and st.event >> 16 != 0)
        st.event = event_state & ~scard.SCARD_STATE_CHANGED
        if event_state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
            del self._states[reader]
            return [CardEvent(CardEventKind.READER_REMOVED, reader)]
        present = bool(event_state & scard.SCARD_STATE_PRESENT)
        mute = present and bool(event_state & scard.SCARD_STATE_MUTE)
        out: list[CardEvent] = []
        if present and retapped:
            out.append(CardEvent(CardEventKind.REMOVED, reader))
            out.append(CardEvent(CardEventKind.MUTE if mute else CardEventKind.INSERTED, reader,
                                 bytes(atr)))
        elif present and not st.present:
            out.append(
                CardEvent(
                    CardEventKind.MUTE if mute else CardEventKind.INSERTED, reader, bytes(atr)
                )
            )
        elif not present and st.present:
            out.append(CardEvent(CardEventKind.REMOVED, reader))
        elif present and mute and not st.mute:
            out.append(CardEvent(CardEventKind.MUTE, reader, bytes(atr)))
        st.present, st.mute, st.atr = present, mute, bytes(atr) if present else b""
        return out

    def snapshot(self) -> dict[str, bytes]:
        """Readers that currently hold a responsive card, with their ATRs."""
        self._poll(0)
        return {r: s.atr for r, s in self._states.items() if s.present and not s.mute}

    def _poll(self, timeout_ms: int) -> list[CardEvent]:
        events = self._sync_readers()
        if not self._primed:
            timeout_ms = 0  # first call just learns the current state
        query = [(r, s.event) for r, s in self._states.items()]
        if self._pnp_supported:
            query.append((PNP_READER, self._pnp_state))
        if not query:
            time.sleep(timeout_ms / 1000)
            return events
        hresult, new_states = scard.SCardGetStatusChange(self._ctx.handle, timeout_ms, query)
        if hresult == scard.SCARD_E_TIMEOUT:
            self._primed = True
            return events
        if hresult in (scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE):
            return events + self._sync_readers()
        if hresult != scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "SCardGetStatusChange")
        for reader, event_state, atr in new_states:
            if reader == PNP_READER:
                if event_state & scard.SCARD_STATE_UNKNOWN:
                    self._pnp_supported = False
                self._pnp_state = event_state & ~scard.SCARD_STATE_CHANGED
                continue
            if event_state & scard.SCARD_STATE_CHANGED or not self._primed:
                events.extend(self._apply(reader, event_state, atr))
        was_primed, self._primed = self._primed, True
        events.extend(self._sync_readers())
        return (
            events
            if was_primed
            else [e for e in events if e.kind is not CardEventKind.READER_ADDED]
        )

    def events(self, timeout_s: float) -> Iterator[CardEvent]:
        """Yield presence changes until ``timeout_s`` passes (cards already present count)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            yield from self._poll(min(_POLL_MS_MAX, max(1, int(remaining * 1000))))

    def wait_for_card(self, timeout_s: float) -> CardEvent:
        """The next (or already present) responsive card; NoCardError on timeout."""
        present = self.snapshot()
        if present:
            reader = sorted(present)[0]
            return CardEvent(CardEventKind.INSERTED, reader, present[reader])
        if not self._states:
            raise NoReaderError("no PC/SC reader attached")
        for event in self.events(timeout_s):
            if event.kind is CardEventKind.INSERTED:
                return event
            if event.kind is CardEventKind.MUTE:
                raise UnresponsiveCardError(f"mute card in {event.reader!r} (no usable ATR)")
            if event.kind is CardEventKind.READER_REMOVED and not self._states:
                raise ReaderUnavailableError(f"reader {event.reader!r} was unplugged")
        raise NoCardError(f"no card presented within {timeout_s:.1f} s")

    def wait_for_removal(self, reader: str, timeout_s: float) -> bool:
        """True once ``reader`` is empty (or gone) within ``timeout_s``, or its card was taken
        away and put back since the last poll."""
        gone = (CardEventKind.REMOVED, CardEventKind.READER_REMOVED)
        if any(e.reader == reader and e.kind in gone for e in self._poll(0)):
            return True
        st = self._states.get(reader)
        if st is None or not st.present:
            return True
        for event in self.events(timeout_s):
            if event.reader == reader and event.kind in (
                CardEventKind.REMOVED,
                CardEventKind.READER_REMOVED,
            ):
                return True
        return False
