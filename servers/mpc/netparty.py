"""Build a Party on real sockets: CurveZMQ peer link plus the dealer service (tests, benchmarks)."""

from __future__ import annotations

import os
import time

import zmq

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.base import NONCE_BYTES, session_id
from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing
from splitface.servers.mpc.prep.remote import DealerClient, RemotePreprocessing
from splitface.shared.transport.base import TransportError
from splitface.shared.transport.zmq_channel import ZmqChannel
from splitface.shared.wire import Message


def connect_party(party: int, context: zmq.Context, *, peer_endpoint: str,
                  public_key: bytes, secret_key: bytes, peer_public_key: bytes,
                  dealer_endpoint: str, dealer_public_key: bytes,
                  timeout_s: float = 60.0) -> Party:
    """P0 binds the peer link (its context must run a ZAP allow-list with P1's key), P1 connects.

    The dealer session id is derived from a fresh nonce of each server; both register it
    with the dealer under its current key epoch before anything is served.
    """
    nonce = os.urandom(NONCE_BYTES)
    if party == 0:
        chan = ZmqChannel.bind(context, peer_endpoint, public_key=public_key,
                               secret_key=secret_key, default_timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:  # the peer may still be starting: PAIR refuses to queue before it connects
            try:
                chan.send(Message("hello", {"n": nonce}))
                break
            except TransportError:
                if time.monotonic() > deadline:
                    raise
        peer = chan.recv("hello").meta.get("n")
    else:
        chan = ZmqChannel.connect(context, peer_endpoint, public_key=public_key,
                                  secret_key=secret_key, server_key=peer_public_key,
                                  default_timeout=timeout_s)
        peer = chan.recv("hello").meta.get("n")
        chan.send(Message("hello", {"n": nonce}))
    if not isinstance(peer, bytes) or len(peer) != NONCE_BYTES:
        raise ProtocolError("peer sent a malformed session nonce")
    session = session_id(*((nonce, peer) if party == 0 else (peer, nonce)))
    chan.stats.rounds = 0
    client = DealerClient(context, dealer_endpoint, party=party, public_key=public_key,
                          secret_key=secret_key, dealer_key=dealer_public_key,
                          timeout_s=timeout_s)
    prep = PrefetchingPreprocessing(RemotePreprocessing(client, session=session,
                                                        epoch=client.current_epoch()))
    prep.open()
    return Party(party, chan, prep)
