"""A malicious P0 against P1's session-start gallery opening ("warm").

P0 names the model version whose gallery both servers open when a session starts. P1
opens only its own current version, only in the session it is in, and only once per
session: otherwise P0 could make it load and open a gallery of 100,000 again and again
(each opening asks the dealer for a fresh D x N mask), or open an old version.
"""

from __future__ import annotations

import pytest

from splitface.shared.transport.base import TransportTimeout
from splitface.shared.wire import Message
from tests.adversary.stub_coordinator import make_node


@pytest.fixture
def p1(tmp_path):
    node, _, peer, _ = make_node(tmp_path, 1)
    warmed: list[int] = []
    node.handlers.warmable = lambda: 3  # its current model: version 3
    node.handlers.warm = warmed.append  # records instead of opening (no MPC here)
    return node, peer, warmed


def _ask(node, peer, meta: dict) -> bool:
    peer.send(Message("warm", meta))
    node._follow_if_asked()
    return bool(peer.recv("warm_ack", timeout=2.0).meta.get("ok"))


@pytest.mark.parametrize("meta", [
    {"version": 2},  # an older (or any other) version
    {"version": 4},
    {"version": True},  # not a version number
    {"version": "3"},
    {},
])
def test_p1_opens_only_its_own_current_version(p1, meta):
    node, peer, warmed = p1
    assert not _ask(node, peer, {"sid": node.session, **meta})
    assert warmed == []


def test_p1_opens_nothing_for_another_session(p1):
    node, peer, warmed = p1
    assert not _ask(node, peer, {"sid": "x" * 24, "version": 3})
    assert warmed == []


def test_p1_opens_at_most_once_per_session(p1):
    node, peer, warmed = p1
    assert _ask(node, peer, {"sid": node.session, "version": 3})
    for _ in range(3):
        assert not _ask(node, peer, {"sid": node.session, "version": 3})
    assert warmed == [3]


def test_p1_without_a_model_opens_nothing(p1):
    node, peer, warmed = p1
    node.handlers.warmable = lambda: 0
    assert not _ask(node, peer, {"sid": node.session, "version": 0})
    assert warmed == []


def test_p0_does_not_ask_again_when_the_other_server_never_answers(tmp_path):
    """A peer that ignores "warm" (another release, or one that plays dead) costs one
    timeout and one resync, not one every time the session restarts."""
    node, _, peer, _ = make_node(tmp_path, 0)
    node.handlers.warmable = lambda: 3
    node.peer_ok = True
    node._lead_warm()
    assert peer.recv("warm", timeout=1.0).meta["version"] == 3
    assert node.peer_ok is False
    node.session, node.peer_ok = "t" * 24, True  # the next session
    node._lead_warm()
    with pytest.raises(TransportTimeout):
        peer.recv("warm", timeout=0.5)


def test_a_model_naming_a_revoked_identity_is_neither_served_nor_opened(tmp_path):
    """(e.g. a malicious peer's heal rolled the model back past a revocation) The check
    reads the model's names as a set built once per version, not once per request."""
    from splitface.shared import api
    from splitface.shared.api import ApiError

    node, _, _, _ = make_node(tmp_path, 1)
    names = [f"id-{i:05d}" for i in range(20_000)]
    node.store.stage_models(1, {}, {"identities": names})
    node.store.commit_models(1)
    handlers = node.handlers
    assert handlers._revoked_in(node.store.model_meta()[1]) == []
    node.store.revoke("id-00042")
    version, meta = node.store.model_meta()
    txn = type("Txn", (), {"peer": {}})()
    with pytest.raises(ApiError) as err:
        handlers._servable(txn, version, meta)
    assert err.value.code == api.NO_MODEL and "id-00042" in err.value.reason
    assert handlers.warmable() == 0
    built = handlers._names
    handlers._revoked_in(node.store.model_meta()[1])
    assert handlers._names is built  # the same version's set, not rebuilt
