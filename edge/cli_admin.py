"""``splitface-edge status | admin``: questions to the servers that need no face pipeline.

Neither command imports or loads a model, nor checks the models folder: an operator must be
able to ask a server's state on a machine whose models are missing or being replaced.
"""

from __future__ import annotations

import argparse
from typing import Any

from splitface.edge.cli_common import (
    check_identity_arg,
    config_args,
    emit,
    fail,
    load_config,
    make_client,
    run_guarded,
)
from splitface.edge.cli_table import Column, TextTable, shown
from splitface.edge.exit_codes import ExitCode

ADMIN_NOTE = "store details are shown to admin terminals only"
PREFETCH_COUNTERS = ("hits", "misses", "queued")


def _counters(p: dict[str, Any]) -> dict[str, int | None]:
    """A server's prefetch counters, each a count or None: a malicious server must not
    print escape sequences (or a fake verdict) on the admin's terminal through them."""
    return {k: v if type(v) is int and v >= 0 else None
            for k in PREFETCH_COUNTERS for v in [p.get(k)]}


def status_report(s0: dict[str, Any], s1: dict[str, Any]) -> tuple[dict[str, Any], str, ExitCode]:
    """The JSON record, the text and the exit code of ``status``, all from the same facts.

    "consistent" means both peer links up and both servers holding the same enrolments
    (digest), model version and MAC key epoch; a non-admin terminal sees only the peer
    links, so no consistency is claimed for it."""
    peer = [bool(s0.get("peer_ok")), bool(s1.get("peer_ok"))]
    problems = [f"peer link down on P{i}" for i, up in enumerate(peer) if not up]
    if "records" not in s0 or "records" not in s1:  # not an admin terminal
        rec = {"peer_link": all(peer), "peer_ok": peer, "details": ADMIN_NOTE}
        text = (f"servers answer, peer link {'up' if all(peer) else 'DOWN'} ({ADMIN_NOTE})")
        return rec, text, ExitCode.OK if all(peer) else ExitCode.UNAVAILABLE
    both = (s0, s1)
    if s0.get("digest") != s1.get("digest"):
        problems.append("the servers hold different enrolments: run admin reconcile")
    if s0.get("model_version") != s1.get("model_version"):
        problems.append("the servers hold different model versions: run admin train")
    if s0.get("key_epoch") != s1.get("key_epoch"):
        problems.append("the servers are at different MAC key epochs (re-keying)")
    rec = {"consistent": not problems, "peer_link": all(peer), "peer_ok": peer,
           "problems": problems, "identities": s0.get("identities_count"),
           "records": [s.get("records") for s in both],
           "model_version": [s.get("model_version") for s in both],
           "key_epoch": [s.get("key_epoch") for s in both]}
    table = TextTable([Column("server"), Column("records", right=True),
                       Column("identities", right=True), Column("model", right=True),
                       Column("key epoch", right=True), Column("peer link")])
    lines = [table.header()]
    for i, s in enumerate(both):
        lines.append(table.row(f"P{i}", s.get("records"), s.get("identities_count"),
                               f"v{s.get('model_version')}", s.get("key_epoch"),
                               "up" if peer[i] else "DOWN"))
    if all(isinstance(s.get("prefetch"), dict) for s in both):  # did prefetching pay?
        rec["prefetch"] = [_counters(s["prefetch"]) for s in both]
        lines.append("prefetch this session: " + "; ".join(
            f"P{i} " + ", ".join(f"{'?' if p[k] is None else p[k]} {k}"
                                 for k in PREFETCH_COUNTERS)
            for i, p in enumerate(rec["prefetch"])))
    for key in ("identities", "revoked", "model_identities"):  # asked for with --names
        if key in s0:
            rec[f"{key}_names"] = s0[key]
            lines.append(f"{key.replace('_', ' ')} ({len(s0[key])}): " + ", ".join(s0[key]))
    lines.append("consistent" if not problems else "NOT CONSISTENT: " + "; ".join(problems))
    return rec, "\n".join(lines), ExitCode.OK if not problems else ExitCode.UNAVAILABLE


def admin_text(status: object, details: dict[str, Any]) -> str:
    """One line for an admin command's reply; every part P0 sent is escaped, so a
    malicious server cannot write control sequences to the admin's terminal."""
    return f"{shown(status)}: " + ", ".join(f"{shown(k)}={shown(v)}" for k, v in
                                            details.items() if k != "status")


def cmd_status(args: argparse.Namespace) -> int:
    def body() -> int:
        with make_client(load_config(args, models=False)) as client:
            s0, s1 = client.status(names=getattr(args, "names", False))
        rec, text, code = status_report(s0, s1)
        emit(args, rec, text)
        return code

    return run_guarded(body)


def cmd_admin(args: argparse.Namespace) -> int:
    op = args.op.replace("-", "_")

    def body() -> int:
        if op in ("revoke", "restore"):
            if not args.identity:
                return fail(ExitCode.USAGE, f"admin {op} needs the IDENTITY to {op}")
            identity = check_identity_arg(args.identity)
        elif args.identity:
            return fail(ExitCode.USAGE, f"admin {args.op} takes no identity")
        else:
            identity = ""
        config = load_config(args, models=False)
        with make_client(config) as probe:  # unreachable servers fail within the config's
            probe.status()                  # timeout, not after --timeout (600 s)
        with make_client(config, timeout_s=args.timeout) as client:
            out = client.admin(op, identity)
        details = {k: v for k, v in out.details.items() if k != "req"}
        emit(args, details, admin_text(out.status, details))
        return ExitCode.OK

    return run_guarded(body)


def add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="both servers' record counts, model version, key "
                                      "epoch, peer link and consistency (no models needed)")
    p.add_argument("--names", action="store_true",
                   help="also list enrolled, revoked and modelled identities (admin terminals; "
                        "a large gallery needs a larger max_message_bytes)")
    config_args(p)
    p.set_defaults(func=cmd_status)


def add_admin(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="train | revoke IDENTITY | restore IDENTITY | reconcile "
                                     "| rotate-key (admin terminals; no models needed)")
    p.add_argument("op", choices=("train", "revoke", "restore", "reconcile", "rotate-key"))
    p.add_argument("identity", nargs="?", help="for revoke and restore")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds (training is slow)")
    config_args(p)
    p.set_defaults(func=cmd_admin)
