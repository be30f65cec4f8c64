"""Wire format validation: every malformed message is rejected with a reason."""

import msgpack
import numpy as np
import pytest

from splitface.shared import wire
from splitface.shared.wire import Message, WireError


def frames(msg):
    return [bytes(f) for f in wire.encode(msg)]


def test_round_trip():
    a = np.arange(12, dtype=np.uint64).reshape(2, 6)
    m = wire.decode(frames(Message("open", {"x": 1}, [a])), expect="open")
    assert m.kind == "open" and m.meta == {"x": 1}
    np.testing.assert_array_equal(m.arrays[0], a)


@pytest.mark.parametrize("mutate, reason", [
    (lambda f: [b"\xc1"] + f[1:], "not valid msgpack"),
    (lambda f: [msgpack.packb({"v": 9, "kind": "open", "meta": {}, "arrays": []})], "version"),
    (lambda f: [msgpack.packb({"v": 1, "kind": "open", "meta": {}})], "exactly"),
    (lambda f: f[:1], "frames arrived"),
    (lambda f: [f[0], f[1][:-8]], "needs"),
    (lambda f: [msgpack.packb({"v": 1, "kind": "open", "meta": {},
                               "arrays": [["c128", [1]]]}), b"x" * 16], "spec"),
    (lambda f: [msgpack.packb({"v": 1, "kind": "open", "meta": {},
                               "arrays": [["u64", [-1]]]}), b""], "spec"),
    (lambda f: [], "empty"),
])
def test_malformed(mutate, reason):
    good = frames(Message("open", {}, [np.zeros((2, 3), dtype=np.uint64)]))
    with pytest.raises(WireError, match=reason):
        wire.decode(mutate(good), expect="open")


def test_unexpected_kind_and_size_limit():
    f = frames(Message("hello", {}, [np.zeros(1000, dtype=np.uint64)]))
    with pytest.raises(WireError, match="unexpected message kind"):
        wire.decode(f, expect="open")
    with pytest.raises(WireError, match="exceeds the limit"):
        wire.decode(f, max_bytes=1000)


def test_unsendable_dtype():
    with pytest.raises(WireError, match="cannot be sent"):
        wire.encode(Message("x", {}, [np.zeros(2, dtype=np.complex128)]))
