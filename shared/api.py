"""The edge <-> server request protocol (both sides validate with this module).

A request is a two-step transaction with *both* servers, identified by a request id
that the edge chooses (and reuses on retry, which makes retries idempotent):

1. ``offer``  (edge -> P0 and P1): op, request id, parameters. Each server answers
   ``offer`` with its value shares of fresh input triples (and a card nonce when the
   request is card-bound), or ``done``/``error`` straight away.
2. ``submit`` (edge -> P0 and P1): the masked inputs (and the card's signature). Each
   server answers ``result`` (its copy of the opened, still edge-masked output),
   ``done`` (enrolment stored) or ``error``.

``status`` is answered at once by each server. Admin operations (``train``, ``revoke``,
``reconcile``, ``rotate_key``) follow the same two-step pattern without inputs; enrolment
is admin-only too.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitface.shared.card_binding import payload_digest
from splitface.shared.names import NAME_BYTES, NAME_WORDS
from splitface.shared.text import escaped
from splitface.shared.wire import Message

OPS = ("enroll", "identify", "verify", "status", "train", "revoke", "restore", "reconcile",
       "rotate_key")
# who may change what the servers hold: terminals listed in the servers' admin_terminals
ADMIN_OPS = frozenset({"enroll", "train", "revoke", "restore", "reconcile", "rotate_key"})
INPUT_OPS = frozenset({"enroll", "identify", "verify"})
MAX_DIM = 1024
_REQ = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_IDENT = re.compile(r"[\w .'@-]+")
IDENTITY_BYTES = NAME_BYTES  # an identification result carries the name (shared/names.py)

# error codes sent to the edge
BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"
UNKNOWN_IDENTITY = "unknown_identity"
NO_MODEL = "no_model"
WRONG_DIMENSION = "wrong_dimension"
REVOKED = "revoked"
CARD_REJECTED = "card_rejected"
PEER_UNAVAILABLE = "peer_unavailable"
OUT_OF_SYNC = "out_of_sync"
ABORTED = "aborted"
TIMEOUT = "timeout"
BUSY = "busy"
BAD_PROBE = "bad_probe"  # the servers found the probe out of range (not a unit embedding)
RATE_LIMITED = "rate_limited"
DEALER_UNAVAILABLE = "dealer_unavailable"
NOT_THE_SAME_PERSON = "not_the_same_person"  # enrolment under a name whose template it misses
# a retry with the same request id may succeed (the pair was resynchronising, the dealer or
# the other server was restarting); the client retries these by itself
TRANSIENT = frozenset({PEER_UNAVAILABLE, DEALER_UNAVAILABLE, ABORTED, TIMEOUT, BUSY})


class ApiError(ValueError):
    """A request the server refuses; ``code`` is one of the module's error codes."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class Offer:
    """A validated first step."""

    request_id: str
    op: str
    dim: int = 0
    identity: str = ""
    card_id: bytes = b""
    params: tuple[tuple[str, Any], ...] = ()

    def inputs(self) -> int:
        """How many values the edge inputs: the embedding plus one mask per output."""
        return self.dim + self.outputs() if self.op in INPUT_OPS else 0

    def outputs(self) -> int:
        """Identification returns the matched name's words, verification the accept bit."""
        return {"identify": NAME_WORDS, "verify": 1}.get(self.op, 0)

    def to_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"req": self.request_id, "op": self.op}
        if self.dim:
            meta["dim"] = self.dim
        if self.identity:
            meta["identity"] = self.identity
        if self.card_id:
            meta["card_id"] = self.card_id
        if self.params:
            meta["params"] = dict(self.params)
        return meta


def check_request_id(v: Any) -> str:
    if not isinstance(v, str) or not _REQ.fullmatch(v):
        raise ApiError(BAD_REQUEST, "request id must be 8-64 characters of [A-Za-z0-9_-]")
    return v


def check_identity(v: Any) -> str:
    """A name every part can carry: letters, digits, space or ._'@- only (no newline), at
    most IDENTITY_BYTES of UTF-8 (the name table's row), in Unicode NFC (one spelling)."""
    if (not isinstance(v, str) or not _IDENT.fullmatch(v)
            or len(v.encode()) > IDENTITY_BYTES or unicodedata.normalize("NFC", v) != v):
        raise ApiError(BAD_REQUEST, f"identity must be letters, digits, space or ._'@-, at most "
                                    f"{IDENTITY_BYTES} bytes of UTF-8 in NFC form")
    return v


def normal_identity(v: str) -> str:
    """What a terminal sends for a name typed or read from a folder: its NFC form, checked."""
    return check_identity(unicodedata.normalize("NFC", v) if isinstance(v, str) else v)


def parse_offer(msg: Message) -> Offer:
    """Validate an ``offer`` message (or a ``status``, which has no second step)."""
    meta = msg.meta
    if msg.arrays:
        raise ApiError(BAD_REQUEST, "an offer carries no arrays")
    op = meta.get("op")
    if op not in OPS:
        raise ApiError(BAD_REQUEST, f"unknown operation {op!r}")
    unknown = set(meta) - {"req", "op", "dim", "identity", "card_id", "params"}
    if unknown:
        raise ApiError(BAD_REQUEST, f"unknown fields {sorted(unknown)}")
    req = check_request_id(meta.get("req"))
    dim = meta.get("dim", 0)
    if op in INPUT_OPS:
        if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
            raise ApiError(BAD_REQUEST, f"dim must be an integer in [1, {MAX_DIM}]")
    elif dim:
        raise ApiError(BAD_REQUEST, f"{op} takes no embedding")
    identity = meta.get("identity", "")
    if op in ("enroll", "verify", "revoke", "restore"):
        identity = check_identity(identity)
    elif identity:
        raise ApiError(BAD_REQUEST, f"{op} takes no identity")
    card_id = meta.get("card_id", b"")
    if not isinstance(card_id, bytes) or len(card_id) > 64:
        raise ApiError(BAD_REQUEST, "card_id must be at most 64 bytes")
    if card_id and op not in ("enroll", "verify"):
        raise ApiError(BAD_REQUEST, f"{op} is not card-bound")
    params = meta.get("params", {})
    if not isinstance(params, dict) or len(params) > 16 or not all(
            isinstance(k, str) and isinstance(v, (int, float, str, bool)) for k, v in
            params.items()):
        raise ApiError(BAD_REQUEST, "params must be a small map of scalars")
    return Offer(req, op, dim, identity, card_id, tuple(sorted(params.items())))


def card_payload_digest(request_id: str, masked: np.ndarray) -> bytes:
    """What a card signs for a request: its id and the exact masked vector sent to both
    servers, so a signature cannot be replayed or moved to another embedding."""
    return payload_digest(request_id.encode() + b"|" + np.ascontiguousarray(masked).tobytes())


LISTING_KEYS = ("identities", "revoked", "model_identities")
MAX_LISTING_BYTES = 32 << 20  # 100,000 names of 128 bytes fit three times over


def pack_listing(lists: dict[str, list[str]]) -> np.ndarray:
    """Name lists as one JSON array frame: a list in the message header stopped status
    replies past about 4,000 identities (the header is capped at 64 KiB)."""
    return np.frombuffer(json.dumps(lists, separators=(",", ":")).encode(), dtype=np.uint8)


def unpack_listing(arrays: list[np.ndarray]) -> dict[str, list[str]]:
    """The name lists of a status reply (empty when it carries none); raises ValueError
    for a frame that is not such a listing. Names are printed on an admin's terminal, so a
    name with a control or format character (an escape sequence from a malicious server)
    or longer than any stored name refuses the whole listing."""
    if not arrays:
        return {}
    frame = arrays[0]
    if frame.dtype != np.uint8 or frame.ndim != 1 or frame.size > MAX_LISTING_BYTES:
        raise ValueError("malformed name listing")
    try:
        lists = json.loads(frame.tobytes().decode())
    except RecursionError:  # deeply nested JSON from a malicious server
        raise ValueError("malformed name listing") from None
    if not isinstance(lists, dict) or not all(
            k in LISTING_KEYS and isinstance(v, list) and all(_printable_name(n) for n in v)
            for k, v in lists.items()):
        raise ValueError("malformed name listing")
    return lists


def printable(value: Any, limit: int) -> str:
    """Text another party chose (the other server's reason for a refusal or an abort), as
    bounded, printable text: it ends up on a terminal's screen, where a control character
    could hide or forge lines (SGR 8) or write the clipboard (OSC 52). Anything not
    printable is escaped; a value that is not a string is shown as "no reason given"."""
    if not isinstance(value, str):
        return "no reason given"
    return escaped(value[:limit])[:limit] or "no reason given"


def _printable_name(n: Any) -> bool:
    return (isinstance(n, str) and len(n.encode()) <= IDENTITY_BYTES
            and not any(unicodedata.category(ch)[0] == "C" for ch in n))


def error(req: str, code: str, reason: str) -> Message:
    return Message("error", {"req": req, "code": code, "reason": reason})
