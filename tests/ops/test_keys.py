"""Key files: permissions enforced, format compatible with zmq.auth, clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq
import zmq.auth

from splitface.shared import keys


def test_write_keypair_modes_and_zmq_auth_format(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask the secret must be 0600
    try:
        public_path, secret_path = keys.write_keypair(tmp_path, "p0")
    finally:
        os.umask(old)
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert (public_path.name, secret_path.name) == ("p0.key", "p0.key_secret")
    public, secret = keys.load_secret_key(secret_path)
    assert (public, secret) == zmq.auth.load_certificate(secret_path)
    assert keys.load_public_key(public_path) == public
    assert zmq.auth.load_certificate(public_path) == (public, None)
    assert zmq.curve_public(secret) == public
    assert list(zmq.auth.load_certificates(tmp_path)) == [public]
    assert secret.decode() not in public_path.read_text()
    assert secret.decode() not in repr(keys.load_keypair(secret_path))
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    keys.write_keypair(tmp_path, "edge-1")
    before = (tmp_path / "edge-1.key_secret").read_bytes()
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.write_keypair(tmp_path, "edge-1")
    assert (tmp_path / "edge-1.key_secret").read_bytes() == before


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o700 | 0o070])
def test_secret_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    _, secret_path = keys.write_keypair(tmp_path, "p1")
    secret_path.chmod(mode)
    with pytest.raises(keys.KeyFileError) as info:
        keys.load_secret_key(secret_path)
    assert str(info.value) == (
        f"{secret_path}: secret key file is accessible by group/others (mode {mode:04o}); "
        f"fix it with: chmod 600 {secret_path}")
    secret_path.chmod(0o600)
    keys.load_secret_key(secret_path)
    secret_path.chmod(0o400)
    keys.load_secret_key(secret_path)


def test_corrupt_and_wrong_files(tmp_path: Path) -> None:
    public_path, secret_path = keys.write_keypair(tmp_path, "d")
    with pytest.raises(keys.KeyFileError, match="does not exist"):
        keys.load_secret_key(tmp_path / "missing.key_secret")
    with pytest.raises(keys.KeyFileError, match="this is a public key file"):
        public_path.chmod(0o600)
        keys.load_secret_key(public_path)
    with pytest.raises(keys.KeyFileError, match="contains a secret-key"):
        keys.load_public_key(secret_path)
    text = secret_path.read_text()
    other_public = keys.KeyPair.generate().public.decode()
    secret_path.write_text(text.replace(keys.load_secret_key(secret_path)[0].decode(),
                                        other_public))
    with pytest.raises(keys.KeyFileError, match="public-key does not match secret-key"):
        keys.load_secret_key(secret_path)
    bad = tmp_path / "bad.key"
    bad.write_text('curve\n    public-key = "tooshort"\n')
    with pytest.raises(keys.KeyFileError, match="must be 40 Z85 characters, got 8"):
        keys.load_public_key(bad)
    bad.write_text('curve\n    public-key = "' + "~" * 40 + '"\n')
    with pytest.raises(keys.KeyFileError, match="not valid Z85"):
        keys.load_public_key(bad)
    bad.write_text("hello\n")
    with pytest.raises(keys.KeyFileError, match="not a CURVE key file"):
        keys.load_public_key(bad)
    with pytest.raises(keys.KeyFileError, match="not a regular file"):
        keys.load_public_key(tmp_path)


def test_load_public_keys_dir(tmp_path: Path) -> None:
    allow = tmp_path / "edges"
    pairs = {name: keys.KeyPair.generate() for name in ("edge-1", "edge-2", "door.a")}
    for name, pair in pairs.items():
        keys.write_public_key(allow / f"{name}.key", name, pair.public)
    (allow / "README").write_text("not a key\n")
    (allow / ".edge-9.key.tmp").write_text("half written")
    assert keys.load_public_keys_dir(allow) == {n: p.public for n, p in pairs.items()}
    keys.write_public_key(allow / "copy.key", "copy", pairs["edge-1"].public)
    with pytest.raises(keys.KeyFileError, match=r"edge-1\.key: same public key as copy\.key"):
        keys.load_public_keys_dir(allow)
    (allow / "copy.key").unlink()
    keys.write_keypair(allow, "oops")
    with pytest.raises(keys.KeyFileError, match="secret key file inside a public allow-list"):
        keys.load_public_keys_dir(allow)
    with pytest.raises(keys.KeyFileError, match="allow-list directory does not exist"):
        keys.load_public_keys_dir(tmp_path / "nope")


def test_fingerprint_is_stable_and_distinct() -> None:
    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    assert keys.fingerprint(a.public) == keys.fingerprint(a.public)
    assert keys.fingerprint(a.public) != keys.fingerprint(b.public)
    assert len(keys.fingerprint(a.public)) == 39


def test_allow_list_dir_follows_changes_and_fails_closed(tmp_path: Path) -> None:
    allow = tmp_path / "edges"
    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    keys.write_public_key(allow / "a.key", "a", a.public)
    now = [0.0]
    allow_list = keys.AllowListDir(allow, max_age_s=5.0, clock=lambda: now[0])
    assert allow_list.name_of(a.public) == "a" and allow_list.callback("*", a.public)
    assert allow_list.name_of(b.public) == "" and not allow_list.callback("*", b.public)
    keys.write_public_key(allow / "b.key", "b", b.public)  # directory mtime changes
    assert allow_list.name_of(b.public) == "b"
    (allow / "a.key").unlink()
    assert allow_list.name_of(a.public) == ""
    keys.write_keypair(allow, "oops")  # a secret in the allow-list: nobody gets in
    assert allow_list.name_of(b.public) == ""
    for leftover in allow.glob("oops.*"):
        leftover.unlink()
    assert allow_list.name_of(b.public) == "b"
    # once the folder's mtime is settled, reads are cached; an in-place edit (which keeps the
    # folder's mtime) shows up after max_age_s at the latest
    past = (os.stat(allow).st_mtime_ns - 3_600_000_000_000,) * 2
    os.utime(allow, ns=past)
    now[0] = 1.0
    assert allow_list.name_of(b.public) == "b"
    (allow / "b.key").write_text((allow / "b.key").read_text().replace(
        b.public.decode(), a.public.decode()))
    os.utime(allow, ns=past)
    now[0] = 2.0
    assert allow_list.name_of(b.public) == "b"  # cached
    now[0] = 7.0
    assert allow_list.name_of(a.public) == "b" and allow_list.name_of(b.public) == ""
