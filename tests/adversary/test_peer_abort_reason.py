"""The other server's abort reaches the terminal as its reason, and only as harmless text.

When one server aborts a run mid-protocol (its dealer failed, its check failed), it sends
``abort`` with a reason on the party channel. The other server read that message as a
malformed protocol message, so its terminal was told "malformed message from peer:
unexpected message kind 'abort'" instead of why the run ended. A malicious server chooses
that reason, and the honest one passes it on to a terminal's screen: it must arrive as
bounded, printable text, and an abort must never yield an output.
"""

from __future__ import annotations

import numpy as np
import pytest

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.local_runtime import make_parties
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.shared.wire import Message
from tests.mpc.harness import as_share, share_ints


def _open_against_abort(reason):
    """P0 opens a shared value while P1, instead of its opening, sends ``abort``."""
    core = DealerCore()
    p0, p1 = make_parties(core)
    try:
        s0, _ = share_ints(core, np.arange(4, dtype=np.int64))
        x = as_share(p0, s0)
        p1.channel.send(Message("abort", {"reason": reason}))
        with pytest.raises(ProtocolError) as err:
            p0.open((x.val, x.mac))
        return p0, err.value, (x.val, x.mac)
    finally:
        p0.channel.close()
        p1.channel.close()


def test_the_peers_reason_is_passed_on():
    party, err, _ = _open_against_abort("the dealer is unreachable (no reply in 3 s)")
    assert "the other server aborted" in str(err)
    assert "the dealer is unreachable" in str(err)
    assert "unexpected message kind" not in str(err)
    assert party.aborted and "dealer" in party.aborted


@pytest.mark.parametrize("reason", [
    "\x1b[8mhidden\x1b[0m ok",  # SGR 8 hides what follows on a terminal
    "\x1b]52;c;ZXZpbA==\x07",  # OSC 52 writes the clipboard
    "line one\nforged second line\r",
    "\u202eevil",  # a right-to-left override
    "x" * 100_000,
    12345,
    None,
    ["nested", {"x": 1}],
])
def test_a_hostile_reason_arrives_as_bounded_printable_text(reason):
    party, err, pair = _open_against_abort(reason)
    text = str(err)
    assert all(ch.isprintable() for ch in text), repr(text)
    assert len(text) <= 300  # the reason is bounded (200 characters) and escaped once
    assert party.aborted is not None
    with pytest.raises(ProtocolError):  # and the party never computes again
        party.open(pair)
