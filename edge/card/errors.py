"""Named failures of the card path, so the edge UI can say exactly what went wrong.

Hierarchy::

    CardError
    ├── PcscError                      PC/SC returned an unexpected code
    │   ├── PcscUnavailableError       no pcscd / service stopped
    │   ├── NoReaderError              no reader attached
    │   ├── ReaderUnavailableError     the reader was unplugged
    │   └── CardBusyError              another process holds the card exclusively
    ├── NoCardError                    nothing was tapped before the deadline
    ├── CardRemovedError               card left the field mid-transaction (or was reset)
    ├── UnresponsiveCardError          mute card: no ATR, or no answer before the deadline
    ├── MalformedResponseError         response shorter than a status word, or bad data
    ├── UnknownCardError               the card does not carry our application
    └── CardStatusError(sw)            a status word other than 9000
        ├── SecurityStatusError        6982 security status not satisfied
        ├── WrongPinError(retries)     63Cx
        ├── PinBlockedError            6983
        ├── CardFileNotFoundError      6A82
        └── WrongLengthError           6700 / 6Cxx that did not converge
"""

from __future__ import annotations


class CardError(Exception):
    """Base class of every card-path failure."""


class PcscError(CardError):
    """PC/SC layer failure; ``code`` is the SCARD_* value."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class PcscUnavailableError(PcscError):
    """pcscd is not running or went away."""


class NoReaderError(PcscError):
    """No PC/SC reader is attached (or none matches the configured name)."""


class ReaderUnavailableError(PcscError):
    """The reader in use was unplugged or vanished."""


class CardBusyError(PcscError):
    """Another process holds the card (sharing violation)."""


class NoCardError(CardError):
    """No card was presented before the deadline."""


class CardRemovedError(CardError):
    """The card was removed (or reset by someone else) during the transaction."""


class UnresponsiveCardError(CardError):
    """Mute card: it gave no usable ATR or did not answer before the deadline."""


class MalformedResponseError(CardError):
    """The card answered, but not with something ISO 7816-4 allows here."""


class UnknownCardError(CardError):
    """The card does not carry the splitface application (SELECT by AID failed)."""


class CardStatusError(CardError):
    """The card answered a status word other than 9000; ``sw`` holds it."""

    def __init__(self, message: str, sw: int) -> None:
        super().__init__(f"{message} (SW={sw:04X})")
        self.sw = sw


class SecurityStatusError(CardStatusError):
    """6982: the operation needs a verified PIN first."""


class WrongPinError(CardStatusError):
    """63Cx: PIN rejected; ``retries_left`` tries remain before the card blocks it."""

    def __init__(self, message: str, sw: int, retries_left: int) -> None:
        super().__init__(message, sw)
        self.retries_left = retries_left


class PinBlockedError(CardStatusError):
    """6983: the PIN is blocked; the card must be unblocked by its issuer."""


class CardFileNotFoundError(CardStatusError):
    """6A82: file or application not found."""


class WrongLengthError(CardStatusError):
    """6700, or a 6Cxx re-issue that the card refused again."""
