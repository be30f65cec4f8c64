"""The tap flow on the edge: wait for a card, read who it is, have it sign a challenge.

    with CardTerminal.from_options(TerminalOptions()) as terminal:
        with terminal.tap(timeout_s=10) as session:       # card present, app selected
            who = session.identity                         # card id + public key
            n0, n1 = ask_servers_for_nonces(who.card_id)
            request = session.authorize(n0, n1, RequestKind.VERIFY, "alice", digest)

The session holds the card exclusively; if the card leaves the field at any point,
the next APDU raises CardRemovedError rather than talking to whatever card comes next.
On exit the card is reset, so a verified PIN never outlives the tap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from splitface.shared.card_binding import (
    CardAuthRequest,
    CardChallenge,
    RequestKind,
    verify_card_signature,
)
from splitface.shared.closing import Closing

from .channel import ApduChannel
from .client import AppletOptions, CardAppClient, CardIdentity, PinProvider
from .errors import MalformedResponseError
from .monitor import CardEvent, ReaderFilter, ReaderMonitor
from .pcsc import ConnectionOptions, PcscConnection

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TerminalOptions:
    """Which reader, how long to wait, how to talk to the card."""

    reader_name_contains: str = ""
    tap_timeout_s: float = 30.0
    connection: ConnectionOptions = field(default_factory=ConnectionOptions)
    applet: AppletOptions = field(default_factory=AppletOptions)


class CardSession(Closing):
    """One tapped card, connected exclusively, application selected, identity read."""

    def __init__(
        self,
        connection: PcscConnection,
        applet: AppletOptions,
        pin_provider: PinProvider | None,
        atr: bytes,
    ) -> None:
        self._conn = connection
        self.reader = connection.reader
        self.atr = atr
        self._client = CardAppClient(ApduChannel(connection), applet, connection.reader)
        self._pin_provider = pin_provider
        try:
            self._client.select()
            self.identity: CardIdentity = self._client.read_identity()
        except BaseException:
            connection.close()
            raise

    @property
    def client(self) -> CardAppClient:
        return self._client

    def read_holder(self) -> str:
        """The identity this card claims (its holder EF); "" when not personalised."""
        return self._client.read_holder()

    def write_holder(self, identity: str) -> None:
        """Personalise the holder EF ("" erases); the card may ask for its PIN first."""
        self._client.write_holder(identity, self._pin_provider)

    def unlock(self) -> bool:
        """Verify the card's PIN now (via the PIN provider) if it has one; see CardAppClient."""
        return self._client.unlock(self._pin_provider)

    def check_present(self) -> None:
        """Re-SELECT the application: raises CardRemovedError if the card has left.

        Cheaper than a failed server round trip: run it before asking the servers for
        nonces, so a card pulled while the camera worked never opens a transaction.
        """
        self._client.select()

    def sign_challenge(self, challenge: CardChallenge) -> bytes:
        """Card signature over ``challenge``, checked here against the card's own key."""
        if challenge.card_id != self.identity.card_id:
            raise ValueError("challenge names another card id than the one tapped")
        signature = self._client.sign(challenge.digest(), self._pin_provider)
        try:
            valid = verify_card_signature(self.identity.public_key, challenge, signature)
        except ValueError as exc:
            raise MalformedResponseError(f"card returned an unusable signature: {exc}") from exc
        if not valid:
            raise MalformedResponseError("card signature does not verify under its public key")
        return signature

    def authorize(
        self,
        nonce_p0: bytes,
        nonce_p1: bytes,
        kind: RequestKind,
        claimed_identity: str,
        payload_digest: bytes,
    ) -> CardAuthRequest:
        """Build the challenge from both servers' nonces, have the card sign it."""
        challenge = CardChallenge(
            card_id=self.identity.card_id,
            nonce_p0=nonce_p0,
            nonce_p1=nonce_p1,
            kind=kind,
            claimed_identity=claimed_identity,
            payload_digest=payload_digest,
        )
        signature = self.sign_challenge(challenge)
        return CardAuthRequest(challenge, self.identity.public_key, signature)

    def close(self) -> None:
        self._conn.close()


class CardTerminal(Closing):
    """A reader (or set of readers) that people tap cards on."""

    def __init__(
        self, options: TerminalOptions | None = None, pin_provider: PinProvider | None = None
    ) -> None:
        self._opts = options or TerminalOptions()
        self._pin_provider = pin_provider
        self._monitor = ReaderMonitor(ReaderFilter(self._opts.reader_name_contains))

    @classmethod
    def from_options(
        cls, options: TerminalOptions, pin_provider: PinProvider | None = None
    ) -> CardTerminal:
        return cls(options, pin_provider)

    @property
    def monitor(self) -> ReaderMonitor:
        return self._monitor

    def wait_for_card(self, timeout_s: float | None = None) -> CardEvent:
        return self._monitor.wait_for_card(
            self._opts.tap_timeout_s if timeout_s is None else timeout_s
        )

    def open(self, event: CardEvent) -> CardSession:
        """Connect to the card an event announced and read its identity."""
        conn = PcscConnection(event.reader, self._opts.connection)
        return CardSession(conn, self._opts.applet, self._pin_provider, event.atr)

    def tap(self, timeout_s: float | None = None) -> CardSession:
        """Wait for a card, connect, SELECT, read id and key."""
        return self.open(self.wait_for_card(timeout_s))

    def wait_for_removal(self, reader: str, timeout_s: float = 30.0) -> bool:
        return self._monitor.wait_for_removal(reader, timeout_s)

    def close(self) -> None:
        self._monitor.close()
