"""``splitface-keys``: make and maintain the keys and configs of a whole deployment."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from splitface.shared import keys
from splitface.shared.config_schema import ConfigError
from splitface.shared.deployment import (
    DeploymentError,
    InitOptions,
    add_edge,
    check_deployment,
    init_deployment,
    revoke_edge,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitface-keys",
        description="CurveZMQ keys and configuration files for a splitface deployment "
                    "(see docs/DEPLOY.md).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="new deployment: keys + configs for p0, p1, dealer, edges")
    p.add_argument("--out", type=Path, required=True, help="new (or empty) folder to create")
    p.add_argument("--edges", type=int, default=1, help="number of terminals edge-1..edge-N")
    p.add_argument("--host", default="127.0.0.1", help="host of every component (default "
                                                        "127.0.0.1)")
    p.add_argument("--p0-host", default="", help="host of P0 (default --host)")
    p.add_argument("--p1-host", default="", help="host of P1 (default --host)")
    p.add_argument("--dealer-host", default="", help="host of the dealer (default --host)")
    p.add_argument("--base-port", type=int, default=7100,
                   help="P0 edge port; P1 edge = +1, peer = +2, dealer = +3 (default 7100)")
    p.add_argument("--layout", choices=("system", "local"), default="system",
                   help="system: folders go to /etc/splitface/* under systemd (default); "
                        "local: run everything from this folder on one host")
    p.add_argument("--bind-any", action="store_true",
                   help="listen on all interfaces (tcp://*:PORT) instead of the given host")
    p.add_argument("--model-dir", type=Path, default=Path("/opt/splitface/models"),
                   help="models.model_dir for the terminals (default /opt/splitface/models)")
    p.add_argument("--admin", action="append", default=[], metavar="NAME",
                   help="a terminal that may enrol, train, revoke and rotate keys (repeat "
                        "for several; e.g. --admin edge-1)")

    p = sub.add_parser("add-edge", help="add a terminal and put its key on both allow-lists")
    p.add_argument("--deployment", type=Path, required=True)
    p.add_argument("--name", required=True, action="append",
                   help="terminal id (repeat to add several)")
    p.add_argument("--public-key", type=Path,
                   help="use this public key (made on the terminal with 'generate') instead of "
                        "generating a pair here; only with one --name")

    p = sub.add_parser("revoke-edge", help="remove a terminal from both allow-lists")
    p.add_argument("--deployment", type=Path, required=True)
    p.add_argument("--name", required=True, action="append")

    p = sub.add_parser("generate", help="one key pair NAME.key + NAME.key_secret")
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for the two files")

    p = sub.add_parser("show-public", help="print the public key of a public or secret key file")
    p.add_argument("file", type=Path)
    p.add_argument("--fingerprint", action="store_true", help="also print a short fingerprint")

    p = sub.add_parser("check", help="cross-check every config and key of a deployment folder")
    p.add_argument("--deployment", type=Path, required=True)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "init":
        dep = init_deployment(args.out, InitOptions(
            edges=args.edges, host=args.host, p0_host=args.p0_host, p1_host=args.p1_host,
            dealer_host=args.dealer_host, base_port=args.base_port, layout=args.layout,
            bind_any=args.bind_any, model_dir=args.model_dir, admins=tuple(args.admin)))
        print(f"created deployment {dep.root}: p0, p1, dealer, {args.edges} terminal(s)")
        if not args.admin:
            print("no admin terminal (--admin NAME): nobody can enrol or train until "
                  "admin_terminals is set in p0/config.toml and p1/config.toml")
        print("copy each folder to its machine (docs/DEPLOY.md); keep the rest private")
        return 0
    if args.command == "add-edge":
        if args.public_key is not None and len(args.name) != 1:
            raise DeploymentError("--public-key goes with exactly one --name")
        for name in args.name:
            folder = add_edge(args.deployment, name, public_key_file=args.public_key)
            print(f"added {name}: {folder}; copy p0/keys/edges and p1/keys/edges to the servers")
        return 0
    if args.command == "revoke-edge":
        for name in args.name:
            for entry in revoke_edge(args.deployment, name):
                print(f"removed {entry}")
        print("copy p0/keys/edges and p1/keys/edges to the servers and restart them")
        return 0
    if args.command == "generate":
        public, secret = keys.write_keypair(args.out, args.name)
        print(f"wrote {public} (public) and {secret} (secret, mode 0600)")
        return 0
    if args.command == "show-public":
        text = args.file.read_text(encoding="ascii", errors="replace") if args.file.is_file() \
            else ""
        public = (keys.load_secret_key(args.file)[0] if "secret-key" in text
                  else keys.load_public_key(args.file))
        print(public.decode("ascii"))
        if args.fingerprint:
            print(keys.fingerprint(public))
        return 0
    if args.command == "check":
        problems = check_deployment(args.deployment)
        for problem in problems:
            print(problem)
        if not problems:
            print(f"{args.deployment}: consistent")
        return 1 if problems else 0
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; errors print one clear line (no traceback) and exit with status 2."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (DeploymentError, ConfigError, keys.KeyFileError) as exc:
        print(f"splitface-keys: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
