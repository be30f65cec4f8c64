"""``splitface-dealer --config FILE``: the preprocessing dealer as a daemon."""

from __future__ import annotations

import argparse
import logging
import threading
import time

import zmq

from splitface.servers.cli.common import (
    config_error_exit,
    listen_error_exit,
    setup_logging,
    stop_event,
)
from splitface.servers.dealer.service import DealerService, load_keyring
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.threads import limit_blas_threads, limit_malloc_arenas
from splitface.servers.mpc.warmup import load_compiled_kernels
from splitface.shared import keys, sdnotify
from splitface.shared.config import load_dealer_config
from splitface.shared.config_schema import ConfigError
from splitface.shared.transport.zap import start_authenticator

log = logging.getLogger("splitface.dealer")


def main(argv: list[str] | None = None) -> int:
    limit_malloc_arenas()  # before any thread starts: trimmed memory goes back
    ap = argparse.ArgumentParser(prog="splitface-dealer", description=__doc__)
    ap.add_argument("--config", required=True, help="the dealer's config.toml")
    args = ap.parse_args(argv)
    try:
        cfg = load_dealer_config(args.config)
        public, secret = keys.load_secret_key(cfg.secret_key_file)
        party_keys = {i: keys.load_public_key(p) for i, p in enumerate(cfg.allowed_server_keys)}
        if len(party_keys) != 2:
            raise ValueError("allowed_server_keys must list P0's and then P1's public key")
        keyring = load_keyring(cfg.state_dir)
    except (ConfigError, OSError, ValueError) as exc:
        return config_error_exit(exc)
    setup_logging(cfg.log_level)
    limit_blas_threads(1)
    log.info("dealer: compiled kernels loaded in %.1f s", load_compiled_kernels(evaluate=False))
    stop = stop_event()
    ctx = zmq.Context()
    auth = start_authenticator(ctx, list(party_keys.values()))
    try:
        service = DealerService(DealerCore(keyring), ctx, cfg.listen, public_key=public,
                                secret_key=secret, party_keys=party_keys,
                                max_bytes=cfg.max_message_bytes)
    except zmq.ZMQError as exc:
        auth.stop()
        ctx.destroy(linger=0)
        return listen_error_exit(f"the servers on {cfg.listen}", exc)
    watchdog = sdnotify.Watchdog.from_env()
    thread = threading.Thread(target=service.serve, args=(stop,), daemon=True)
    thread.start()
    log.info("dealer listening on %s (MAC key epoch %d)", service.endpoint, keyring.current)
    sdnotify.ready()
    while not stop.is_set() and thread.is_alive():
        watchdog.heartbeat()
        stop.wait(0.5)
    sdnotify.stopping()
    stop.set()
    thread.join(5)
    service.close()
    auth.stop()
    ctx.destroy(linger=0)
    log.info("dealer stopped after serving %d requests", service.served)
    time.sleep(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
