"""Admin status carries the name lists as a frame, not in the 64 KiB header (issue 14: a
gallery over about 4,000 identities made every status reply undecodable)."""

from __future__ import annotations

import numpy as np
import pytest

from splitface.shared import api, wire
from splitface.shared.wire import Message


def test_a_hundred_thousand_names_travel_in_a_status_reply():
    names = [f"person {i:06d} " + "x" * 100 for i in range(100_000)]
    lists = {"identities": names, "revoked": names[:10], "model_identities": names}
    msg = Message("done", {"req": "r" * 16, "identities_count": len(names)},
                  [api.pack_listing(lists)])
    frames = wire.encode(msg)
    assert len(frames[0]) < wire.MAX_HEADER_BYTES
    # names travel only when an admin asks (status --names); the edge then needs a
    # max_message_bytes above the listing's size (here 23 MB)
    got = wire.decode([bytes(f) for f in frames], expect=("done",), max_bytes=64 << 20)
    assert api.unpack_listing(got.arrays) == lists


@pytest.mark.parametrize("frame", [
    np.zeros(3, np.uint64),                                   # not bytes
    np.frombuffer(b"[1, 2]", np.uint8),                       # not a map
    np.frombuffer(b'{"identities": [1]}', np.uint8),          # not names
    np.frombuffer(b'{"secrets": []}', np.uint8),              # unknown list
])
def test_a_malformed_listing_is_refused(frame):
    with pytest.raises(ValueError):
        api.unpack_listing([frame])


def test_no_listing_for_non_admins():
    assert api.unpack_listing([]) == {}
