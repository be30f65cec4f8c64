"""A Coordinator in process with a scripted peer and a stub terminal gateway (admission tests)."""

from __future__ import annotations

import collections
from types import SimpleNamespace

from splitface.servers.cards.nonces import NonceStore
from splitface.servers.cards.registry import CardRegistry
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.service.coordinator import Coordinator, _offer_digest
from splitface.servers.service.gateway import Inbound
from splitface.servers.service.handlers import NodeOptions
from splitface.servers.store import ShareStore
from splitface.shared import api
from splitface.shared.transport.local import local_pair
from splitface.shared.wire import Message
from tests.adversary.coordinator_harness import FakeDealerClient


class StubGateway:
    """Terminal messages fed by the test; replies recorded."""

    def __init__(self) -> None:
        self.inbox: collections.deque[Inbound] = collections.deque()
        self.replies: list[tuple[bytes, Message]] = []
        self.sock = None

    def receive(self, timeout_ms: int):
        return self.inbox.popleft() if self.inbox else None

    def reply(self, ident: bytes, msg: Message) -> None:
        self.replies.append((ident, msg))


def offer(key: str, name: str, op: str = "identify", req: str = "r" * 16, dim: int = 128,
          identity: str = "") -> Inbound:
    meta = {"req": req, "op": op}
    if dim and op in api.INPUT_OPS:
        meta["dim"] = dim
    if identity:
        meta["identity"] = identity
    msg = Message("offer", meta)
    return Inbound(ident=key.encode()[:8], key=key, name=name, msg=msg,
                   offer=api.parse_offer(msg))


def make_node(tmp_path, party_id: int, options: NodeOptions | None = None):
    core = DealerCore()
    mine, peer = local_pair()
    gw = StubGateway()
    node = Coordinator(party_id, gw, mine, lambda s, e: None,
                       FakeDealerClient(core, party_id),
                       ShareStore(tmp_path / f"store{party_id}.db"),
                       CardRegistry(tmp_path / f"cards{party_id}.db"), NonceStore(),
                       options or NodeOptions(peer_timeout_s=1.0))
    ran: list = []
    node.rows_ran = []  # the rows of each run (its requests and padding rows)

    def record(txns, rows=1):  # instead of running the MPC
        ran.append(txns)
        node.rows_ran.append(rows)

    node._run = record
    node.party = SimpleNamespace(id=party_id, prep=None)  # "in a session", no dealer
    node.session = "s" * 24
    return node, gw, peer, ran


def begin_for(node, inbound: Inbound) -> Message:
    return Message("begin", {"req": inbound.offer.request_id, "key": inbound.key,
                             "sid": node.session, "offer": _offer_digest(inbound),
                             "has": False, "model_version": 0, "digest": ""})
