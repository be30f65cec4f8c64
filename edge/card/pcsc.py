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
from dataclasses import dataclass
from types import TracebackType

from smartcard import scard

from .errors import (
    CardBusyError,
    CardRemovedError,
    NoCardError,
    NoReaderError,
    PcscError,
    PcscUnavailableError,
    ReaderUnavailableError,
    UnresponsiveCardError,
)

_log = logging.getLogger(__name__)

PNP_READER = "\\\\?PnP?\\Notification"

_REMOVED = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_W_RESET_CARD, scard.SCARD_E_NO_SMARTCARD}
_MUTE = {
    scard.SCARD_W_UNRESPONSIVE_CARD,
    scard.SCARD_W_UNPOWERED_CARD,
    scard.SCARD_W_UNSUPPORTED_CARD,
    scard.SCARD_E_PROTO_MISMATCH,
}
_NO_SERVICE = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_E_INVALID_HANDLE,
}
_READER_GONE = {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE}


def pcsc_error(hresult: int, what: str) -> PcscError | Exception:
    """Map a SCARD_* code to the named exception the caller should see."""
    text = f"{what}: {scard.SCardGetErrorMessage(hresult)} (0x{hresult & 0xFFFFFFFF:08X})"
    if hresult in _REMOVED:
        return CardRemovedError(text)
    if hresult in _MUTE:
        return UnresponsiveCardError(text)
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


class PcscContext:
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

    def __enter__(self) -> PcscContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class ConnectionOptions:
    """How a tap is connected: exclusive by default so no other process interleaves APDUs."""

    exclusive: bool = True
    apdu_timeout_s: float | None = 5.0
    reset_on_close: bool = True  # drop the card's PIN state when the session ends


class PcscConnection:
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
        self._stuck = False
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

    def transmit(self, apdu: bytes) -> bytes:
        """Send one APDU; raise CardRemovedError / UnresponsiveCardError / PcscError."""
        if not self._open or self._stuck:
            raise CardRemovedError("connection is closed or was abandoned after a timeout")
        timeout = self._opts.apdu_timeout_s
        if timeout is None:
            hresult, response = self._raw_transmit(apdu)
        else:
            box: list[tuple[int, list[int]]] = []
            worker = threading.Thread(
                target=lambda: box.append(self._raw_transmit(apdu)),
                name="pcsc-transmit",
                daemon=True,
            )
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                self._stuck = True  # libpcsclite holds the context: never touch it again
                raise UnresponsiveCardError(
                    f"card on {self.reader!r} did not answer within {timeout:.1f} s"
                )
            hresult, response = box[0]
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._classify_failure(hresult)
        return bytes(response)

    def _classify_failure(self, hresult: int) -> Exception:
        """A transmit failure after removal often reads as a comm error: ask the reader."""
        if hresult not in _REMOVED:
            status, _r, state, _p, _a = scard.SCardStatus(self._card)
            if status in _REMOVED or (
                status == scard.SCARD_S_SUCCESS and state & scard.SCARD_ABSENT
            ):
                return CardRemovedError(
                    f"card left {self.reader!r} during the transaction "
                    f"({scard.SCardGetErrorMessage(hresult)})"
                )
            if status in _READER_GONE:
                return pcsc_error(status, "SCardTransmit")
        return pcsc_error(hresult, "SCardTransmit")

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._stuck:
            self._ctx.abandon()
            return
        disposition = (
            scard.SCARD_RESET_CARD if self._opts.reset_on_close else scard.SCARD_LEAVE_CARD
        )
        scard.SCardDisconnect(self._card, disposition)
        self._ctx.close()

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
