"""Worker jobs used by the engine tests over real sockets."""

from __future__ import annotations

from typing import Any

import numpy as np

from splitface.servers.mpc import client_jobs, compare
from splitface.servers.mpc.beaver import FixedOperand
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.share import AuthShare


def _split(x: AuthShare, shapes: list[tuple[int, ...]]) -> list[AuthShare]:
    out, start = [], 0
    for s in shapes:
        n = int(np.prod(s, dtype=np.int64))
        out.append(x[start:start + n].reshape(s))
        start += n
    return out


OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "neg": lambda a: -a,
    "mul": lambda a, b: a * b,
    "matmul": lambda a, b: a @ b,
    "mul_public": lambda a, c: a * c,
    "add_public": lambda a, c: a + c,
    "matmul_public": lambda a, c: a @ c,
    "sum0": lambda a: a.sum(0),
    "lt": lambda a, b: a < b,
    "gt": lambda a, b: a > b,
    "eqz": lambda a: a.eqz(),
    "ltz": lambda a: a.ltz(),
    "trunc": lambda a, m: a.truncate(m),
    "select": lambda c, a, b: compare.select((c > 0.5), a, b),
    "argmax": lambda a: _argmax(a),
    "getitem": lambda a, i: a[i],
    "transpose": lambda a: a.T,
}


def _argmax(a: AuthShare) -> AuthShare:
    from splitface.servers.mpc.share import stack

    m, i = compare.argmax(a, bits=24)
    return stack([m, i * 1.0])


def compute(party: Party, state: dict[str, Any], masked: np.ndarray, shapes: list,
            op: str, public: list | None = None, frac: int = 16) -> tuple[np.ndarray, int]:
    """Job: take inputs of the given shapes, apply OPS[op], return (opened, frac)."""
    n_values = sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
    x, masks = client_jobs.take_input(party, state, masked, n_values, frac)
    args = _split(x, [tuple(s) for s in shapes])
    y = OPS[op](*args, *(public or []))
    return client_jobs.deliver(party, y, masks), y.frac


def fixed_prepare(party: Party, state: dict[str, Any], masked: np.ndarray, shape: list,
                  key: str) -> None:
    """Job: input a model and open W - B once."""
    x, _ = client_jobs.take_input(party, state, masked, int(np.prod(shape)))
    state[key] = FixedOperand(x.reshape(tuple(shape)), party.fresh_key(key))


def fixed_query(party: Party, state: dict[str, Any], masked: np.ndarray, n: int,
                key: str) -> tuple[np.ndarray, int]:
    """Job: one query x @ W with the fixed model."""
    x, masks = client_jobs.take_input(party, state, masked, n)
    y = state[key].left_matmul(x)
    return client_jobs.deliver(party, y, masks), y.frac
