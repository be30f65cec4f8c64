"""What every ``splitface-edge`` command that talks to the servers shares: its config
options, its client, its output, and one mapping from failures to the exit-code table
(edge/exit_codes.py), so no command invents a code or lets a traceback through."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from splitface.edge.exit_codes import ExitCode, for_refusal


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="this terminal's config.toml")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def load_config(args: argparse.Namespace, *, models: bool):
    """The terminal's config with the files this command uses checked (edge/cli_config.py):
    always the keys, the models folder only for commands that run the face pipeline."""
    from splitface.edge.cli_config import load_cli_config

    return load_cli_config(args.config, keys=True, models=models)


def make_client(config: Any, timeout_s: float | None = None):
    from splitface.edge.client import SplitfaceClient, client_options_from_config

    return SplitfaceClient(client_options_from_config(config, timeout_s=timeout_s))


def emit(args: argparse.Namespace, rec: dict[str, Any], human: str | None) -> None:
    """``rec`` as one JSON line with ``--json``, else ``human`` (nothing when None)."""
    if args.json:
        print(json.dumps(rec, default=str), flush=True)
    elif human is not None:
        print(human, flush=True)


def fail(code: ExitCode, message: str) -> ExitCode:
    """One line on stderr, then the code: how every command reports a failure. The message
    may carry a server's reason, so a control character in it is printed escaped."""
    from splitface.edge.cli_table import shown

    print(f"splitface-edge: {shown(message)}", file=sys.stderr, flush=True)
    return code


def run_guarded(body: Callable[[], int]) -> int:
    """Run a command; map what can go wrong to one message line and its exit code."""
    from splitface.edge.client import ServerRefused, ServersDisagree, ServerUnavailable
    from splitface.edge.pipeline.errors import (
        ModelMissingError,
        PipelineError,
        RuntimeUnavailableError,
    )
    from splitface.shared.api import ApiError
    from splitface.shared.config_schema import ConfigError
    from splitface.shared.keys import KeyFileError

    try:
        return int(body())
    except (ConfigError, KeyFileError, PermissionError, FileNotFoundError) as exc:
        return fail(ExitCode.CONFIG, f"configuration error: {exc}")
    except (ModelMissingError, RuntimeUnavailableError) as exc:
        return fail(ExitCode.CONFIG, f"configuration error: {exc.status}: {exc}")
    except ServerRefused as exc:
        code = for_refusal(exc.code)
        what = "refused by the servers" if code == ExitCode.REFUSED else "servers unavailable"
        return fail(code, f"{what}: {exc.code}: {exc.reason}")
    except ServerUnavailable as exc:
        return fail(ExitCode.UNAVAILABLE, f"servers unavailable: {exc}")
    except ServersDisagree as exc:
        return fail(ExitCode.UNAVAILABLE, f"servers inconsistent: {exc}")
    except PipelineError as exc:
        return fail(ExitCode.BAD_INPUT, f"{exc.status}: {exc}")
    except ApiError as exc:  # refused here before anything was sent (e.g. a bad name)
        return fail(ExitCode.USAGE, exc.reason)


def check_identity_arg(name: str) -> str:
    """``--identity`` in the form the servers store (NFC); ApiError (exit 64) when it is not
    a name the servers accept: no ``/``, no newline, at most 128 bytes of UTF-8, ..."""
    from splitface.shared.api import ApiError, normal_identity

    try:
        return normal_identity(name)
    except ApiError as exc:
        short = name if len(name) <= 40 else name[:37] + "..."
        raise ApiError(exc.code, f"invalid identity {short!r}: {exc.reason}") from None
