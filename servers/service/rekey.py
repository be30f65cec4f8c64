"""Re-keying: re-authenticate every stored share under a new MAC key, seeing none of them.

After a failed MAC check (or a planned rotation) the key epoch E ends. Stored shares carry
MACs under alpha_E; the dealer's current epoch N has a fresh alpha_N. In a dealer session
at epoch E the servers take, per stored value x, a random r authenticated under both keys
([r]_E, [r]_N from the dealer's ``rekey`` item) and

1. open u = x - r with its alpha_E MACs (u is uniform: r is a fresh 128-bit mask);
2. run the MAC check under alpha_E (which a failed check never revealed, party.py);
3. set [x]_N = u + [r]_N: value share r_i (+ u at P0), MAC share m_N(r)_i + alpha_N,i u.

The new shares are *staged* in the store; each server switches to them only after the
other has staged its own (two-phase switch), so a crash at any point is recovered at the
next contact: a server whose peer already holds epoch N switches to its staged shares,
otherwise both run the protocol again. Records only one server holds (a crash between
two enrolment commits) are useless; the switch quarantines them, never deleting anything
on the other server's word. A failed or interrupted check here counts against the old
epoch (coordinator.py caps the attempts): each could tell a malicious peer a little about
that key, which still protects the stored shares until the switch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

import numpy as np

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.store import ShareStore, StoredShare
from splitface.shared import ring

log = logging.getLogger("splitface.server.rekey")

CHUNK_ELEMENTS = 1 << 20  # values re-keyed per dealer item (P1's part: 64 MiB)

Agree = Callable[[str, object], object]  # exchange a small public value with the peer
AgreeBlob = Callable[[str, bytes], bytes]  # exchange a large public byte string


def _listing(items: list[tuple[str, str, StoredShare]]) -> list[list]:
    return [[k, n, list(s.val.shape[1:]), s.frac] for k, n, s in items]


def common_items(store: ShareStore, agree_blob: AgreeBlob
                 ) -> list[tuple[str, str, StoredShare]]:
    """The stored shares both servers hold (same kind, name, shape and scale), in order."""
    items = store.tensors()
    mine = json.dumps(_listing(items), separators=(",", ":")).encode()
    theirs = agree_blob("rekey_listing", hashlib.sha256(mine).digest())
    if theirs == hashlib.sha256(mine).digest():
        return items
    try:
        rows = json.loads(agree_blob("rekey_items", mine).decode())
        if not isinstance(rows, list):
            raise TypeError("not a list")
        peer = {tuple(json.dumps(x) for x in row) for row in rows}
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ProtocolError(f"the other server sent a malformed listing: {exc}") from None
    return [it for it, row in zip(items, _listing(items), strict=True)
            if tuple(json.dumps(x) for x in row) in peer]


def rekey_store(party: Party, store: ShareStore, target: int, agree: Agree,
                agree_blob: AgreeBlob, tick: Callable[[], object] = lambda: None) -> int:
    """Run the protocol in ``party``'s (old-epoch) session, stage and switch; returns the
    number of values re-keyed. The party's preprocessing must be a session at the store's
    key epoch; ``target`` is the dealer's current epoch."""
    if party.epoch != store.key_epoch() or target <= party.epoch:
        raise ProtocolError(f"re-keying needs a session at the store's epoch "
                            f"{store.key_epoch()} towards a newer one (got {party.epoch} -> "
                            f"{target})")
    items = common_items(store, agree_blob)
    alpha_new = ring.check(party.prep.mac_key_share(target)).reshape(2)
    sizes = [int(s.val[0].size) for _, _, s in items]
    flat_val = ring.concat([s.val.reshape(2, -1) for _, _, s in items], axis=0) if items \
        else ring.zeros((0,))
    flat_mac = ring.concat([s.mac.reshape(2, -1) for _, _, s in items], axis=0) if items \
        else ring.zeros((0,))
    new_val = np.empty_like(flat_val)
    new_mac = np.empty_like(flat_mac)
    total = flat_val.shape[1]
    with party.op("rekey"):
        for s in range(0, total, CHUNK_ELEMENTS):
            e = min(s + CHUNK_ELEMENTS, total)
            old, new = party.prep.rekey((e - s,))
            (u,) = party.open((ring.sub(flat_val[:, s:e], old[0]),
                               ring.sub(flat_mac[:, s:e], old[1])))
            new_val[:, s:e] = ring.add(new[0], u) if party.id == 0 else new[0]
            new_mac[:, s:e] = ring.add(new[1], ring.mul(alpha_new.reshape(2, 1), u))
            tick()
        party.check()  # under the old key: nothing is staged unless every u verified
    staged, start = [], 0
    for (kind, name, share), n in zip(items, sizes, strict=True):
        shape = share.val.shape
        staged.append((kind, name, StoredShare(new_val[:, start:start + n].reshape(shape),
                                               new_mac[:, start:start + n].reshape(shape),
                                               share.frac)))
        start += n
    store.stage_rekey(target, staged)
    if agree("rekey_staged", target) != target:
        raise ProtocolError("the other server did not stage its re-keyed shares")
    dropped = store.commit_rekey(target)
    log.warning("P%d: stored shares re-authenticated under key epoch %d (%d values, %d "
                "records only this server held were quarantined)", party.id, target, total,
                dropped)
    agree("rekey_done", target)
    return total
