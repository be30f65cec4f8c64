"""Tap-to-verify end to end: virtual card in the real pcscd, real daemons, real faces.

Each refusal must come back as a typed TapResult with a clear reason and leave both
servers' state (records, digests, model, card bindings) exactly as it was.
"""

from __future__ import annotations

import time

import pytest

from splitface.edge.card import CardTerminal, PinRequest, TerminalOptions
from splitface.edge.client import ServerRefused, SplitfaceClient
from splitface.edge.tap import TapFlow, TapOptions, TapStatus
from splitface.servers.cards import CardAuthReason, CardRegistry, NonceOptions, NonceStore
from splitface.shared import api
from splitface.shared.card_binding import RequestKind
from splitface.shared.wire import Message
from tests.card.conftest import FakeClock
from tests.card.flow import Server, check_all, sign_request
from tests.card.virtual_card import CardBehaviour, VirtualCardApplet
from tests.card_e2e.conftest import BIDEN_CARD, OBAMA_CARD, SERVER_TIMEOUT_S, server_state
from tests.services.conftest import client_for

pytestmark = [pytest.mark.card, pytest.mark.timeout(90)]


def test_enrolment_personalised_and_bound_the_cards(enrolled, deployment, client):
    obama = enrolled.results["obama"]
    assert obama.enrolled == 3 and obama.card_id == OBAMA_CARD.hex()
    assert enrolled.cards["obama"].holder_ef.startswith(b"\x5f\x20\x05obama")
    state = server_state(client, deployment)
    for rows in state.cards:  # both servers bound both cards, to the right identity
        assert [(r[0], r[2], r[3]) for r in rows] == [(OBAMA_CARD, "obama", "bound"),
                                                      (BIDEN_CARD, "biden", "bound")]
        assert rows[0][1] == enrolled.cards["obama"].public_key


def test_tap_then_own_face_is_accepted(enrolled, insert_card, tap_flow, camera, photos,
                                       client, deployment):
    before = server_state(client, deployment)
    insert_card(enrolled.cards["obama"])
    camera.show(photos.noface, photos.probe["obama"][0])  # first frame has no face
    result = tap_flow.verify_once()
    assert result.status is TapStatus.ACCEPTED and result.accepted, result
    assert result.identity == "obama" and result.card_id == OBAMA_CARD.hex()
    assert camera.served == 2
    for k in ("card_read_ms", "capture_embed_ms", "card_sign_ms", "mpc_verify_ms", "total_ms"):
        assert result.timings_ms[k] > 0, k
    assert server_state(client, deployment) == before  # a verification stores nothing


def test_another_face_with_the_card_is_rejected(enrolled, insert_card, tap_flow, camera,
                                                photos, client, deployment):
    before = server_state(client, deployment)
    insert_card(enrolled.cards["obama"])
    camera.show(photos.probe["biden"][0])
    result = tap_flow.verify_once()
    assert result.status is TapStatus.REJECTED and not result.accepted, result
    assert result.identity == "obama" and "does not match" in result.reason
    assert server_state(client, deployment) == before


class RecordingClient(SplitfaceClient):
    """An eavesdropper on the terminal's own link: keeps every message it sends."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.sent: list[Message] = []

    def _both(self, msgs, expect):
        self.sent.append(msgs[0])
        return super()._both(msgs, expect)


def test_replayed_submit_is_refused(enrolled, insert_card, pipeline, card_terminal, camera,
                                    photos, deployment):
    with client_for(deployment) as plain:
        opts = plain.opts
    with RecordingClient(opts) as client:
        before = server_state(client, deployment)
        flow = TapFlow(client, pipeline, card_terminal, camera, TapOptions(max_frames=3))
        insert_card(enrolled.cards["obama"])
        camera.show(photos.probe["obama"][0])
        assert flow.verify_once().status is TapStatus.ACCEPTED
        offer = next(m for m in client.sent if m.kind == "offer" and m.meta.get("card_id"))
        submit = next(m for m in client.sent if m.kind == "submit" and "card" in m.meta)
        # the attacker re-sends the captured offer and submit byte for byte
        client._both((offer, offer), ("offer",))
        with pytest.raises(ServerRefused) as err:
            client._both((submit, submit), ("result",))
        assert err.value.code == api.CARD_REJECTED
        assert err.value.reason == "replayed_signature"
        assert server_state(client, deployment) == before
    assert enrolled.cards["obama"].signatures_made >= 1


def test_cloned_card_id_with_another_key_is_refused(enrolled, insert_card, tap_flow, camera,
                                                    photos, client, deployment):
    before = server_state(client, deployment)
    insert_card(enrolled.cards["obama"].clone_with_id(OBAMA_CARD, holder="obama"))
    camera.show(photos.probe["obama"][0])  # even with the right face
    result = tap_flow.verify_once()
    assert result.status is TapStatus.CARD_REJECTED, result
    assert result.reason == "servers refused the card: wrong_card"
    assert server_state(client, deployment) == before


def test_other_card_claiming_the_identity_is_unknown(enrolled, insert_card, tap_flow, camera,
                                                     photos, client, deployment):
    before = server_state(client, deployment)
    insert_card(VirtualCardApplet(bytes.fromhex("53460000000000ff"), holder="obama"))
    camera.show(photos.probe["obama"][0])
    result = tap_flow.verify_once()
    assert result.status is TapStatus.UNKNOWN_CARD, result
    assert result.reason == "servers refused the card: unknown_card"
    assert server_state(client, deployment) == before


def test_card_rewritten_to_claim_someone_else_is_refused(enrolled, insert_card, tap_flow,
                                                         camera, photos, client, deployment):
    before = server_state(client, deployment)
    insert_card(enrolled.cards["biden"].twin(holder="obama"))  # genuine card, claim rewritten
    camera.show(photos.probe["obama"][0])
    result = tap_flow.verify_once()
    assert result.status is TapStatus.CARD_REJECTED, result
    assert result.reason == "servers refused the card: identity_mismatch"
    assert server_state(client, deployment) == before


def test_card_without_the_application_is_unknown(insert_card, tap_flow, camera, photos):
    insert_card(VirtualCardApplet(b"OTHER-APP", aid=bytes.fromhex("A000000003101001")))
    camera.show(photos.probe["obama"][0])
    result = tap_flow.verify_once()
    assert result.status is TapStatus.UNKNOWN_CARD and "splitface application" in result.reason
    assert camera.served == 0  # refused before the camera or the servers were involved
    again = tap_flow.verify_once(tap_timeout_s=0.5)  # left on the reader: counts once
    assert again.status is TapStatus.NO_CARD and "never taken away" in again.reason


def test_unpersonalised_card_is_unknown(insert_card, tap_flow, camera, photos):
    insert_card(VirtualCardApplet(bytes.fromhex("5346000000000c01")))
    camera.show(photos.probe["obama"][0])
    result = tap_flow.verify_once()
    assert result.status is TapStatus.UNKNOWN_CARD and "not personalised" in result.reason
    assert camera.served == 0


def test_no_card_and_no_face(enrolled, insert_card, tap_flow, camera, photos):
    result = tap_flow.verify_once(tap_timeout_s=0.3)
    assert result.status is TapStatus.NO_CARD
    insert_card(enrolled.cards["obama"])
    camera.show(photos.noface, photos.noface)
    result = tap_flow.verify_once()
    assert result.status is TapStatus.NO_FACE and "2 frame(s)" in result.reason, result


def test_card_pulled_while_the_camera_works(enrolled, insert_card, tap_flow, camera, photos,
                                            client, deployment):
    before = server_state(client, deployment)
    served_before = enrolled.cards["obama"].signatures_made
    card = insert_card(enrolled.cards["obama"])
    camera.show(photos.probe["obama"][0])
    camera.on_frame = card.remove
    result = tap_flow.verify_once()
    assert result.status is TapStatus.CARD_REMOVED, result
    assert enrolled.cards["obama"].signatures_made == served_before
    assert "verify_ms" in result.timings_ms and "card_sign_ms" not in result.timings_ms
    assert server_state(client, deployment) == before


def test_card_pulled_while_signing(enrolled, insert_card, tap_flow, camera, photos, client,
                                   deployment):
    before = server_state(client, deployment)
    # the genuine card, pulled when INTERNAL AUTHENTICATE arrives (after the offer)
    leaving = enrolled.cards["obama"].twin(behaviour=CardBehaviour(remove_on={0x88}))
    insert_card(leaving)
    camera.show(photos.probe["obama"][0])
    result = tap_flow.verify_once()
    assert result.status is TapStatus.CARD_REMOVED, result
    assert leaving.signatures_made == 0
    assert server_state(client, deployment) == before
    # the servers drop the unfinished request after their submit timeout and serve again
    assert wait_until_serving(deployment, tap_flow, photos) < SERVER_TIMEOUT_S + 5.0
    assert server_state(client, deployment) == before


def wait_until_serving(deployment, flow: TapFlow, photos, limit_s: float = 20.0) -> float:
    """Seconds until a fresh terminal connection gets an identification through."""
    embedding = flow.pipeline.process(photos.probe["obama"][0]).embedding
    t0 = time.monotonic()
    while True:
        with client_for(deployment, timeout=limit_s) as fresh:
            try:
                assert fresh.identify(embedding).identity == "obama"
                return time.monotonic() - t0
            except ServerRefused as exc:  # queued behind the abandoned request
                if time.monotonic() - t0 > limit_s:
                    raise
                assert exc.code in (api.PEER_UNAVAILABLE, api.TIMEOUT), exc


def _abandon_at_signing(enrolled, insert_card, flow: TapFlow, camera, photos) -> None:
    insert_card(enrolled.cards["obama"].twin(behaviour=CardBehaviour(remove_on={0x88})))
    camera.show(photos.probe["obama"][0])
    assert flow.verify_once().status is TapStatus.CARD_REMOVED


def test_pulled_card_does_not_stall_the_servers(enrolled, insert_card, tap_flow, camera,
                                                photos, deployment):
    _abandon_at_signing(enrolled, insert_card, tap_flow, camera, photos)
    try:
        assert wait_until_serving(deployment, tap_flow, photos) < 1.5
    finally:
        wait_until_serving(deployment, tap_flow, photos)


def test_terminal_is_not_answered_with_a_stale_reply(enrolled, insert_card, tap_flow, camera,
                                                     photos, client, deployment):
    _abandon_at_signing(enrolled, insert_card, tap_flow, camera, photos)
    embedding = tap_flow.pipeline.process(photos.probe["obama"][0]).embedding
    try:
        assert client.identify(embedding).identity == "obama"  # same terminal connection
    finally:
        wait_until_serving(deployment, tap_flow, photos)


def test_card_bound_identity_needs_its_card(enrolled, client, tap_flow, photos):
    """Plain (card-less) verification of an identity that has a card is rejected, even
    with the right face, and answered like any other rejection (no "card-bound" oracle)."""
    embedding = tap_flow.pipeline.process(photos.probe["obama"][0]).embedding
    out = client.verify("obama", embedding)
    assert out.status == "rejected" and out.accepted is False


def test_enrolling_a_card_bound_to_someone_else_is_refused(enrolled, insert_card, tap_flow,
                                                           photos, client, deployment):
    before = server_state(client, deployment)
    biden = enrolled.cards["biden"]
    insert_card(biden)
    result = tap_flow.enroll_with_card("astronaut", photos.enrol["astronaut"])
    assert result.status is TapStatus.CARD_REJECTED and result.enrolled == 0, result
    assert "bound to another identity" in result.reason
    assert biden.holder_ef.startswith(b"\x5f\x20\x05biden")  # restored after the refusal
    assert server_state(client, deployment) == before


def test_expired_nonce_is_refused_by_both_servers(insert_card, running_pcscd, tmp_path):
    """At the servers/cards layer: the daemons' nonce TTL (30 s, NonceStore default) is not
    configurable and exceeds their submit timeout, so a late signature reaches them as a
    missing submit; the TTL itself is checked here with the real card and a moved clock."""
    clock = FakeClock()
    servers = [Server(i, NonceStore(NonceOptions(ttl_s=30.0), clock),
                      CardRegistry(tmp_path / f"p{i}.db")) for i in (0, 1)]
    applet = VirtualCardApplet(OBAMA_CARD, holder="obama")
    for s in servers:
        s.registry.bind(applet.card_id, applet.public_key, "obama")
    insert_card(applet)
    opts = TerminalOptions(reader_name_contains=running_pcscd.readers[0], tap_timeout_s=5.0)
    with CardTerminal(opts) as term, term.tap() as session:
        assert session.read_holder() == "obama"
        request = sign_request(session, servers, RequestKind.VERIFY, "obama", b"payload")
    clock.advance(30.5)
    results = check_all(servers, request, RequestKind.VERIFY, b"payload")
    assert [r.reason for r in results] == [CardAuthReason.EXPIRED_NONCE] * 2
    for s in servers:
        s.registry.close()


def test_pin_card_enrols_and_verifies_only_with_its_pin(enrolled, insert_card, pipeline,
                                                        client, camera, photos, running_pcscd,
                                                        deployment):
    applet = VirtualCardApplet(bytes.fromhex("5346000000000e01"), pin="975310")
    asked: list[int] = []

    def terminal_with(pin: str) -> CardTerminal:
        def provider(request: PinRequest) -> str:
            asked.append(request.retries_left)
            return pin
        opts = TerminalOptions(reader_name_contains=running_pcscd.readers[0], tap_timeout_s=5.0)
        return CardTerminal(opts, provider)

    insert_card(applet)
    with terminal_with("975310") as term, TapFlow(client, pipeline, term, camera) as flow:
        result = flow.enroll_with_card("astronaut", photos.enrol["astronaut"])
    assert result.status is TapStatus.ENROLLED and result.enrolled == 1, result
    assert asked == [3]  # once per tap, up front: the holder write and signature need no more
    before = server_state(client, deployment)
    with terminal_with("000000") as term, TapFlow(client, pipeline, term, camera) as flow:
        camera.show(photos.probe["astronaut"][0] if photos.probe["astronaut"] else
                    photos.enrol["astronaut"][0])
        result = flow.verify_once()
    assert result.status is TapStatus.CARD_ERROR and "WrongPinError" in result.reason, result
    assert "verify_ms" not in result.timings_ms  # refused before any server transaction
    assert applet.pin_tries_left == 2 and applet.signatures_made == 1
    assert server_state(client, deployment) == before
    with terminal_with("975310") as term, TapFlow(client, pipeline, term, camera) as flow:
        camera.show(photos.enrol["astronaut"][0])
        result = flow.verify_once()
    assert result.status is TapStatus.ACCEPTED, result
    assert applet.pin_tries_left == 3


def test_frame_source_with_bad_frames_feeds_the_tap(enrolled, insert_card, client, pipeline,
                                                    card_terminal, photos, tmp_path):
    """A real FrameSource (image folder, as a camera would give frames) with a corrupt
    file and a face-less frame before the face: the tap skips both and verifies."""
    import cv2

    from splitface.edge.pipeline.capture import CaptureOptions, FrameSource

    (tmp_path / "0.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "1.jpg"), photos.noface)
    cv2.imwrite(str(tmp_path / "2.png"), photos.probe["obama"][0])
    insert_card(enrolled.cards["obama"])
    with FrameSource(CaptureOptions(source=str(tmp_path))) as source, \
            TapFlow(client, pipeline, card_terminal, source, TapOptions(max_frames=3)) as flow:
        result = flow.verify_once()
    assert result.status is TapStatus.ACCEPTED, result
