# ruff: noqa: RUF009  -- setting() returns a dataclasses.field(); ruff cannot know that.
"""Per-component configuration: one TOML file each for a server, the dealer and an edge daemon.

Every key is declared once below (type, default, meaning, checks); docs/DEPLOY.md's field
reference is generated from these declarations (``python -m splitface.shared.config``).
Relative paths in a file are relative to the file's folder, so a deployment folder made by
``splitface-keys init`` works wherever it is copied.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from splitface.shared import keys, training_range
from splitface.shared.config_schema import (
    ConfigError,
    Problem,
    check_env_name,
    check_name,
    check_not_empty,
    dump_toml,
    endpoint,
    existing_dir,
    in_range,
    load_toml,
    parse_endpoint,
    reference_markdown,
    setting,
)

__all__ = [
    "CameraOptions", "CardOptions", "ConfigError", "DealerConfig", "DetectionOptions", "EdgeConfig",
    "EventsOptions",
    "IdentifyOptions", "ModelOptions", "ServerConfig", "ServerLink", "ServersOptions",
    "TrackingOptions", "TrainOptions", "WatchdogOptions", "dump_config", "load_dealer_config",
    "load_edge_config", "load_server_config", "write_config",
]

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
MiB = 1 << 20
_MESSAGE_LIMITS = in_range(64 * 1024, 2048 * MiB)
_TIMEOUT = in_range(0.0, 3600.0, lo_open=True)


def _key_check(loader: Callable[[Path], object]) -> Callable[[Path], str]:
    """Turn a key loader into a file check whose message names the offending path."""

    def check(path: Path) -> str:
        try:
            loader(path)
        except keys.KeyFileError as exc:
            return str(exc)
        return ""

    return check


_secret_key_file = _key_check(keys.load_secret_key)
_public_key_file = _key_check(keys.load_public_key)
_public_keys_dir = _key_check(keys.load_public_keys_dir)


def _doc_secret(owner: str) -> str:
    return (f"{owner}'s own CURVE secret key file (NAME.key_secret, mode 0600; loading refuses "
            "a file readable by group or others).")


# ============================================================================ server


@dataclass(frozen=True, kw_only=True)
class IdentifyOptions:
    """Identification: a face is accepted only when its best cosine score clears the threshold."""

    threshold: float = setting(
        "Cosine similarity the best gallery match must exceed to be accepted. Only the accept "
        "bit and identity are revealed, never the score.", 0.5, check=in_range(-1.0, 1.0))
    batch_max: int = setting(
        "Most waiting identifications the servers answer together in one MPC run (they share "
        "its rounds; each terminal still gets only its own answer). 1 answers one at a time; "
        "P1 refuses batches larger than its own setting. Both servers lower it for large "
        "galleries (3 at 100,000 identities) so a batch's keys stay within 384 MiB.", 16,
        check=in_range(1, 64))


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """Secure training of the classifier on the shared enrolment embeddings."""

    epochs: int = setting("Passes over the enrolment set.", 20, check=in_range(1, 100_000))
    batch_size: int = setting("Mini-batch size for SGD.", 32, check=in_range(1, 65_536))
    learning_rate: float = setting(
        "SGD step size; learning_rate / batch_size must not exceed 2.5 (the range in which "
        "fixed-point training follows float64, shared/training_range.py).", 0.1,
        check=in_range(training_range.LR_MIN, training_range.LR_MAX))

    logistic: bool = setting(
        "Also fit the one-vs-rest logistic-regression model by secure SGD (kept as shares "
        "beside the templates). Identification and verification read only the templates; "
        "the logistic model's work grows with identities x enrolments x epochs, so galleries "
        "of many thousand identities train with this off (templates only: seconds).", True)

    def problems(self) -> list[Problem]:
        """The settings must lie in the measured training range."""
        return [Problem("train.learning_rate", why) for why in training_range.settings_problems(
            self.epochs, self.batch_size, self.learning_rate)]


@dataclass(frozen=True, kw_only=True)
class LimitOptions:
    """What one terminal may ask: both servers apply their own limits, and either refuses."""

    per_second: float = setting("identify + verify requests per second, per terminal.", 10.0,
                                check=in_range(0.0, 10_000.0, lo_open=True))
    burst: float = setting("Requests a terminal may send at once above per_second.", 30.0,
                           check=in_range(1.0, 100_000.0))
    strikes_per_hour: float = setting(
        "Out-of-range probes or offers abandoned without a submit a terminal may produce in an "
        "hour before it is refused everything (an honest terminal produces none).", 5.0,
        check=in_range(1.0, 10_000.0))
    verify_per_identity_per_hour: float = setting(
        "Verifications naming one identity, from all terminals together, per hour: bounds "
        "hill-climbing on the accept bit (docs/SECURITY.md).", 60.0,
        check=in_range(1.0, 1_000_000.0))
    submit_timeout_s: float = setting(
        "Seconds the servers wait for a terminal's submit after its offer; every other "
        "terminal waits meanwhile, and an honest terminal submits within one round trip.",
        1.0, check=in_range(0.2, 60.0))
    card_submit_timeout_s: float = setting(
        "The same for a card-bound request, whose submit waits for the card's signature.",
        5.0, check=in_range(0.2, 120.0))


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """One MPC server (P0 or P1). P0 binds the peer link, P1 connects to it."""

    party: Literal[0, 1] = setting("Which server this is: 0 (binds the peer link) or 1.")
    listen_edge: str = setting(
        "Endpoint this server binds for edge terminals, e.g. tcp://0.0.0.0:7100 or tcp://*:7100.",
        check=endpoint(bind=True))
    listen_peer: str | None = setting(
        "P0 only: endpoint P0 binds for P1's connection.", None, check=endpoint(bind=True),
        example='"tcp://*:7102"')
    peer_endpoint: str | None = setting(
        "P1 only: P0's peer endpoint that P1 connects to.", None, check=endpoint(bind=False),
        example='"tcp://p0.example.net:7102"')
    dealer_endpoint: str = setting("The dealer's endpoint this server connects to.",
                                   check=endpoint(bind=False))
    secret_key_file: Path = setting(_doc_secret("This server"), file_check=_secret_key_file)
    peer_public_key_file: Path = setting("The other server's public key file.",
                                         file_check=_public_key_file)
    dealer_public_key_file: Path = setting("The dealer's public key file.",
                                           file_check=_public_key_file)
    allowed_edge_keys_dir: Path = setting(
        "Folder of edge public key files (NAME.key): the ZAP allow-list of terminals. "
        "NAME is the terminal id.", file_check=_public_keys_dir)
    state_dir: Path = setting(
        "Folder for this server's SQLite database (its shares); must be writable and "
        "private to the service user.")
    max_message_bytes: int = setting(
        "Largest accepted message from a terminal: a bigger one gets an error. A single "
        "frame over 260 KiB (this release never sends one) drops the connection "
        "(ZMQ_MAXMSGSIZE).",
        4 * MiB, check=_MESSAGE_LIMITS)
    request_timeout_s: float = setting(
        "Seconds to wait for the peer or dealer before a request fails with a timeout error.",
        30.0, check=_TIMEOUT)
    log_level: LogLevel = setting("Log verbosity.", "info")
    admin_terminals: tuple[str, ...] = setting(
        "Terminal names (from the allow-list) that may train, revoke and reconcile; both "
        "servers must list the same ones.", (), check=check_name)
    identify: IdentifyOptions = setting("Identification settings.", IdentifyOptions())
    train: TrainOptions = setting("Secure training settings.", TrainOptions())
    limits: LimitOptions = setting("Per-terminal and per-identity limits.", LimitOptions())

    def problems(self) -> list[Problem]:
        """Cross-key rules: the peer link's direction depends on the party; the training
        settings must lie in the measured range."""
        found = self.train.problems()
        if self.party == 0:
            if self.listen_peer is None:
                found.append(Problem("listen_peer", "required for party 0 (P0 binds the peer "
                                                    "link)"))
            if self.peer_endpoint is not None:
                found.append(Problem("peer_endpoint", "only for party 1; P0 uses listen_peer"))
        else:
            if self.peer_endpoint is None:
                found.append(Problem("peer_endpoint", "required for party 1 (P1 connects to "
                                                      "P0)"))
            if self.listen_peer is not None:
                found.append(Problem("listen_peer", "only for party 0; P1 uses peer_endpoint"))
        if self.listen_peer is not None and _same_bind(self.listen_peer, self.listen_edge):
            found.append(Problem("listen_peer", f"same address as listen_edge "
                                                f"({self.listen_edge})"))
        return found


def _same_bind(a: str, b: str) -> bool:
    ea, eb = parse_endpoint(a, bind=True), parse_endpoint(b, bind=True)
    if ea.transport != eb.transport:
        return False
    if not ea.is_tcp:
        return ea.path == eb.path
    return ea.port == eb.port and ("*" in (ea.host, eb.host) or ea.host == eb.host)


# ============================================================================ dealer


@dataclass(frozen=True, kw_only=True)
class DealerConfig:
    """The dealer: serves input-independent correlated randomness to P0 and P1 only."""

    listen: str = setting("Endpoint the dealer binds for the two servers.",
                          check=endpoint(bind=True))
    secret_key_file: Path = setting(_doc_secret("The dealer"), file_check=_secret_key_file)
    allowed_server_keys: tuple[Path, ...] = setting(
        "Public key files of the servers allowed to connect (P0 and P1): the ZAP allow-list.",
        file_check=_public_key_file)
    state_dir: Path = setting("Folder for the dealer's state: its MAC key ring (keyring.json, "
                              "mode 0600); back it up, stored shares depend on it.")
    max_message_bytes: int = setting(
        "Largest accepted request message; a bigger one gets an error (frames over 260 KiB "
        "drop the connection).", 64 * MiB,
        check=_MESSAGE_LIMITS)
    request_timeout_s: float = setting("Seconds before an unanswered request fails.", 60.0,
                                       check=_TIMEOUT)
    log_level: LogLevel = setting("Log verbosity.", "info")

    def problems(self) -> list[Problem]:
        found = []
        if not self.allowed_server_keys:
            found.append(Problem("allowed_server_keys", "must list the P0 and P1 public key "
                                                        "files"))
        if len(set(self.allowed_server_keys)) != len(self.allowed_server_keys):
            found.append(Problem("allowed_server_keys", "lists the same file twice"))
        return found


# ============================================================================ edge


@dataclass(frozen=True, kw_only=True)
class ServerLink:
    """How an edge reaches one server."""

    endpoint: str = setting("The server's listen_edge address as seen from this terminal.",
                            check=endpoint(bind=False))
    public_key_file: Path = setting("The server's public key file.", file_check=_public_key_file)


@dataclass(frozen=True, kw_only=True)
class ServersOptions:
    """The two MPC servers; the edge sends one share to each."""

    request_timeout_s: float = setting(
        "Seconds to wait for both servers' answers before the attempt fails.", 5.0,
        check=_TIMEOUT)
    retries: int = setting("Extra attempts (same request id) after a timeout.", 2,
                           check=in_range(0, 100))
    max_message_bytes: int = setting("Largest accepted reply message (status --names "
                                     "listings grow with the gallery).", 1 * MiB,
                                     check=_MESSAGE_LIMITS)
    p0: ServerLink = setting("Server P0 (receives share 0 of every query).")
    p1: ServerLink = setting("Server P1 (receives share 1 of every query).")


def _camera_source(value: int | str) -> str:
    if isinstance(value, int):
        return "" if value >= 0 else f"camera index must be >= 0, got {value}"
    return check_not_empty(value)


def _camera_source_file(value: int | str) -> str:
    """A camera index is checked when opened; a path or image-folder pattern must exist now."""
    if isinstance(value, int) or "://" in value:
        return ""
    path = Path(value)
    if "%" in path.name:
        return existing_dir(path.parent)
    return "" if path.exists() else f"camera source {value} does not exist"


@dataclass(frozen=True, kw_only=True)
class CameraOptions:
    """Frame source for OpenCV VideoCapture."""

    source: int | str = setting(
        "Camera index (0 = /dev/video0), a video file, a device path, a stream URL, or an "
        "image-folder pattern such as frames/%04d.png.", 0, check=_camera_source,
        file_check=_camera_source_file)
    width: int = setting("Requested capture width in pixels.", 640, check=in_range(16, 8192))
    height: int = setting("Requested capture height in pixels.", 480, check=in_range(16, 8192))
    fps: float = setting("Requested frames per second.", 15.0, check=in_range(0.0, 240.0,
                                                                              lo_open=True))


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """Which detector and embedder to run, and where their files are."""

    detector: Literal["litert"] = setting(
        "Runtime of the face models (BlazeFace, face mesh): the LiteRT interpreter, the one "
        "path every command and the daemon share.", "litert")
    embedder: Literal["mobilefacenet-int8", "mobilefacenet-float", "dlib-resnet"] = setting(
        "Face embedding model (see docs/MODELS.md for provenance and licences).",
        "mobilefacenet-int8")
    model_dir: Path = setting("Folder holding the converted model files.",
                              Path("/opt/splitface/models"), file_check=existing_dir)


@dataclass(frozen=True, kw_only=True)
class DetectionOptions:
    """Face detection; every command and the daemon read it, so enrolment and live queries
    see faces the same way."""

    range: Literal["auto", "full", "short"] = setting(
        "BlazeFace model: full (faces up to ~5 m: surveillance), short (within ~2 m: a door or "
        "tap terminal; whole frame only), or auto = full in surveillance mode, short in "
        "tap-to-verify mode.", "auto")
    min_eye_px: float = setting(
        "Full range: the smallest distance between the eyes, in frame pixels, the detector "
        "must find. Below what the model sees on the whole frame (about 1/32 of the frame's "
        "long side), overlapping tiles are searched too, at more time per frame. 0 = the "
        "whole frame only.", 20.0, check=in_range(0.0, 1000.0))


@dataclass(frozen=True, kw_only=True)
class CardOptions:
    """PC/SC smart card binding (used in tap-to-verify mode)."""

    reader: str = setting("Use the first reader whose name contains this text; empty = any.", "")
    timeout_s: float = setting("Seconds to wait for a card tap.", 10.0, check=_TIMEOUT)
    pin_env: str | None = setting(
        "Name of the environment variable holding the card PIN; unset = card without PIN.",
        None, check=check_env_name, example='"SPLITFACE_CARD_PIN"')


@dataclass(frozen=True, kw_only=True)
class EventsOptions:
    """Local event stream (ZeroMQ PUB) for door controllers and displays."""

    publish: str = setting(
        "Endpoint the daemon binds to publish recognition events: ipc:///run/splitface/events "
        "under systemd, or tcp://127.0.0.1:PORT.", "ipc:///run/splitface/events",
        check=endpoint(bind=True))


@dataclass(frozen=True, kw_only=True)
class TrackingOptions:
    """Face tracking between frames, so one person triggers one query."""

    stable_frames: int = setting("Frames a face must be tracked before it is identified.", 3,
                                 check=in_range(1, 1000))
    lost_frames: int = setting("Frames a face may be missing before its track ends.", 10,
                               check=in_range(1, 10_000))


@dataclass(frozen=True, kw_only=True)
class WatchdogOptions:
    """systemd watchdog behaviour: pings come only from main-loop progress."""

    enabled: bool = setting(
        "Answer systemd's WatchdogSec= with WATCHDOG=1 pings while the main loop progresses. "
        "Turn off only for debugging under a unit without WatchdogSec=.", True)
    frame_stall_s: float = setting(
        "Seconds without a decoded camera frame after which the main loop counts as stuck: it "
        "stops reporting progress, so systemd restarts the daemon and the camera is reopened.",
        10.0, check=in_range(0.0, 3600.0, lo_open=True))


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    """One edge terminal daemon (splitface-edged)."""

    terminal_id: str = setting(
        "This terminal's id; equals the name of its public key file on the servers "
        "(allowed_edge_keys_dir/ID.key).", check=check_name)
    secret_key_file: Path = setting(_doc_secret("This terminal"), file_check=_secret_key_file)
    mode: Literal["surveillance", "tap-to-verify"] = setting(
        "surveillance: identify every stable face; tap-to-verify: wait for a card tap and verify "
        "the face against the card holder.", "surveillance")
    state_dir: Path = setting("Folder for the daemon's local state (pending request ids).",
                              Path("/var/lib/splitface/edge"))
    log_level: LogLevel = setting("Log verbosity.", "info")
    servers: ServersOptions = setting("The two MPC servers.")
    camera: CameraOptions = setting("Camera capture settings.", CameraOptions())
    models: ModelOptions = setting("Detector and embedder models.", ModelOptions())
    detection: DetectionOptions = setting("Face detection.", DetectionOptions())
    card: CardOptions = setting("PC/SC smart card (tap-to-verify mode).", CardOptions())
    events: EventsOptions = setting("Local recognition event stream.", EventsOptions())
    tracking: TrackingOptions = setting("Face tracking between frames.", TrackingOptions())
    watchdog: WatchdogOptions = setting("systemd watchdog behaviour.", WatchdogOptions())

    def problems(self) -> list[Problem]:
        if self.servers.p0.endpoint == self.servers.p1.endpoint:
            return [Problem("servers.p1.endpoint", "same endpoint as servers.p0.endpoint; the "
                                                   "two shares must go to two servers")]
        return []


# ============================================================================ load / write


def load_server_config(path: str | Path, *, party: int | None = None,
                       check_files: bool = True) -> ServerConfig:
    """Load a server's config; ``party`` (from ``--party``) must match the file's ``party``."""
    config = load_toml(ServerConfig, path, check_files=check_files)
    if party is not None and config.party != party:
        raise ConfigError(Path(path), [Problem("party", f"is {config.party} but the service was "
                                                        f"started with --party {party}")])
    return config


def load_dealer_config(path: str | Path, *, check_files: bool = True) -> DealerConfig:
    return load_toml(DealerConfig, path, check_files=check_files)


def load_edge_config(path: str | Path, *, check_files: bool = True) -> EdgeConfig:
    return load_toml(EdgeConfig, path, check_files=check_files)


AnyConfig = ServerConfig | DealerConfig | EdgeConfig


def dump_config(config: AnyConfig, *, base_dir: Path | None = None, header: str = "") -> str:
    """Commented TOML for ``config``; paths under ``base_dir`` are written relative to it."""
    return dump_toml(config, base_dir=base_dir, header=header)


def write_config(config: AnyConfig, path: str | Path, *, header: str = "") -> Path:
    """Write ``config`` atomically (temp file + rename); paths relative to its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dump_config(config, base_dir=path.parent.absolute(), header=header)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def reference() -> str:
    """The Markdown field reference embedded in docs/DEPLOY.md."""
    parts = []
    for title, cls in (("Server (`splitface-server`)", ServerConfig),
                       ("Dealer (`splitface-dealer`)", DealerConfig),
                       ("Edge (`splitface-edged`)", EdgeConfig)):
        parts.append(f"#### {title}\n\n{reference_markdown(cls)}\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(reference())
