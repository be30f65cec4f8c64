"""Reconcile beyond the 64 KiB message header (issue 13: it failed past about 1,700
enrolments because the record list rode in the header): 5,000 records on each server,
exchanged through the real handler and the peer exchange over a serialising channel."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

from splitface.servers.mpc.local_runtime import make_parties, run_pair
from splitface.servers.service.coordinator import Coordinator
from splitface.servers.service.handlers import Handlers
from splitface.servers.store import ShareStore, StoredShare
from splitface.shared import wire

N = 5_000


def _node(party, store):
    node = SimpleNamespace(party=party, store=store)
    node.agree = functools.partial(Coordinator.agree, node)
    node.agree_blob = functools.partial(Coordinator.agree_blob, node)
    node.agree_json = functools.partial(Coordinator.agree_json, node)
    return node


def test_reconcile_exchanges_thousands_of_records(tmp_path):
    zero = StoredShare(np.zeros((2, 4), np.uint64), np.zeros((2, 4), np.uint64), 16)
    stores = [ShareStore(tmp_path / f"p{i}.db") for i in (0, 1)]
    ids = [f"{k:024x}" for k in range(N)]
    for i, store in enumerate(stores):
        for rid in ids:
            store.add_enrolment(rid, f"person-{int(rid, 16) % 500}", zero)
        if i == 0:  # two records only P0 holds: orphans without P1's share
            store.add_enrolment("f" * 24, "person-1", zero)
            store.add_enrolment("e" * 24, "person-2", zero)
    assert len(wire.encode(wire.Message("x", {"ids": ids}))[0]) > wire.MAX_HEADER_BYTES

    def fn(party, store):
        txn = SimpleNamespace(req="r" * 16)
        return Handlers(_node(party, store)).reconcile(txn).meta

    r0, r1 = run_pair(fn, make_parties(), (stores[0], stores[1]))
    assert r0["removed"] == 2 and r1["removed"] == 0
    assert len(stores[0].record_ids()) == len(stores[1].record_ids()) == N
