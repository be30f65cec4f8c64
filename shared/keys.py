"""CurveZMQ key files: generate, write with safe permissions, load and validate.

Format: pyzmq's ``zmq.auth`` certificate format (ZPL text, the same files czmq writes), so an
allow-list folder works unchanged with ``ThreadAuthenticator.configure_curve(location=DIR)``::

    # splitface CURVE secret key for p0 -- keep private (mode 0600)
    metadata
        name = "p0"
        created = "2026-11-26T10:00:00+00:00"
    curve
        public-key = "<40 Z85 characters>"
        secret-key = "<40 Z85 characters>"

``NAME.key`` holds only the public key (mode 0644) and may be copied anywhere;
``NAME.key_secret`` holds both keys (mode 0600) and never leaves its machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
Z85_KEY_LENGTH = 40


class KeyFileError(ValueError):
    """A key file is missing, malformed, or has unsafe permissions; the message names the path."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class KeyPair:
    """A CurveZMQ key pair as Z85 text (40 ASCII bytes each); the secret never appears in repr."""

    public: bytes
    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> KeyPair:
        """Fresh Curve25519 pair from libzmq's CSPRNG (libsodium ``randombytes``)."""
        public, secret = zmq.curve_keypair()
        return cls(public, secret)


def _check_z85(path: Path, what: str, key: bytes) -> bytes:
    if len(key) != Z85_KEY_LENGTH:
        raise KeyFileError(path, f"{what} must be {Z85_KEY_LENGTH} Z85 characters, got {len(key)}")
    try:
        z85.decode(key)
    except (ValueError, KeyError, UnicodeDecodeError):
        raise KeyFileError(path, f"{what} is not valid Z85 text") from None
    return key


def _render(name: str, public: bytes, secret: bytes | None) -> str:
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    kind = "secret" if secret is not None else "public"
    advice = ("keep private: mode 0600, never copy it off this machine" if secret is not None
              else "safe to distribute; verify its fingerprint out of band")
    lines = [
        f"#   splitface CURVE {kind} key for {name} -- {advice}",
        "#   Format: ZeroMQ certificate (zmq.auth.load_certificate); see docs/DEPLOY.md.",
        "",
        "metadata",
        f'    name = "{name}"',
        f'    created = "{created}"',
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _write_new(path: Path, text: str, mode: int, *, overwrite: bool) -> None:
    """Write ``path`` atomically with ``mode`` from the first byte.

    The text goes to a hidden temporary file created with ``mode`` (never world-readable, not
    matched by ``*.key``), is fsynced, then linked into place: a reader never sees a half-written
    key, and without ``overwrite`` an existing key is never replaced.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            os.fchmod(f.fileno(), mode)  # the umask may have narrowed it
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileError(path, "already exists; refusing to overwrite") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_public_key(path: Path | str, name: str, public: bytes, *,
                     overwrite: bool = False) -> Path:
    """Write a public key file (mode 0644)."""
    path = Path(path)
    _check_z85(path, "public key", public)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_new(path, _render(name, public, None), 0o644, overwrite=overwrite)
    return path


def write_keypair(directory: Path | str, name: str, pair: KeyPair | None = None, *,
                  overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) into ``directory``.

    Generates a fresh pair unless one is given. Returns (public path, secret path).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pair = pair or KeyPair.generate()
    secret_path = directory / f"{name}{SECRET_SUFFIX}"
    _check_z85(secret_path, "secret key", pair.secret)
    _write_new(secret_path, _render(name, pair.public, pair.secret), 0o600, overwrite=overwrite)
    public_path = write_public_key(directory / f"{name}{PUBLIC_SUFFIX}", name, pair.public,
                                   overwrite=overwrite)
    return public_path, secret_path


def check_secret_permissions(path: Path | str) -> None:
    """Refuse a secret key file that group or others can access (or that is not a plain file)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(path, "secret key file does not exist") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot stat secret key file: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(path, "secret key path is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            path,
            f"secret key file is accessible by group/others (mode {mode:04o}); "
            f"fix it with: chmod 600 {path}",
        )


def _read_certificate(path: Path) -> tuple[bytes, bytes | None]:
    if not path.exists():
        raise KeyFileError(path, "key file does not exist")
    if not path.is_file():
        raise KeyFileError(path, "key path is not a regular file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except ValueError:
        raise KeyFileError(path, "no 'public-key = \"...\"' line: not a CURVE key file") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot read key file: {exc}") from None
    return _check_z85(path, "public key", public), secret


def load_secret_key(path: Path | str) -> tuple[bytes, bytes]:
    """Load ``(public_z85, secret_z85)`` from a secret key file after checking its permissions.

    Also checks that the public key really belongs to the secret key, so a file edited by hand
    or mixed up with another component's fails here and not as a silent handshake timeout.
    """
    path = Path(path)
    check_secret_permissions(path)
    public, secret = _read_certificate(path)
    if secret is None:
        raise KeyFileError(path, "has no 'secret-key' line: this is a public key file")
    _check_z85(path, "secret key", secret)
    if zmq.curve_public(secret) != public:
        raise KeyFileError(path, "public-key does not match secret-key (file corrupted or edited)")
    return public, secret


def load_keypair(path: Path | str) -> KeyPair:
    public, secret = load_secret_key(path)
    return KeyPair(public, secret)


def load_public_key(path: Path | str) -> bytes:
    """Load the Z85 public key (40 bytes) from a public key file.

    A file that also holds a secret key is refused: a secret in a place meant for public keys
    has probably been copied where it should not be.
    """
    path = Path(path)
    public, secret = _read_certificate(path)
    if secret is not None:
        raise KeyFileError(path, "contains a secret-key; use the public NAME.key file here and "
                                 "keep NAME.key_secret on its own machine")
    return public


def load_public_keys_dir(directory: Path | str) -> dict[str, bytes]:
    """Load every ``NAME.key`` in ``directory`` as ``{NAME: public_z85}`` (a ZAP allow-list).

    Hidden files and other suffixes are ignored (as ``zmq.auth`` does); a secret key file in the
    folder or the same key under two names is an error.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyFileError(directory, "allow-list directory does not exist")
    keys: dict[str, bytes] = {}
    owners: dict[bytes, str] = {}
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name.endswith(SECRET_SUFFIX):
            raise KeyFileError(entry, "secret key file inside a public allow-list directory; "
                                      "remove it and check who could read it")
        if not entry.name.endswith(PUBLIC_SUFFIX):
            continue
        public = load_public_key(entry)
        name = entry.name[: -len(PUBLIC_SUFFIX)]
        if public in owners:
            raise KeyFileError(entry, f"same public key as {owners[public]}{PUBLIC_SUFFIX}")
        owners[public] = name
        keys[name] = public
    return keys


def fingerprint(public: bytes) -> str:
    """Short, human-comparable digest of a public key for out-of-band verification."""
    digest = hashlib.sha256(z85.decode(public)).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


_RACY_NS = 1_000_000_000


class AllowListDir:
    """A ZAP allow-list backed by a folder of ``NAME.key`` files, re-read when it changes.

    ``splitface-keys add-edge``/``revoke-edge`` plus an rsync of the folder then take effect
    without restarting the server. Use it as pyzmq's credentials provider::

        auth.configure_curve_callback(domain="*", credentials_provider=AllowListDir(path))

    The folder is re-read when its mtime changes (files are added, removed or renamed in, as
    our writers and rsync do) and at least every ``max_age_s``. If it cannot be read (a secret
    key dropped in, a malformed file) it admits nobody until fixed, and logs why: failing
    closed keeps a revoked terminal out.
    """

    def __init__(self, directory: Path | str, *, max_age_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger | None = None) -> None:
        self.directory = Path(directory)
        self.max_age_s = max_age_s
        self.clock = clock
        self.log = log or logging.getLogger("splitface.keys")
        self._stamp: tuple[int, int] | None = None
        self._loaded_at = float("-inf")
        self._names: dict[bytes, str] = {}
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the folder if it changed or ``max_age_s`` passed (or ``force``)."""
        try:
            st = self.directory.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        now = self.clock()
        if (not force and stamp is not None and stamp == self._stamp
                and now - self._loaded_at < self.max_age_s):
            return
        # "Racy" stamp (as in git's index): a change in the same coarse timestamp tick as the
        # one we saw would leave the mtime unchanged, so re-read until the mtime is old enough.
        if stamp is not None and time.time_ns() - stamp[0] < _RACY_NS:
            stamp = None
        self._stamp, self._loaded_at = stamp, now
        try:
            loaded = load_public_keys_dir(self.directory)
        except KeyFileError as exc:
            self.log.error("allow-list unusable, admitting nobody until fixed: %s", exc)
            self._names = {}
            return
        self._names = {public: name for name, public in loaded.items()}

    def name_of(self, public_z85: bytes) -> str:
        """The terminal name of an admitted key, or '' when the key is not on the list."""
        self.refresh()
        return self._names.get(bytes(public_z85), "")

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq credentials-provider hook (``key`` arrives Z85-encoded)."""
        name = self.name_of(key)
        if not name:
            self.log.warning("refused CURVE client %s... (not on %s)", key[:8].decode(),
                             self.directory)
        return bool(name)
