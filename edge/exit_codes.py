"""The exit codes of ``splitface-edge``: one table, used by every command.

Operators script around the tool (``splitface-edge verify ... && open-door``), so a code must
mean the same thing whichever command returns it. 64 and 78 are the ``sysexits.h`` values
(EX_USAGE, EX_CONFIG); systemd units rely on 78 (``RestartPreventExitStatus=78``). The table
in docs/DEPLOY.md ("Exit codes of splitface-edge") is generated from :func:`markdown_table`
and a test keeps the two in step.

A command over several inputs reports each one and exits with one code:

* ``enroll`` and ``verify``: each input is a job of its own, so the *highest* code of any
  input wins (a failure is never hidden behind the successes around it);
* ``identify`` and ``embed`` scan frames for faces, most of which may show nobody: they exit
  0 when any face was identified (embedded), else 1 when faces were answered ``unknown``,
  else 2 (no frame held a usable face).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from splitface.shared import api


class ExitCode(IntEnum):
    """One code per class of outcome; each member's ``__doc__`` says what it means."""

    def __new__(cls, value: int, doc: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member

    OK = 0, ("Success: every image enrolled (or already enrolled), the face verified as the "
             "claimed identity, a face identified (embedded, for embed), the servers up and "
             "consistent, the admin operation done.")
    NEGATIVE = 1, ("A clean negative answer: verification rejected; identification found "
                   "faces but none matched an enrolled identity (\"unknown\").")
    BAD_INPUT = 2, ("Bad input: a file that cannot be read or decoded, too large, no face, "
                    "several faces with --single-face, a face below the quality bar, an "
                    "enrolment folder whose name is not a valid identity.")
    REFUSED = 3, ("Refused by the servers; the message names the code, e.g. unauthorized "
                  "(not an admin terminal), no_model, rate_limited, bad_probe, revoked, "
                  "card_rejected, wrong_dimension.")
    UNAVAILABLE = 4, ("Servers unavailable or inconsistent: no answer in time after the "
                      "retries, a restarting peer or dealer (peer_unavailable, "
                      "dealer_unavailable, aborted, timeout, busy), the servers out of sync "
                      "(out_of_sync) or answering differently, the peer link down (status).")
    USAGE = 64, ("Invalid usage: unknown option or command, missing argument, an invalid "
                 "identity name (EX_USAGE).")
    CONFIG = 78, ("Configuration error: config file missing or invalid, key files missing or "
                  "with wrong permissions, model files missing (EX_CONFIG).")
    INTERRUPTED = 130, "Interrupted (Ctrl-C / SIGINT)."


#: Refusals that say the pair cannot serve now, not that this request is wrong: a retry
#: later may succeed (TRANSIENT), or the servers must be reconciled first (OUT_OF_SYNC).
UNAVAILABLE_CODES = frozenset(api.TRANSIENT | {api.OUT_OF_SYNC})


def for_refusal(code: str) -> ExitCode:
    """The exit code of a server refusal with ``code`` (shared/api.py's error codes)."""
    return ExitCode.UNAVAILABLE if code in UNAVAILABLE_CODES else ExitCode.REFUSED


def worst(codes: Iterable[int]) -> ExitCode:
    """The highest code (``enroll``/``verify`` over several inputs); OK for none."""
    return ExitCode(max(codes, default=ExitCode.OK))


def best_answer(codes: Iterable[int]) -> ExitCode:
    """``identify``/``embed`` over frames: OK if any face was identified, else NEGATIVE if
    any was answered, else BAD_INPUT (no usable face anywhere)."""
    seen = set(codes)
    for code in (ExitCode.OK, ExitCode.NEGATIVE):
        if code in seen:
            return code
    return ExitCode.BAD_INPUT


def markdown_table() -> str:
    """The table docs/DEPLOY.md shows (kept identical by tests/ops/test_docs.py)."""
    rows = ["| code | name | meaning |", "|---:|---|---|"]
    rows += [f"| {c.value} | `{c.name}` | {c.__doc__} |" for c in ExitCode]
    return "\n".join(rows) + "\n"
