"""The product's tap flow, wired the way edge and servers will use it (tests, benchmark)."""

from __future__ import annotations

from dataclasses import dataclass

from splitface.edge.card import CardSession
from splitface.servers.cards import (
    CardAuthorization,
    CardRegistry,
    NonceStore,
    verify_card_authorization,
)
from splitface.shared.card_binding import CardAuthRequest, RequestKind, payload_digest


@dataclass
class Server:
    """The card-related state one MPC server keeps."""

    index: int
    nonces: NonceStore
    registry: CardRegistry

    def check(
        self, request: CardAuthRequest, kind: RequestKind, payload: bytes
    ) -> CardAuthorization:
        """What a server runs on receipt: its own digest of the payload it got."""
        return verify_card_authorization(
            request,
            server_index=self.index,
            nonces=self.nonces,
            registry=self.registry,
            kind=kind,
            payload_digest=payload_digest(payload),
        )


def sign_request(
    session: CardSession, servers: list[Server], kind: RequestKind, identity: str, payload: bytes
) -> CardAuthRequest:
    """Nonce from each server for the tapped card, then the card signs the binding."""
    card_id = session.identity.card_id
    n0 = servers[0].nonces.issue(card_id).nonce
    n1 = servers[1].nonces.issue(card_id).nonce
    return session.authorize(n0, n1, kind, identity, payload_digest(payload))


def check_all(
    servers: list[Server], request: CardAuthRequest, kind: RequestKind, payload: bytes
) -> list[CardAuthorization]:
    return [s.check(request, kind, payload) for s in servers]
