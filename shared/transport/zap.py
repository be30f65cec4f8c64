"""ZAP allow-list: only CurveZMQ clients whose public key is on the list may connect."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import zmq
from zmq.auth.thread import ThreadAuthenticator


class _AllowList:
    """Credentials provider for pyzmq's authenticator: an exact set of Z85 public keys."""

    def __init__(self, keys: Iterable[bytes], log: logging.Logger) -> None:
        self.keys = {bytes(k) for k in keys}
        self.log = log

    def callback(self, domain: str, key: bytes) -> bool:
        z85 = zmq.utils.z85.encode(key) if len(key) == 32 else key
        ok = z85 in self.keys
        if not ok:
            self.log.warning("refused CURVE client with public key %s", z85.decode()[:8] + "...")
        return ok


def start_authenticator(context: zmq.Context, allowed_public_keys: Iterable[bytes],
                        log: logging.Logger | None = None) -> ThreadAuthenticator:
    """Start a ZAP handler on ``context`` that admits only the listed Z85 public keys.

    One authenticator serves every socket of the context; stop it with ``.stop()``.
    """
    log = log or logging.getLogger("splitface.zap")
    auth = ThreadAuthenticator(context, log=log)
    auth.start()
    provider = _AllowList(allowed_public_keys, log)
    auth.configure_curve_callback(domain="*", credentials_provider=provider)
    return auth
