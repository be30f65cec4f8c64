"""ZAP allow-lists: only CurveZMQ clients whose public key is listed may connect.

Allow-lists can be per ZAP domain: a server puts its terminal-facing socket in domain
``edge`` and its peer socket in domain ``peer``, so a terminal's key can never open the
peer link even though both sockets share one authenticator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import zmq
from zmq.auth.thread import ThreadAuthenticator

ANY_DOMAIN = "*"
DOMAINS = ("edge", "peer")  # the ZAP domains splitface sockets use


class _AllowList:
    """Credentials provider for pyzmq's authenticator: exact sets of Z85 keys per domain."""

    def __init__(self, keys: Mapping[str, Iterable[bytes]], log: logging.Logger) -> None:
        self.keys = {d: {bytes(k) for k in ks} for d, ks in keys.items()}
        self.log = log

    def callback(self, domain: str, key: bytes) -> bool:
        z85 = zmq.utils.z85.encode(key) if len(key) == 32 else key
        allowed = self.keys.get(domain, set()) | self.keys.get(ANY_DOMAIN, set())
        ok = z85 in allowed
        if not ok:
            self.log.warning("refused CURVE client %s... in domain %r", z85.decode()[:8],
                             domain)
        return ok


def start_authenticator(context: zmq.Context,
                        allowed: Iterable[bytes] | Mapping[str, Iterable[bytes]],
                        log: logging.Logger | None = None) -> ThreadAuthenticator:
    """Start a ZAP handler on ``context`` admitting only the listed Z85 public keys.

    ``allowed`` is either one list for every domain or a map from ZAP domain to list.
    One authenticator serves every socket of the context; stop it with ``.stop()``.
    """
    log = log or logging.getLogger("splitface.zap")
    keys = dict(allowed) if isinstance(allowed, Mapping) else {ANY_DOMAIN: list(allowed)}
    auth = ThreadAuthenticator(context, log=log)
    auth.start()
    provider = _AllowList(keys, log)
    for domain in {ANY_DOMAIN, *DOMAINS, *keys}:  # pyzmq looks providers up by exact domain
        auth.configure_curve_callback(domain=domain, credentials_provider=provider)
    return auth
