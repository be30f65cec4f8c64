"""PC/SC access through pyscard's thin ``smartcard.scard`` layer.

We use the SCard* calls directly rather than pyscard's observer classes because the
edge needs exact PC/SC return codes (removed vs reset vs mute vs unplugged), bounded
waits, and one context per tap: a transmit stuck on a mute card holds its context's
lock inside libpcsclite, so it must not share that context with the reader monitor.

Point the client at a non-default pcscd with the libpcsclite variable
``PCSCLITE_CSOCK_NAME`` (read once per process, before the first context).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from smartcard import scard

from splitface.shared.closing import Closing

from .errors import (
    CardBusyError,
    CardRemovedError,
    NoCardError,
    NoReaderError,
    PcscError,
    PcscUnavailableError,
    ReaderUnavailableError,
    UnknownCardError,
    UnresponsiveCardError,
)

_log = logging.getLogger(__name__)

PNP_READER = "\\\\?PnP?\\Notification"
_SCARD_ABSENT = 0x0002  # pcsclite.h reader state (SCardStatus), not exported by pyscard
_REMOVAL_GRACE_S = 1.0  # the vpcd/pcscd presence poll runs every 400 ms

_REMOVED = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_W_RESET_CARD, scard.SCARD_E_NO_SMARTCARD}
_MUTE = {scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_W_UNPOWERED_CARD}
_UNSUPPORTED = {scard.SCARD_W_UNSUPPORTED_CARD, scard.SCARD_E_PROTO_MISMATCH}
_NO_SERVICE = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_E_INVALID_HANDLE,
}
_LOST = {scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_F_COMM_ERROR}
_READER_GONE = {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE}


def pcsc_error(hresult: int, what: str) -> PcscError | Exception:
    """Map a SCARD_* code to the named exception the caller should see."""
    text = f"{what}: {scard.SCardGetErrorMessage(hresult)} (0x{hresult & 0xFFFFFFFF:08X})"
    if hresult in _REMOVED:
        return CardRemovedError(text)
    if hresult in _MUTE:
        return UnresponsiveCardError(text)
    if hresult in _UNSUPPORTED:
        return UnknownCardError(f"{text}: the card's ATR offers no protocol this reader speaks")
    if hresult in _NO_SERVICE:
        return PcscUnavailableError(text, hresult)
    if hresult in _READER_GONE:
        return ReaderUnavailableError(text, hresult)
    if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
        return NoReaderError(text, hresult)
    if hresult == scard.SCARD_E_SHARING_VIOLATION:
        return CardBusyError(text, hresult)
    if hresult == scard.SCARD_E_TIMEOUT:
        return NoCardError(text)
    return PcscError(text, hresult)


def _check(hresult: int, what: str) -> None:
    if hresult != scard.SCARD_S_SUCCESS:
        raise pcsc_error(hresult, what)


class PcscContext(Closing):
    """One SCardEstablishContext; released on close / ``with`` exit."""

    def __init__(self) -> None:
        hresult, self._handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check(hresult, "SCardEstablishContext (is pcscd running?)")
        self._closed = False

    @property
    def handle(self) -> int:
        if self._closed:
            raise PcscError("PC/SC context already released")
        return self._handle

    def readers(self) -> list[str]:
        """Attached readers; empty when there are none."""
        hresult, readers = scard.SCardListReaders(self.handle, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _check(hresult, "SCardListReaders")
        return list(readers)

    def cancel(self) -> None:
        """Wake a blocked SCardGetStatusChange on this context (from another thread)."""
        if not self._closed:
            scard.SCardCancel(self._handle)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            scard.SCardReleaseContext(self._handle)

    def abandon(self) -> None:
        """Forget the context without releasing it: a call stuck on a mute card holds it."""
        self._closed = True


@dataclass(frozen=True)
class ConnectionOptions:
    """How a tap is connected: exclusive by default so no other process interleaves APDUs."""

    exclusive: bool = True
    apdu_timeout_s: float | None = 5.0
    reset_on_close: bool = True  # drop the card's PIN state when the session ends


class PcscConnection(Closing):
    """An SCardConnect handle with a per-APDU deadline; owns its own PcscContext."""

    def __init__(self, reader: str, options: ConnectionOptions | None = None) -> None:
        self.reader = reader
        self._opts = options or ConnectionOptions()
        self._ctx = PcscContext()
        share = scard.SCARD_SHARE_EXCLUSIVE if self._opts.exclusive else scard.SCARD_SHARE_SHARED
        hresult, self._card, self._protocol = scard.SCardConnect(
            self._ctx.handle, reader, share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if hresult != scard.SCARD_S_SUCCESS:
            self._ctx.close()
            raise pcsc_error(hresult, f"SCardConnect to {reader!r}")
        self._lock = threading.Lock()
        self._stuck = False
        self._abandoned = False
        self._inflight = False
        self._broken = False
        self._open = True

    @property
    def protocol(self) -> str:
        return "T=1" if self._protocol == scard.SCARD_PROTOCOL_T1 else "T=0"

    def atr(self) -> bytes:
        hresult, _reader, _state, _proto, atr = scard.SCardStatus(self._card)
        _check(hresult, "SCardStatus")
        return bytes(atr)

    def _raw_transmit(self, apdu: bytes) -> tuple[int, list[int]]:
        return scard.SCardTransmit(self._card, self._protocol, list(apdu))

    def _worker(self, apdu: bytes, box: list[tuple[int, list[int]]]) -> None:
        result = self._raw_transmit(apdu)
        with self._lock:
            box.append(result)
            self._inflight = False
            if self._abandoned:  # the caller gave up on us: release the card now
                self._release()

    def transmit(self, apdu: bytes) -> bytes:
        """Send one APDU; raise CardRemovedError / UnresponsiveCardError / PcscError."""
        if self._stuck:
            raise UnresponsiveCardError("an earlier APDU to this card is still unanswered")
        if not self._open or self._broken:
            raise CardRemovedError("connection closed, or lost after a failed exchange")
        timeout = self._opts.apdu_timeout_s
        if timeout is None:
            hresult, response = self._raw_transmit(apdu)
        else:
            box: list[tuple[int, list[int]]] = []
            worker = threading.Thread(
                target=self._worker, args=(apdu, box), name="pcsc-transmit", daemon=True
            )
            with self._lock:
                self._inflight = True
            worker.start()
            worker.join(timeout)
            with self._lock:
                if not box:
                    # libpcsclite holds this context until the card answers or leaves;
                    # the worker releases the handle then (see close()).
                    self._stuck = True
                    raise UnresponsiveCardError(
                        f"card on {self.reader!r} did not answer within {timeout:.1f} s"
                    )
            hresult, response = box[0]
        if hresult != scard.SCARD_S_SUCCESS:
            self._broken = True  # never send another APDU: the next card may be a different one
            raise self._classify_failure(hresult)
        if len(response) < 2:
            self._broken = True
            if self._card_gone(_REMOVAL_GRACE_S):
                # vpcd (and some readers) report a card pulled mid-APDU as an empty answer
                raise CardRemovedError(f"card left {self.reader!r} during the APDU")
        return bytes(response)

    def _card_gone(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            status, _r, state, _p, _a = scard.SCardStatus(self._card)
            if status in _REMOVED or status in _READER_GONE:
                return True
            if status in _NO_SERVICE:
                return False
            if status == scard.SCARD_S_SUCCESS and state & _SCARD_ABSENT:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _classify_failure(self, hresult: int) -> Exception:
        """A transmit failure after removal often reads as a comm error: ask the reader."""
        if hresult in _REMOVED or hresult in _NO_SERVICE or hresult in _READER_GONE:
            return pcsc_error(hresult, "SCardTransmit")
        if self._card_gone(_REMOVAL_GRACE_S) or hresult in _LOST:
            # NOT_TRANSACTED / COMM_ERROR while the slot still looks occupied: the card
            # was pulled (and maybe another one put down) faster than the reader polls.
            return CardRemovedError(
                f"card on {self.reader!r} stopped answering mid-transaction "
                f"({scard.SCardGetErrorMessage(hresult)})"
            )
        return pcsc_error(hresult, "SCardTransmit")

    def _release(self) -> None:
        disposition = (
            scard.SCARD_RESET_CARD if self._opts.reset_on_close else scard.SCARD_LEAVE_CARD
        )
        scard.SCardDisconnect(self._card, disposition)
        self._ctx.close()

    def close(self) -> None:
        """Reset and release the card; after a timeout, the stuck worker does it later."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            if self._inflight:
                self._abandoned = True
                return
        self._release()
