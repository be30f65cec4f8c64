"""Real CurveZMQ links over loopback with the keys and allow-lists that splitface-keys generates.

The server side runs pyzmq's ThreadAuthenticator with ``configure_curve(location=DIR)`` on the
allow-list folder from the generated config: an allowed key gets a reply, a key not on the list
is refused by ZAP (the client sees HANDSHAKE_FAILED_AUTH and its request times out).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from splitface.shared import keys
from splitface.shared.config import load_dealer_config, load_edge_config, load_server_config
from splitface.shared.deployment import Deployment, add_edge, revoke_edge

TIMEOUT_MS = 1500


@contextlib.contextmanager
def curve_rep_server(secret_key_file: Path, allow: Path | list[Path]) -> Iterator[tuple[str,
                                                                                        zmq.Socket]]:
    """A REP socket with CURVE server keys, guarded by a ZAP allow-list (folder or files)."""
    public, secret = keys.load_secret_key(secret_key_file)
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    try:
        if isinstance(allow, Path):
            auth.configure_curve(domain="*", location=allow)
        else:  # explicit files (the dealer's allowed_server_keys): a folder of just those
            auth.configure_curve_callback(domain="*", credentials_provider=_Files(allow))
        sock = ctx.socket(zmq.REP)
        sock.curve_server = True
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.linger = 0
        sock.rcvtimeo = TIMEOUT_MS
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        yield f"tcp://127.0.0.1:{port}", sock
        sock.close()
    finally:
        auth.stop()
        ctx.term()


class _Files:
    def __init__(self, paths: list[Path]) -> None:
        self.allowed = {keys.load_public_key(p) for p in paths}

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.allowed  # pyzmq passes the Z85 form


def request(endpoint: str, secret_key_file: Path, server_public_file: Path) -> tuple[bytes | None,
                                                                                      list[int]]:
    """One REQ round trip; returns (reply or None on timeout, monitor events seen)."""
    public, secret = keys.load_secret_key(secret_key_file)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.REQ)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_serverkey = keys.load_public_key(server_public_file)
        sock.linger = 0
        sock.rcvtimeo = TIMEOUT_MS
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED
                                          | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        monitor.rcvtimeo = TIMEOUT_MS
        sock.connect(endpoint)
        sock.send(b"ping")
        events = []
        with contextlib.suppress(zmq.Again):
            events.append(recv_monitor_message(monitor)["event"])
        if events != [zmq.EVENT_HANDSHAKE_SUCCEEDED]:
            sock.rcvtimeo = 200  # refused: confirm briefly that no reply sneaks through
        try:
            reply: bytes | None = sock.recv()
        except zmq.Again:
            reply = None
        sock.disable_monitor()
        monitor.close()
        sock.close()
        return reply, events
    finally:
        ctx.term()


def _serve_once(sock: zmq.Socket) -> None:
    with contextlib.suppress(zmq.Again):
        sock.send(b"pong:" + sock.recv())


def test_edge_to_server_allowed_and_refused(deployment: Deployment, tmp_path: Path) -> None:
    p0 = load_server_config(deployment.config_path("p0"), party=0)
    edge = load_edge_config(deployment.config_path("edge-1"))
    with curve_rep_server(p0.secret_key_file, p0.allowed_edge_keys_dir) as (endpoint, sock):
        server = threading.Thread(target=_serve_once, args=(sock,))
        server.start()
        reply, events = request(endpoint, edge.secret_key_file, edge.servers.p0.public_key_file)
        server.join()
        assert reply == b"pong:ping"
        assert events == [zmq.EVENT_HANDSHAKE_SUCCEEDED]

        # a terminal not on the list: well-formed key, right server key, refused by ZAP
        _, stranger = keys.write_keypair(tmp_path / "stranger", "stranger")
        reply, events = request(endpoint, stranger, edge.servers.p0.public_key_file)
        assert reply is None
        assert events == [zmq.EVENT_HANDSHAKE_FAILED_AUTH]


def test_added_edge_is_admitted_and_revoked_edge_refused(deployment: Deployment) -> None:
    """add-edge / revoke-edge change what a server (re-reading the folder at start) admits."""
    add_edge(deployment.root, "lobby-3")
    p1 = load_server_config(deployment.config_path("p1"), party=1)
    lobby = load_edge_config(deployment.config_path("lobby-3"))
    with curve_rep_server(p1.secret_key_file, p1.allowed_edge_keys_dir) as (endpoint, sock):
        server = threading.Thread(target=_serve_once, args=(sock,))
        server.start()
        reply, _ = request(endpoint, lobby.secret_key_file, lobby.servers.p1.public_key_file)
        server.join()
        assert reply == b"pong:ping"

    edge2 = load_edge_config(deployment.config_path("edge-2"))
    kept = deployment.root.parent / "edge-2-secret"
    kept.write_bytes(edge2.secret_key_file.read_bytes())
    kept.chmod(0o600)
    revoke_edge(deployment.root, "edge-2")
    with curve_rep_server(p1.secret_key_file, p1.allowed_edge_keys_dir) as (endpoint, sock):
        reply, events = request(endpoint, kept, deployment.keys_dir("p1") / "p1.key")
        assert reply is None and events == [zmq.EVENT_HANDSHAKE_FAILED_AUTH]


@pytest.mark.parametrize("server_name", ["p0", "p1"])
def test_server_to_dealer(deployment: Deployment, server_name: str) -> None:
    dealer = load_dealer_config(deployment.config_path("dealer"))
    server = load_server_config(deployment.config_path(server_name))
    with curve_rep_server(dealer.secret_key_file, list(dealer.allowed_server_keys)) as (ep, sock):
        thread = threading.Thread(target=_serve_once, args=(sock,))
        thread.start()
        reply, _ = request(ep, server.secret_key_file, server.dealer_public_key_file)
        thread.join()
        assert reply == b"pong:ping"
        # an edge key must not reach the dealer
        edge = load_edge_config(deployment.config_path("edge-1"))
        reply, events = request(ep, edge.secret_key_file, server.dealer_public_key_file)
        assert reply is None and events == [zmq.EVENT_HANDSHAKE_FAILED_AUTH]


def test_peer_link_pins_each_others_keys(deployment: Deployment) -> None:
    """P1 connects to P0 with P0's public key from its config, and P0 admits exactly P1's key."""
    p0 = load_server_config(deployment.config_path("p0"), party=0)
    p1 = load_server_config(deployment.config_path("p1"), party=1)
    with curve_rep_server(p0.secret_key_file, [p0.peer_public_key_file]) as (endpoint, sock):
        thread = threading.Thread(target=_serve_once, args=(sock,))
        thread.start()
        reply, _ = request(endpoint, p1.secret_key_file, p1.peer_public_key_file)
        thread.join()
        assert reply == b"pong:ping"


def test_running_server_follows_allow_list_changes(deployment: Deployment) -> None:
    """With keys.AllowListDir as ZAP provider, add-edge/revoke-edge apply without a restart."""
    p0 = load_server_config(deployment.config_path("p0"), party=0)
    public, secret = keys.load_secret_key(p0.secret_key_file)
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    stop = threading.Event()
    try:
        auth.configure_curve_callback(domain="*", credentials_provider=keys.AllowListDir(
            p0.allowed_edge_keys_dir))
        sock = ctx.socket(zmq.REP)
        sock.curve_server, sock.curve_secretkey, sock.curve_publickey = True, secret, public
        sock.linger, sock.rcvtimeo = 0, 100
        endpoint = f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}"

        def serve() -> None:
            while not stop.is_set():
                _serve_once(sock)

        server = threading.Thread(target=serve)
        server.start()
        try:
            add_edge(deployment.root, "late-1")
            late = load_edge_config(deployment.config_path("late-1"))
            reply, _ = request(endpoint, late.secret_key_file, late.servers.p0.public_key_file)
            assert reply == b"pong:ping"
            kept = deployment.root.parent / "late-1.key_secret"
            kept.write_bytes(late.secret_key_file.read_bytes())
            kept.chmod(0o600)
            revoke_edge(deployment.root, "late-1")
            reply, events = request(endpoint, kept, deployment.keys_dir("p0") / "p0.key")
            assert reply is None and events == [zmq.EVENT_HANDSHAKE_FAILED_AUTH]
        finally:
            stop.set()
            server.join()
            sock.close()
    finally:
        auth.stop()
        ctx.term()
