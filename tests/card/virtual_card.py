"""A pure-Python contactless card for tests, plugged into the real pcscd via vpcd.

``VirtualCardApplet`` is the card: it generates its P-256 key on board (the private
key never leaves the object), keeps a PIN retry counter, and answers SELECT / READ
BINARY / UPDATE BINARY (holder EF) / VERIFY / INTERNAL AUTHENTICATE / GET RESPONSE like
the applet specified in
firmware_notes/smartcard.md. Knobs make it behave like awkward real cards: T=0-style
6Cxx on wrong Le, 61xx response chaining, silence (mute) or removal on a given INS.

``VpcdCard`` carries the applet to vpcd: a TCP client of the reader driver, framed as
``uint16_be(len) || payload``; a 1-byte payload is a control code (00 power off,
01 power on, 02 reset, 04 get ATR), anything else is a command APDU.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from splitface.edge.card.client import DEFAULT_AID
from splitface.edge.card.holder import HOLDER_EF_SIZE, encode_holder

T1_ATR = bytes.fromhex("3B80800101")  # T=1, no historical bytes, TCK=01
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4


def _sw(sw: int) -> bytes:
    return struct.pack(">H", sw)


@dataclass
class CardBehaviour:
    """How this card deviates from the happy path."""

    strict_le: bool = False  # answer 6Cxx when Le does not match the bytes available
    eof_sw: int = 0x9000  # SW for a short read (9000, or 6282 "end of file reached")
    chain_chunk: int | None = None  # return at most this many bytes, then 61xx
    mute_on: set[int] = field(default_factory=set)  # INS on which the card never answers
    remove_on: set[int] = field(default_factory=set)  # INS on which the card leaves the field


class VirtualCardApplet:
    """Card-side state machine; ``process`` maps one C-APDU to one R-APDU."""

    def __init__(
        self,
        card_id: bytes,
        *,
        pin: str | None = None,
        pin_tries: int = 3,
        aid: bytes = DEFAULT_AID,
        behaviour: CardBehaviour | None = None,
        atr: bytes = T1_ATR,
        holder: str = "",
    ) -> None:
        self.card_id = card_id
        self.holder_ef = bytearray(encode_holder(holder))  # fixed-size EF, written in place
        self.aid = aid
        self.atr = atr
        self.behaviour = behaviour or CardBehaviour()
        self._key = ec.generate_private_key(ec.SECP256R1())  # generated "on card"
        self._pin = None if pin is None else pin.encode().ljust(8, b"\xff")
        self.pin_tries_max = pin_tries
        self.pin_tries_left = pin_tries
        self.signatures_made = 0
        self.power_on()

    @property
    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def clone_with_id(self, card_id: bytes, holder: str = "") -> VirtualCardApplet:
        """A forged card claiming ``card_id`` but holding its own, different key."""
        return VirtualCardApplet(card_id, aid=self.aid, holder=holder)

    def twin(
        self, *, holder: str | None = None, behaviour: CardBehaviour | None = None
    ) -> VirtualCardApplet:
        """This very card (same id, same key) with its holder EF rewritten and/or other
        behaviour: e.g. a genuine card whose identity claim someone changed."""
        other = VirtualCardApplet(self.card_id, aid=self.aid, behaviour=behaviour, atr=self.atr)
        other._key = self._key
        other.holder_ef = bytearray(self.holder_ef if holder is None else encode_holder(holder))
        return other

    def power_on(self) -> None:
        self.selected = False
        self.pin_verified = False
        self.current_ef: bytes | None = None
        self._pending = b""

    def _files(self) -> dict[int, bytes]:
        return {0x01: self.card_id, 0x02: self.public_key, 0x03: bytes(self.holder_ef)}

    def _respond(self, data: bytes, le: int | None) -> bytes:
        chunk = self.behaviour.chain_chunk
        if chunk is not None and len(data) > chunk:
            first, self._pending = data[:chunk], data[chunk:]
            return first + bytes((0x61, min(len(self._pending), 256) & 0xFF))
        return data + _sw(0x9000)

    def process(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return _sw(0x6700)
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[4:]
        data, le = b"", None
        if len(body) == 1:
            le = body[0] or 256
        elif len(body) > 1:
            lc = body[0]
            if lc == 0 or len(body) not in (1 + lc, 2 + lc):
                return _sw(0x6700)
            data = body[1 : 1 + lc]
            if len(body) == 2 + lc:
                le = body[-1] or 256
        if cla != 0x00:
            return _sw(0x6E00)
        if ins != 0xC0:
            self._pending = b""
        handler = {
            0xA4: self._select,
            0xB0: self._read_binary,
            0xD6: self._update_binary,
            0x20: self._verify,
            0x88: self._internal_authenticate,
            0xC0: self._get_response,
        }.get(ins)
        if handler is None:
            return _sw(0x6D00)
        return handler(p1, p2, data, le)

    def _select(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p1 != 0x04:
            return _sw(0x6A86)
        if not hmac.compare_digest(data, self.aid):
            self.selected = False
            return _sw(0x6A82)
        self.selected = True
        self.current_ef = None
        fci = bytes((0x6F, len(self.aid) + 2, 0x84, len(self.aid))) + self.aid
        return self._respond(fci, le)

    def _read_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if not self.selected:
            return _sw(0x6985)
        if le is None:
            return _sw(0x6700)
        if p1 & 0x80:
            ef = self._files().get(p1 & 0x1F)
            if ef is None:
                return _sw(0x6A82)
            self.current_ef, offset = ef, p2
        else:
            if self.current_ef is None:
                return _sw(0x6986)
            offset = (p1 << 8) | p2
        ef = self.current_ef
        if offset > len(ef):
            return _sw(0x6B00)
        available = ef[offset : offset + le]
        if len(available) < le:
            if self.behaviour.strict_le:
                return _sw(0x6C00 | (len(available) & 0xFF))
            return available + _sw(self.behaviour.eof_sw)
        return self._respond(available, le)

    def _update_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        """Only the holder EF (SFI 03) is writable, and only with the PIN verified if set."""
        if not self.selected:
            return _sw(0x6985)
        if not p1 & 0x80:
            return _sw(0x6986)  # no current-EF writes: always name the file
        if (p1 & 0x1F) not in self._files():
            return _sw(0x6A82)
        if p1 & 0x1F != 0x03:
            return _sw(0x6986)  # card id and public key are never writable
        if self._pin is not None and not self.pin_verified:
            return _sw(0x6982)
        if not data:
            return _sw(0x6700)
        if p2 + len(data) > HOLDER_EF_SIZE:
            return _sw(0x6A84)
        self.holder_ef[p2 : p2 + len(data)] = data
        return _sw(0x9000)

    def _verify(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p1 != 0x00 or p2 != 0x81:
            return _sw(0x6A86)
        if self._pin is None:
            return _sw(0x6A88)
        if self.pin_tries_left == 0:
            return _sw(0x6983)
        if not data:
            return _sw(0x9000) if self.pin_verified else _sw(0x63C0 | self.pin_tries_left)
        if hmac.compare_digest(data, self._pin):
            self.pin_verified = True
            self.pin_tries_left = self.pin_tries_max
            return _sw(0x9000)
        self.pin_verified = False
        self.pin_tries_left -= 1
        return _sw(0x63C0 | self.pin_tries_left)

    def _internal_authenticate(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if not self.selected:
            return _sw(0x6985)
        if p1 != 0x00 or p2 != 0x81:
            return _sw(0x6A86)
        if len(data) != 32:
            return _sw(0x6700)
        if self._pin is not None and not self.pin_verified:
            return _sw(0x6982)
        self.signatures_made += 1
        return self._respond(self._key.sign(data, ec.ECDSA(hashes.SHA256())), le)

    def _get_response(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if not self._pending:
            return _sw(0x6985)
        n = le or 256
        if self.behaviour.strict_le and n > len(self._pending):
            return _sw(0x6C00 | (len(self._pending) & 0xFF))
        out, self._pending = self._pending[:n], self._pending[n:]
        if self._pending:
            return out + bytes((0x61, min(len(self._pending), 256) & 0xFF))
        return out + _sw(0x9000)


class VpcdCard:
    """Puts a VirtualCardApplet into a vpcd reader slot ("tap") and takes it out."""

    def __init__(
        self, applet: VirtualCardApplet, port: int, host: str = "127.0.0.1", quickack: bool = True
    ) -> None:
        self.applet = applet
        self._use_quickack = quickack
        self._addr = (host, port)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._gone = threading.Event()

    def _quickack(self, sock: socket.socket) -> None:
        # Linux clears QUICKACK after use; without it every APDU waits ~40 ms on a
        # delayed ACK interacting with Nagle on the driver side.
        if self._use_quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def insert(self) -> VpcdCard:
        sock = socket.create_connection(self._addr, timeout=5.0)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(self._use_quickack))
        self._quickack(sock)
        self._sock = sock
        self._gone.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name="vpcd-card", daemon=True
        )
        self._thread.start()
        return self

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("reader closed the connection")
            buf += chunk
        self._quickack(sock)
        return bytes(buf)

    def _send(self, sock: socket.socket, payload: bytes) -> None:
        sock.sendall(struct.pack(">H", len(payload)) + payload)
        self._quickack(sock)

    def _serve(self, sock: socket.socket) -> None:
        try:
            while not self._gone.is_set():
                (length,) = struct.unpack(">H", self._recv_exact(sock, 2))
                payload = self._recv_exact(sock, length)
                if length == 1:
                    code = payload[0]
                    if code in (CTRL_ON, CTRL_RESET, CTRL_OFF):
                        self.applet.power_on()
                    elif code == CTRL_ATR:
                        self._send(sock, self.applet.atr)
                    continue
                ins = payload[1] if len(payload) > 1 else -1
                if ins in self.applet.behaviour.remove_on:
                    self._close_socket()
                    return
                if ins in self.applet.behaviour.mute_on:
                    self._gone.wait()  # silent until the card is taken away
                    return
                self._send(sock, self.applet.process(payload))
        except (OSError, ConnectionError, struct.error):
            return

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def remove(self) -> None:
        """Take the card out of the field: the reader sees the connection drop."""
        self._gone.set()
        self._close_socket()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def __enter__(self) -> VpcdCard:
        return self.insert()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
