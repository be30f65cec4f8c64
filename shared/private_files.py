"""Files only the service user may read: share and card databases, the dealer's key ring.

Created with mode 0600 from the start (not left to a umask or to systemd's sandbox), and
written atomically where a torn write would lose a key.
"""

from __future__ import annotations

import os
from pathlib import Path


def make_private(path: Path, *, create: bool = True) -> None:
    """Create ``path`` with mode 0600 (or tighten an existing file to it)."""
    if create and not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    if path.exists() and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def write_secret_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (mode 0600, fsynced file and folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
