"""Errors that abort a computation. None of them is ever followed by an output."""


class ProtocolError(RuntimeError):
    """The peer or the dealer deviated from the protocol (malformed or inconsistent data)."""


class MacCheckError(ProtocolError):
    """The MAC check failed: some opened value or share was tampered with. Abort, re-key."""


class ShapeError(ValueError):
    """Operands with incompatible shapes or kinds (a programming error, caught before any round)."""
