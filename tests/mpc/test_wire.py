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


def test_large_arrays_travel_in_chunk_frames_and_come_back_whole():
    """Arrays over CHUNK_BYTES go as consecutive frames of exactly CHUNK_BYTES plus the
    rest (cache-sized CurveZMQ buffers); the receiver gets the same arrays back."""
    big = np.arange(3 * wire.CHUNK_BYTES // 8 + 5, dtype=np.uint64)  # 3 chunks and 40 bytes
    exact = np.arange(wire.CHUNK_BYTES // 8, dtype=np.uint64)  # one full chunk
    small, empty = np.arange(6, dtype=np.int64).reshape(2, 3), np.zeros((0, 4), np.uint64)
    f = frames(Message("part", {"seq": 1}, [small, big, empty, exact]))
    assert [len(x) for x in f[1:]] == [48, *[wire.CHUNK_BYTES] * 3, 40, 0, wire.CHUNK_BYTES]
    m = wire.decode(f, expect="part")
    for got, want in zip(m.arrays, [small, big, empty, exact], strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        assert not got.flags.writeable  # reassembled or not: nobody writes into a message


@pytest.mark.parametrize("resplit", [
    lambda f: [f[0], f[1] + f[2], *f[3:]],  # two chunks merged into one frame
    lambda f: [f[0], f[1][:100], f[1][100:], *f[2:]],  # a chunk split in two
    lambda f: [f[0], *f[1:], b""],  # one frame too many
    lambda f: [f[0], *f[1:-1]],  # the last frame missing
    lambda f: [f[0], f[1], f[2][:-8], f[3] + f[2][-8:]],  # bytes moved between frames
])
def test_frames_that_do_not_split_the_arrays_exactly_are_refused(resplit):
    """Only the one canonical split is read: a peer cannot make the receiver assemble an
    array from frames of its choosing, nor flood it with tiny frames."""
    big = np.arange(2 * wire.CHUNK_BYTES // 8 + 3, dtype=np.uint64)
    good = frames(Message("part", {}, [big]))
    assert len(good) == 4
    with pytest.raises(WireError, match="frames"):
        wire.decode(resplit(good), expect="part")


def test_a_consumed_message_lets_go_of_each_chunk_once_copied():
    """Receivers of large messages (the peer link, the dealer client) pass consume=True:
    the chunk frames leave the list as they are copied, so their ZeroMQ buffers are freed
    during reassembly instead of after it; one-frame arrays stay views of their frame."""
    big = np.arange(2 * wire.CHUNK_BYTES // 8 + 1, dtype=np.uint64)
    small = np.arange(4, dtype=np.uint64)
    f = frames(Message("part", {}, [small, big]))
    m = wire.decode(f, expect="part", consume=True)
    np.testing.assert_array_equal(m.arrays[1], big)
    np.testing.assert_array_equal(m.arrays[0], small)
    assert f[0] is not None and f[1] is not None  # the header, the one-frame array
    assert f[2:] == [None, None, None]
