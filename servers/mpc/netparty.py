"""Build a Party on real sockets: CurveZMQ peer link plus the dealer service."""

from __future__ import annotations

import os
import time

import zmq

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing
from splitface.servers.mpc.prep.remote import RemotePreprocessing
from splitface.shared.transport.base import TransportError
from splitface.shared.transport.zmq_channel import ZmqChannel
from splitface.shared.wire import Message


def connect_party(party: int, context: zmq.Context, *, peer_endpoint: str,
                  public_key: bytes, secret_key: bytes, peer_public_key: bytes,
                  dealer_endpoint: str, dealer_public_key: bytes,
                  timeout_s: float = 60.0) -> Party:
    """P0 binds the peer link (its context must run a ZAP allow-list with P1's key), P1 connects.

    P0 chooses a fresh session id for the dealer and tells P1 over the encrypted link.
    """
    if party == 0:
        chan = ZmqChannel.bind(context, peer_endpoint, public_key=public_key,
                               secret_key=secret_key, default_timeout=timeout_s)
        session = os.urandom(12).hex()
        deadline = time.monotonic() + timeout_s
        while True:  # the peer may still be starting: PAIR refuses to queue before it connects
            try:
                chan.send(Message("session", {"id": session}))
                break
            except TransportError:
                if time.monotonic() > deadline:
                    raise
    else:
        chan = ZmqChannel.connect(context, peer_endpoint, public_key=public_key,
                                  secret_key=secret_key, server_key=peer_public_key,
                                  default_timeout=timeout_s)
        session = chan.recv("session").meta.get("id")
        if not isinstance(session, str) or len(session) != 24:
            raise ProtocolError("peer sent a malformed session id")
    chan.stats.rounds = 0
    prep = PrefetchingPreprocessing(RemotePreprocessing(
        context, dealer_endpoint, party=party, session=session, public_key=public_key,
        secret_key=secret_key, dealer_key=dealer_public_key, timeout_s=timeout_s))
    return Party(party, chan, prep)
