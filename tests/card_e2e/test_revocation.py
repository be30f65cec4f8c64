"""Revocation through the real daemons: a revoked identity's card is refused for good.

Its own module (own deployment): revoking deletes records and models on both servers.
"""

from __future__ import annotations

import pytest

from splitface.edge.card.monitor import ReaderFilter, ReaderMonitor
from splitface.edge.tap import TapStatus
from tests.card_e2e.conftest import OBAMA_CARD, server_state

pytestmark = [pytest.mark.card, pytest.mark.timeout(90)]


def removed(card, pcscd) -> None:
    """Take the card away and wait until pcscd has seen it go (it polls every 400 ms)."""
    card.remove()
    with ReaderMonitor(ReaderFilter(pcscd.readers[0])) as mon:
        assert mon.wait_for_removal(pcscd.readers[0], 5.0)


def test_revoked_card_is_refused_and_can_never_be_bound_again(enrolled, insert_card, tap_flow,
                                                              camera, photos, client,
                                                              deployment, running_pcscd):
    card = enrolled.cards["obama"]
    tapped = insert_card(card)
    camera.show(photos.probe["obama"][0])
    assert tap_flow.verify_once().status is TapStatus.ACCEPTED

    assert client.admin("revoke", "obama").status == "revoked"
    assert client.admin("train").status == "trained"
    for rows in server_state(client, deployment).cards:
        assert (OBAMA_CARD, "obama", "revoked") in [(r[0], r[2], r[3]) for r in rows]

    removed(tapped, running_pcscd)
    tapped = insert_card(card)  # the same card, tapped again
    camera.show(photos.probe["obama"][0])
    result = tap_flow.verify_once()
    # the card check runs first and finds the card revoked (a name that is not enrolled
    # is never told apart from a rejected face: docs/SECURITY.md)
    assert result.status is TapStatus.CARD_REJECTED and "revoked" in result.reason, result

    before = server_state(client, deployment)
    removed(tapped, running_pcscd)
    insert_card(card)
    result = tap_flow.enroll_with_card("obama-again", photos.enrol["obama"][:1])
    assert result.status is TapStatus.CARD_REJECTED and "revoked" in result.reason, result
    assert card.holder_ef.startswith(b"\x5f\x20\x05obama\x00")  # claim restored
    assert server_state(client, deployment) == before
