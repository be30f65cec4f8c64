"""Attacker review 3: the degenerate-class bit of train_templates was opened to a rushing
malicious server BEFORE the openings it depends on were MAC-checked (now reveal() checks
every earlier opening first, then opens, then checks the opening).

training.train_templates -> compare.ltz(norm2 - 0.05).reveal() -> beaver.reveal, which
opens first and checks afterwards. A malicious P1 adds delta to its message in the Beaver
opening of means*means (element (j, k_j)), so norm2'_j = |m_j|^2 + (delta/2^16) m_{j,k_j};
it then reads the honest share of the reveal opening (rushing) and learns, per class,
[|m_j|^2 + 100 m_{j,k_j} < 0.05] ~ sign of a chosen template coordinate. The MAC check
fails afterwards, but the bits are already out (one chosen linear-threshold bit per
identity per training). The same hole lets it shift the ltz opening c to move the
threshold.

"""

from __future__ import annotations

import numpy as np

from splitface.servers.recognition import training
from splitface.shared import ring
from tests.adversary.harness import pair_with_adversary, run_honest_vs_adversary, shift_low
from tests.mpc.harness import as_share, share_floats

C, D, S = 16, 8, 3
DELTA = 100 << 16  # real 100 at F = 16


def _data():
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(C, D))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, S, axis=0) + rng.normal(size=(C * S, D)) * 0.05
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(C), S)
    means = np.stack([x[labels == j].mean(0) for j in range(C)])
    return x, labels, means


def test_a_rushing_server_learns_no_template_bit_from_the_degenerate_check():
    x, labels, means = _data()
    targets = [j % D for j in range(C)]  # the coordinate the attacker asks about, per class

    def strategy(kind, ours, honest, view):
        st = view.state
        if kind == "open":
            st["n"] = st.get("n", 0) + 1
            if st["n"] == 2:  # Beaver opening of means * means: (2, 2 * C * D)
                # modified code: the malicious server sends d + delta AND computes with it
                # itself (shifting its copy of the honest message shifts its own sum)
                arr, seen = ours.arrays[0], honest.arrays[0]
                for j, k in enumerate(targets):
                    arr, seen = shift_low(arr, DELTA, j * D + k), shift_low(seen, DELTA, j * D + k)
                ours = type(ours)(ours.kind, ours.meta, [arr])
                honest.arrays[0] = seen
            if st["n"] == 5 and "checked" not in st:  # the reveal: read the honest share
                opened = ring.add(honest.arrays[0], ours.arrays[0])
                st["learned"] = ring.low64_signed(opened).reshape(-1).astype(int)
        elif kind == "checkmask":
            st["checked"] = True
        return ours

    honest, evil, view, core = pair_with_adversary(strategy)
    sh = share_floats(core, x)

    def fn(p):
        return training.train_templates(as_share(p, sh[p.id]), labels, C)

    out_h, _ = run_honest_vs_adversary(fn, honest, evil)
    assert out_h.error is not None  # the MAC check does catch the tamper, but too late:
    truth = (means[np.arange(C), targets] < 0).astype(int)
    learned = view.state.get("learned")
    assert learned is None or not np.array_equal(learned, truth), \
        "the malicious server read a chosen bit of every class template before any MAC check"
