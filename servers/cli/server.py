"""``splitface-server --party 0|1 --config FILE``: one MPC server as a daemon."""

from __future__ import annotations

import argparse
import logging

import zmq

from splitface.servers.cards.nonces import NonceStore
from splitface.servers.cards.registry import CardRegistry
from splitface.servers.cli.common import (
    config_error_exit,
    listen_error_exit,
    setup_logging,
    stop_event,
)
from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing
from splitface.servers.mpc.prep.remote import DealerClient, RemotePreprocessing
from splitface.servers.mpc.threads import limit_blas_threads, limit_malloc_arenas
from splitface.servers.mpc.warmup import load_compiled_kernels
from splitface.servers.service.admission import RateOptions
from splitface.servers.service.coordinator import Coordinator, terminal_names
from splitface.servers.service.gateway import EdgeGateway
from splitface.servers.service.handlers import NodeOptions
from splitface.servers.store import ShareStore
from splitface.shared import keys, sdnotify
from splitface.shared.config import load_server_config
from splitface.shared.config_schema import ConfigError
from splitface.shared.transport.zap import start_authenticator
from splitface.shared.transport.zmq_channel import ZmqChannel

log = logging.getLogger("splitface.server")


def main(argv: list[str] | None = None) -> int:
    limit_malloc_arenas()  # before any thread starts: trimmed memory goes back
    ap = argparse.ArgumentParser(prog="splitface-server", description=__doc__)
    ap.add_argument("--party", type=int, choices=(0, 1), required=True)
    ap.add_argument("--config", required=True, help="this server's config.toml")
    ap.add_argument("--allow-rekey-retry", action="store_true",
                    help="clear the count of failed re-keying checks (after investigating "
                         "a stop, see docs/DEPLOY.md) and start")
    args = ap.parse_args(argv)
    try:
        cfg = load_server_config(args.config, party=args.party)
        public, secret = keys.load_secret_key(cfg.secret_key_file)
        peer_key = keys.load_public_key(cfg.peer_public_key_file)
        dealer_key = keys.load_public_key(cfg.dealer_public_key_file)
        edges = keys.load_public_keys_dir(cfg.allowed_edge_keys_dir)
    except (ConfigError, OSError, ValueError) as exc:
        return config_error_exit(exc)
    setup_logging(cfg.log_level)
    limit_blas_threads(1)
    log.info("P%d: compiled kernels loaded in %.1f s", cfg.party, load_compiled_kernels())
    stop = stop_event()
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    ctx = zmq.Context()
    auth = start_authenticator(ctx, {"edge": list(edges.values()), "peer": [peer_key]})
    timeout = cfg.request_timeout_s
    try:
        if cfg.party == 0:
            what = f"the other server on {cfg.listen_peer}"
            channel = ZmqChannel.bind(ctx, cfg.listen_peer, public_key=public,
                                      secret_key=secret, default_timeout=timeout)
        else:
            what = f"the other server at {cfg.peer_endpoint}"
            channel = ZmqChannel.connect(ctx, cfg.peer_endpoint, public_key=public,
                                         secret_key=secret, server_key=peer_key,
                                         default_timeout=timeout)
        what = f"terminals on {cfg.listen_edge}"
        gateway = EdgeGateway(ctx, cfg.listen_edge, public_key=public, secret_key=secret,
                              terminal_names=terminal_names(edges),
                              max_bytes=cfg.max_message_bytes)
    except zmq.ZMQError as exc:
        auth.stop()
        ctx.destroy(linger=0)
        return listen_error_exit(what, exc)

    def dealer_client() -> DealerClient:
        return DealerClient(ctx, cfg.dealer_endpoint, party=cfg.party, public_key=public,
                            secret_key=secret, dealer_key=dealer_key, timeout_s=timeout)

    def prep_factory(session: str, epoch: int) -> PrefetchingPreprocessing:
        return PrefetchingPreprocessing(RemotePreprocessing(dealer_client(), session=session,
                                                            epoch=epoch))

    store = ShareStore(cfg.state_dir / "shares.db")
    if args.allow_rekey_retry:
        store.clear_rekey_failures()
        log.warning("P%d: failed re-keying attempts cleared by the operator", cfg.party)
    cards = CardRegistry(cfg.state_dir / "cards.db")
    # a terminal sends its submit milliseconds after the offers; waiting longer only holds
    # every other terminal's request behind an abandoned one
    lim = cfg.limits
    rate = RateOptions(per_second=lim.per_second, burst=lim.burst,
                       strikes_per_hour=lim.strikes_per_hour,
                       verify_per_identity_per_hour=lim.verify_per_identity_per_hour)
    opts = NodeOptions(threshold=cfg.identify.threshold, batch_max=cfg.identify.batch_max,
                       submit_timeout_s=lim.submit_timeout_s,
                       card_submit_timeout_s=lim.card_submit_timeout_s, rate=rate,
                       peer_timeout_s=timeout, train_epochs=cfg.train.epochs,
                       train_batch_size=cfg.train.batch_size,
                       train_learning_rate=cfg.train.learning_rate,
                       train_logistic=cfg.train.logistic,
                       admin_terminals=frozenset(getattr(cfg, "admin_terminals", ())),
                       audit_path=cfg.state_dir / "audit.jsonl")
    watchdog = sdnotify.Watchdog.from_env()
    dealer = dealer_client()
    dealer.timeout_s = min(timeout, 5.0)  # epoch queries: a dead dealer must not stall the loop
    node = Coordinator(cfg.party, gateway, channel, prep_factory, dealer, store, cards,
                       NonceStore(), opts, heartbeat=watchdog.heartbeat)
    log.info("P%d: terminals on %s, %d terminal keys allowed", cfg.party, gateway.endpoint,
             len(edges))
    if cfg.party == 0:
        node.resync()  # first contact; retried on demand while P1 is down
    sdnotify.ready()
    try:
        while not stop.is_set():
            node.step(100)
            watchdog.heartbeat()
    finally:
        sdnotify.stopping()
        log.info("P%d: stopping after %s", cfg.party, dict(node.served))
        gateway.close()
        channel.close()
        node.close()
        dealer.close()
        store.close()
        cards.close()
        auth.stop()
        ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
