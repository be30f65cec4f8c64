"""splitface-keys: init, add-edge, revoke-edge, generate, show-public, check (through main())."""

from __future__ import annotations

import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from splitface.shared import keys
from splitface.shared.cli_keys import main
from splitface.shared.config import load_dealer_config, load_edge_config, load_server_config
from splitface.shared.deployment import Deployment, check_deployment


def _init(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "dep"
    assert main(["init", "--out", str(out), *extra]) == 0
    return out


def test_init_creates_copyable_folders_whose_configs_all_load(tmp_path: Path,
                                                              model_dir: Path) -> None:
    out = _init(tmp_path, "--edges", "3", "--layout", "local", "--model-dir", str(model_dir),
                "--base-port", "18000")
    dep = Deployment(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "dealer", "deployment.toml", "edge-1", "edge-2", "edge-3", "p0", "p1"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert check_deployment(out) == []

    p0 = load_server_config(dep.config_path("p0"), party=0)
    p1 = load_server_config(dep.config_path("p1"), party=1)
    dealer = load_dealer_config(dep.config_path("dealer"))
    publics = {n: keys.load_secret_key(c.secret_key_file)[0]
               for n, c in (("p0", p0), ("p1", p1), ("dealer", dealer))}
    assert keys.load_public_key(p0.peer_public_key_file) == publics["p1"]
    assert keys.load_public_key(p1.peer_public_key_file) == publics["p0"]
    for server in (p0, p1):
        assert keys.load_public_key(server.dealer_public_key_file) == publics["dealer"]
    assert {keys.load_public_key(p) for p in dealer.allowed_server_keys} == {publics["p0"],
                                                                            publics["p1"]}
    events = set()
    for i in (1, 2, 3):
        name = f"edge-{i}"
        edge = load_edge_config(dep.config_path(name))
        own = keys.load_secret_key(edge.secret_key_file)[0]
        assert keys.load_public_key(edge.servers.p0.public_key_file) == publics["p0"]
        assert keys.load_public_key(edge.servers.p1.public_key_file) == publics["p1"]
        for server in (p0, p1):
            assert keys.load_public_keys_dir(server.allowed_edge_keys_dir)[name] == own
        events.add(edge.events.publish)
        # every path a component needs lives inside its own folder
        for path in (edge.secret_key_file, edge.servers.p0.public_key_file, edge.state_dir):
            assert dep.folder(name) in path.parents
    assert events == {"tcp://127.0.0.1:18010", "tcp://127.0.0.1:18011", "tcp://127.0.0.1:18012"}
    for name, config in (("p0", p0), ("p1", p1)):
        for path in (config.secret_key_file, config.peer_public_key_file,
                     config.allowed_edge_keys_dir, config.state_dir):
            assert dep.folder(name) in path.parents
    # no component folder carries anyone else's secret
    for name in ("p0", "p1", "dealer", "edge-1", "edge-2", "edge-3"):
        secrets = [p.name for p in dep.folder(name).rglob("*.key_secret")]
        assert secrets == [f"{name}.key_secret"], (name, secrets)


def test_system_layout_matches_the_units(tmp_path: Path) -> None:
    out = _init(tmp_path, "--edges", "1", "--p0-host", "10.0.0.1", "--p1-host", "p1.example.net",
                "--dealer-host", "10.0.0.3")
    dep = Deployment(out)
    p0 = load_server_config(dep.config_path("p0"), check_files=False)
    p1 = load_server_config(dep.config_path("p1"), check_files=False)
    dealer = load_dealer_config(dep.config_path("dealer"), check_files=False)
    edge = load_edge_config(dep.config_path("edge-1"), check_files=False)
    assert p0.state_dir == Path("/var/lib/splitface/p0")
    assert p1.state_dir == Path("/var/lib/splitface/p1")
    assert dealer.state_dir == Path("/var/lib/splitface/dealer")
    assert edge.state_dir == Path("/var/lib/splitface/edge")
    assert edge.events.publish == "ipc:///run/splitface/events"
    assert edge.models.model_dir == Path("/opt/splitface/models")
    # IP literals are bound as given; a DNS name binds all interfaces (ZeroMQ cannot bind names)
    assert p0.listen_edge == "tcp://10.0.0.1:7100" and p0.listen_peer == "tcp://10.0.0.1:7102"
    assert p1.listen_edge == "tcp://*:7101"
    assert p1.peer_endpoint == "tcp://10.0.0.1:7102"
    assert p0.dealer_endpoint == "tcp://10.0.0.3:7103" and dealer.listen == "tcp://10.0.0.3:7103"
    assert edge.servers.p1.endpoint == "tcp://p1.example.net:7101"
    assert check_deployment(out) == []  # keys consistent even though state dirs are elsewhere


def test_add_edge_updates_both_allow_lists(deployment: Deployment, capsys) -> None:
    assert main(["add-edge", "--deployment", str(deployment.root), "--name", "gate-7",
                 "--name", "gate-8"]) == 0
    for name in ("gate-7", "gate-8"):
        edge = load_edge_config(deployment.config_path(name))
        own = keys.load_secret_key(edge.secret_key_file)[0]
        for server in ("p0", "p1"):
            assert keys.load_public_keys_dir(deployment.allow_list(server))[name] == own
    manifest = tomllib.loads(deployment.manifest_path.read_text())
    assert manifest["next_events_port"] == 17114
    assert check_deployment(deployment.root) == []
    # duplicates and reserved names are refused, leaving everything as it was
    before = sorted(p.name for p in deployment.allow_list("p0").iterdir())
    assert main(["add-edge", "--deployment", str(deployment.root), "--name", "gate-7"]) == 2
    assert "already exists" in capsys.readouterr().err
    for bad in ("p0", "dealer", "../x", "a b"):
        assert main(["add-edge", "--deployment", str(deployment.root), "--name", bad]) == 2
    assert sorted(p.name for p in deployment.allow_list("p0").iterdir()) == before
    assert not list(deployment.root.glob(".*staging"))


def test_add_edge_with_a_key_made_on_the_terminal(deployment: Deployment, tmp_path: Path) -> None:
    device = tmp_path / "on-device"
    assert main(["generate", "--name", "kiosk-1", "--out", str(device)]) == 0
    assert main(["add-edge", "--deployment", str(deployment.root), "--name", "kiosk-1",
                 "--public-key", str(device / "kiosk-1.key")]) == 0
    folder = deployment.folder("kiosk-1")
    assert not list(folder.rglob("*.key_secret")), "the secret never left the terminal"
    assert check_deployment(deployment.root) == []
    # on the terminal: put the secret in place, then the config loads
    (folder / "keys" / "kiosk-1.key_secret").write_bytes(
        (device / "kiosk-1.key_secret").read_bytes())
    (folder / "keys" / "kiosk-1.key_secret").chmod(0o600)
    edge = load_edge_config(folder / "config.toml")
    assert keys.load_public_keys_dir(deployment.allow_list("p1"))["kiosk-1"] == \
        keys.load_secret_key(edge.secret_key_file)[0]


def test_add_edge_refuses_a_reused_public_key(deployment: Deployment, capsys) -> None:
    shared = deployment.keys_dir("edge-1") / "edge-1.key"
    assert main(["add-edge", "--deployment", str(deployment.root), "--name", "twin",
                 "--public-key", str(shared)]) == 2
    assert "already belongs to edge-1" in capsys.readouterr().err
    assert not deployment.folder("twin").exists()
    assert check_deployment(deployment.root) == []


def test_revoke_edge(deployment: Deployment) -> None:
    assert main(["revoke-edge", "--deployment", str(deployment.root), "--name", "edge-1"]) == 0
    for server in ("p0", "p1"):
        assert list(keys.load_public_keys_dir(deployment.allow_list(server))) == ["edge-2"]
    assert not deployment.folder("edge-1").exists()
    assert check_deployment(deployment.root) == []
    assert main(["revoke-edge", "--deployment", str(deployment.root), "--name", "edge-1"]) == 2


def test_check_finds_inconsistencies(deployment: Deployment) -> None:
    (deployment.allow_list("p1") / "edge-2.key").unlink()
    keys.write_public_key(deployment.allow_list("p0") / "ghost.key", "ghost",
                          keys.KeyPair.generate().public)
    other = keys.KeyPair.generate()
    stale = deployment.keys_dir("edge-1") / "p0.key"
    stale.unlink()
    keys.write_public_key(stale, "p0", other.public)
    problems = check_deployment(deployment.root)
    assert "p1: allow-list has no entry edge-2.key matching edge-2's key" in problems
    assert "p0: allow-list entry ghost.key has no terminal folder" in problems
    assert any(p.startswith("edge-1: servers.p0.public_key_file") and "is not p0's current" in p
               for p in problems)
    assert main(["check", "--deployment", str(deployment.root)]) == 1


def test_init_refuses_bad_input(tmp_path: Path, capsys) -> None:
    out = _init(tmp_path, "--edges", "0")
    assert main(["init", "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["init", "--out", str(tmp_path / "x"), "--base-port", "65534"]) == 2
    assert "do not fit in 1-65535" in capsys.readouterr().err
    assert main(["add-edge", "--deployment", str(tmp_path), "--name", "e"]) == 2
    assert "not a deployment folder" in capsys.readouterr().err


def test_show_public(deployment: Deployment, capsys) -> None:
    secret = deployment.keys_dir("p0") / "p0.key_secret"
    public = keys.load_secret_key(secret)[0].decode()
    assert main(["show-public", str(secret), "--fingerprint"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == public and len(lines[1]) == 39
    assert main(["show-public", str(deployment.keys_dir("p0") / "p0.key")]) == 0
    assert capsys.readouterr().out.strip() == public
    secret.chmod(0o644)
    assert main(["show-public", str(secret)]) == 2
    assert f"chmod 600 {secret}" in capsys.readouterr().err


def test_console_script_entry_point(tmp_path: Path) -> None:
    """The installed `splitface-keys` runs (pyproject's console entry point)."""
    exe = Path(sys.executable).with_name("splitface-keys")
    if not exe.exists():
        pytest.skip("package not installed in this interpreter's environment")
    result = subprocess.run([exe, "init", "--out", tmp_path / "d", "--edges", "1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "edge-1" / "config.toml").exists()
