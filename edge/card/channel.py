"""APDU exchange with the ISO 7816-4 transport-level status words handled.

* ``61xx``: the card holds ``xx`` more bytes (00 = 256); fetch them with GET RESPONSE
  (``00 C0 00 00 xx``) and concatenate until the final status word.
* ``6Cxx``: wrong Le; re-issue the same command once with Le = ``xx``.

Works over any ``RawTransport`` (PC/SC connection, or anything with ``transmit``).
"""

from __future__ import annotations

import logging
from typing import Protocol

from .apdu import CommandAPDU, ResponseAPDU, describe_sw
from .errors import MalformedResponseError

_log = logging.getLogger(__name__)

INS_GET_RESPONSE = 0xC0
MAX_RESPONSE_BYTES = 65536 + 2


class RawTransport(Protocol):
    def transmit(self, apdu: bytes) -> bytes: ...


class ApduChannel:
    """Sends CommandAPDUs and returns complete ResponseAPDUs."""

    def __init__(self, transport: RawTransport, max_get_response: int = 256) -> None:
        self._transport = transport
        self._max_get_response = max_get_response

    def _once(self, cmd: CommandAPDU) -> ResponseAPDU:
        resp = ResponseAPDU.from_bytes(self._transport.transmit(cmd.encode()))
        _log.debug("APDU %s -> %d bytes SW=%04X", cmd.header(), len(resp.data), resp.sw)
        return resp

    def _exchange(self, cmd: CommandAPDU) -> ResponseAPDU:
        resp = self._once(cmd)
        if resp.sw1 == 0x6C:
            _log.debug("SW=%04X (%s): re-issuing", resp.sw, describe_sw(resp.sw))
            resp = self._once(cmd.with_le(resp.sw2 or 256))
        return resp

    def transmit(self, cmd: CommandAPDU) -> ResponseAPDU:
        """One logical exchange, following 61xx and 6Cxx as ISO 7816-4 prescribes."""
        resp = self._exchange(cmd)
        data = bytearray(resp.data)
        rounds = 0
        while resp.sw1 == 0x61:
            rounds += 1
            if rounds > self._max_get_response or len(data) > MAX_RESPONSE_BYTES:
                raise MalformedResponseError("card keeps answering 61xx: response never ends")
            get = CommandAPDU(cmd.cla & 0x03, INS_GET_RESPONSE, 0x00, 0x00, le=resp.sw2 or 256)
            resp = self._exchange(get)
            data += resp.data
        return ResponseAPDU(bytes(data), resp.sw1, resp.sw2)
