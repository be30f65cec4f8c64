"""Config files: valid ones load into the documented dataclasses, invalid ones fail clearly."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from splitface.shared.config import (
    ConfigError,
    DealerConfig,
    EdgeConfig,
    ServerConfig,
    dump_config,
    load_dealer_config,
    load_edge_config,
    load_server_config,
    write_config,
)
from splitface.shared.config_schema import EndpointError, parse_endpoint
from splitface.shared.deployment import Deployment


def _replace_line(path: Path, key: str, new: str) -> None:
    """Replace the ``key = ...`` line (first one) in a TOML file; ``new`` may be several lines."""
    text = path.read_text()
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.M)
    assert pattern.search(text), f"{key} not in {path}"
    path.write_text(pattern.sub(lambda _m: new, text, count=1))


def _errors(load, path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(str(path)), message  # every line names the file
    return message


def test_generated_configs_load_with_defaults(deployment: Deployment) -> None:
    p0 = load_server_config(deployment.config_path("p0"), party=0)
    p1 = load_server_config(deployment.config_path("p1"), party=1)
    dealer = load_dealer_config(deployment.config_path("dealer"))
    edge = load_edge_config(deployment.config_path("edge-1"))
    assert p0.party == 0 and p1.party == 1
    assert p0.listen_peer == "tcp://127.0.0.1:17102" and p0.peer_endpoint is None
    assert p1.peer_endpoint == "tcp://127.0.0.1:17102" and p1.listen_peer is None
    assert p0.max_message_bytes == 4 << 20 and p0.identify.threshold == 0.5
    assert p0.train.epochs == 20 and p0.log_level == "info"
    assert p0.state_dir == deployment.folder("p0") / "state"
    assert p0.secret_key_file.is_absolute() and p0.secret_key_file.exists()
    assert len(dealer.allowed_server_keys) == 2
    assert edge.terminal_id == "edge-1" and edge.mode == "surveillance"
    assert edge.camera.source == 0 and edge.tracking.stable_frames == 3
    assert edge.servers.p0.endpoint == "tcp://127.0.0.1:17100"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p0.party = 1  # type: ignore[misc]


def test_relative_paths_follow_the_folder(deployment: Deployment, tmp_path: Path) -> None:
    """A deployment folder copied elsewhere (as onto its machine) still loads."""
    import shutil

    moved = tmp_path / "etc-splitface-p0"
    shutil.copytree(deployment.folder("p0"), moved)
    config = load_server_config(moved / "config.toml")
    assert config.secret_key_file == moved / "keys" / "p0.key_secret"
    assert config.allowed_edge_keys_dir == moved / "keys" / "edges"


def test_dump_round_trips(deployment: Deployment, tmp_path: Path) -> None:
    for name, load in (("p0", load_server_config), ("p1", load_server_config),
                       ("dealer", load_dealer_config), ("edge-2", load_edge_config)):
        config = load(deployment.config_path(name))
        text = dump_config(config, base_dir=deployment.folder(name))
        assert "# " in text  # commented
        copy = deployment.folder(name) / "copy.toml"
        copy.write_text(text)
        assert load(copy) == config
        # write_config is the same, atomically
        write_config(config, copy)
        assert load(copy) == config


def test_unset_optional_key_is_written_commented_out(deployment: Deployment) -> None:
    text = deployment.config_path("edge-1").read_text()
    assert '# pin_env = "SPLITFACE_CARD_PIN"' in text
    assert "\npin_env" not in text


@pytest.mark.parametrize(
    ("key", "line", "expected"),
    [
        ("max_message_bytes", 'max_message_bytes = "4MiB"',
         "max_message_bytes: expected an integer, got string '4MiB'"),
        ("max_message_bytes", "max_message_bytes = 10", "max_message_bytes: must be in"),
        ("listen_edge", 'listen_edge = "tcp://127.0.0.1:70000"',
         "listen_edge: port 70000 is out of range 1-65535"),
        ("listen_edge", 'listen_edge = "127.0.0.1:7000"', "listen_edge: expected 'tcp://HOST:PORT'"),
        ("listen_edge", 'listen_edge = "udp://127.0.0.1:7000"',
         "listen_edge: transport must be 'tcp' or 'ipc'"),
        ("dealer_endpoint", 'dealer_endpoint = "tcp://*:7103"',
         "dealer_endpoint: '*' is only valid for a listening endpoint"),
        ("party", "party = 2", "party: must be one of 0, 1, got 2"),
        ("party", "party = true", "party: must be one of 0, 1, got True"),
        ("log_level", 'log_level = "verbose"', "log_level: must be one of 'debug'"),
        ("request_timeout_s", "request_timeout_s = 0", "request_timeout_s: must be in (0.0,"),
        ("request_timeout_s", "request_timeout_s = nan", "must be a finite number"),
        ("threshold", "threshold = 1.5", "identify.threshold: must be in [-1.0, 1.0], got 1.5"),
        ("epochs", "epochs = 2.5", "train.epochs: expected an integer, got float 2.5"),
        ("state_dir", 'state_dir = ""', "state_dir: path must not be empty"),
        ("admin_terminals", 'admin_terminals = ["edge-1", "../x"]',
         "admin_terminals: must be 1-64 characters"),
    ],
)
def test_server_field_errors(deployment: Deployment, key: str, line: str, expected: str) -> None:
    path = deployment.config_path("p0")
    _replace_line(path, key, line)
    assert expected in _errors(load_server_config, path)


def test_unknown_key_is_rejected_with_suggestion(deployment: Deployment) -> None:
    path = deployment.config_path("p0")
    _replace_line(path, "request_timeout_s", "request_timeout = 3.0")
    message = _errors(load_server_config, path)
    assert "request_timeout: unknown key in the top level; did you mean 'request_timeout_s'?" \
        in message


def test_unknown_key_in_nested_table(deployment: Deployment) -> None:
    path = deployment.config_path("edge-1")
    _replace_line(path, "fps", "fps = 15.0\nfpss = 3")
    assert "camera.fpss: unknown key in [camera]" in _errors(load_edge_config, path)


def test_missing_required_key_and_all_problems_reported(deployment: Deployment) -> None:
    path = deployment.config_path("p0")
    _replace_line(path, "dealer_endpoint", "")
    _replace_line(path, "log_level", 'log_level = "loud"')
    message = _errors(load_server_config, path)
    assert "dealer_endpoint: required key is missing" in message
    assert "log_level: must be one of" in message
    assert len(message.splitlines()) == 2


def test_missing_table_and_bad_array_item(deployment: Deployment) -> None:
    path = deployment.config_path("edge-1")
    text = path.read_text()
    start, end = text.index("[servers.p1]"), text.index("[camera]")
    path.write_text(text[:start] + text[end:])
    assert "servers.p1: required table [servers.p1] is missing" in _errors(load_edge_config,
                                                                          path)
    dealer = deployment.config_path("dealer")
    _replace_line(dealer, "allowed_server_keys", 'allowed_server_keys = ["keys/servers/p0.key", 7]')
    assert "allowed_server_keys: item 1: expected a path string, got integer 7" in _errors(
        load_dealer_config, dealer)
    _replace_line(dealer, "allowed_server_keys", "allowed_server_keys = []")
    assert "allowed_server_keys: must list the P0 and P1 public key files" in _errors(
        load_dealer_config, dealer)


def test_party_rules(deployment: Deployment) -> None:
    with pytest.raises(ConfigError, match=r"party: is 1 but the service was started with "
                                          r"--party 0"):
        load_server_config(deployment.config_path("p1"), party=0)
    path = deployment.config_path("p1")
    _replace_line(path, "peer_endpoint", "")
    message = _errors(load_server_config, path)
    assert "peer_endpoint: required for party 1" in message
    p0 = deployment.config_path("p0")
    _replace_line(p0, "listen_peer", 'listen_peer = "tcp://*:17100"')
    assert "listen_peer: same address as listen_edge" in _errors(load_server_config, p0)


def test_missing_key_file_and_dir(deployment: Deployment) -> None:
    path = deployment.config_path("p0")
    (deployment.keys_dir("p0") / "dealer.key").unlink()
    _replace_line(path, "allowed_edge_keys_dir", 'allowed_edge_keys_dir = "keys/nope"')
    message = _errors(load_server_config, path)
    assert f"dealer_public_key_file: {deployment.keys_dir('p0') / 'dealer.key'}: key file does " \
           "not exist" in message
    assert "allowed_edge_keys_dir:" in message and "allow-list directory does not exist" in message
    # without file checks the same file parses (used by tools on the admin machine)
    assert load_server_config(path, check_files=False).party == 0


def test_group_readable_secret_key_is_refused(deployment: Deployment) -> None:
    secret = deployment.keys_dir("dealer") / "dealer.key_secret"
    secret.chmod(0o640)
    message = _errors(load_dealer_config, deployment.config_path("dealer"))
    assert f"secret_key_file: {secret}: secret key file is accessible by group/others " \
           f"(mode 0640); fix it with: chmod 600 {secret}" in message


def test_public_key_where_secret_expected(deployment: Deployment) -> None:
    path = deployment.config_path("p0")
    _replace_line(path, "secret_key_file", 'secret_key_file = "keys/p0.key"')
    (deployment.keys_dir("p0") / "p0.key").chmod(0o600)
    assert "has no 'secret-key' line: this is a public key file" in _errors(load_server_config,
                                                                            path)


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("party = 0\nlisten_edge = tcp://x\n")
    message = _errors(load_server_config, path)
    assert "invalid TOML" in message and "line 2" in message


def test_missing_config_file(tmp_path: Path) -> None:
    assert "configuration file not found" in _errors(load_edge_config, tmp_path / "none.toml")


def test_edge_specific_checks(deployment: Deployment) -> None:
    path = deployment.config_path("edge-1")
    text = path.read_text()
    text = text.replace('mode = "surveillance"', 'mode = "kiosk"')
    text = text.replace("source = 0", 'source = "/nonexistent/clip.mp4"')
    text = text.replace('# pin_env = "SPLITFACE_CARD_PIN"', 'pin_env = "1PIN"')
    text = text.replace('terminal_id = "edge-1"', 'terminal_id = "edge 1/../x"')
    path.write_text(text)
    message = _errors(load_edge_config, path)
    assert "mode: must be one of 'surveillance', 'tap-to-verify', got 'kiosk'" in message
    assert "card.pin_env: is not a valid environment variable name" in message
    assert "terminal_id: must be 1-64 characters" in message


def test_camera_sources(deployment: Deployment, tmp_path: Path) -> None:
    path = deployment.config_path("edge-1")
    frames = tmp_path / "frames"
    frames.mkdir()
    for source, ok in ((f'"{frames}/%04d.png"', True), ('"/nonexistent/%04d.png"', False),
                       ('"rtsp://cam.local/stream"', True), ('"/nonexistent.mp4"', False),
                       ("-1", False), ("2", True), ("1.5", False)):
        _replace_line(path, "source", f"source = {source}")
        if ok:
            load_edge_config(path)
        else:
            assert "camera.source" in _errors(load_edge_config, path)


def test_same_server_twice_is_rejected(deployment: Deployment) -> None:
    path = deployment.config_path("edge-1")
    path.write_text(path.read_text().replace("tcp://127.0.0.1:17101", "tcp://127.0.0.1:17100"))
    assert "servers.p1.endpoint: same endpoint as servers.p0.endpoint" in _errors(
        load_edge_config, path)


@pytest.mark.parametrize(
    ("text", "bind", "ok"),
    [
        ("tcp://127.0.0.1:1", False, True),
        ("tcp://*:7000", True, True),
        ("tcp://[::1]:7000", False, True),
        ("tcp://::1:7000", False, False),
        ("tcp://[zz]:7000", False, False),
        ("tcp://p0.example.net:7000", False, True),
        ("tcp://bad_host!:7000", False, False),
        ("tcp://host:0", False, False),
        ("tcp://host:", False, False),
        ("ipc:///run/splitface/events", True, True),
        ("ipc://relative/path", True, False),
        ("ipc:///" + "x" * 120, True, False),
        ("inproc://x", True, False),
    ],
)
def test_parse_endpoint(text: str, bind: bool, ok: bool) -> None:
    if ok:
        parse_endpoint(text, bind=bind)
    else:
        with pytest.raises(EndpointError):
            parse_endpoint(text, bind=bind)


def test_every_field_is_documented() -> None:
    def walk(cls: type) -> int:
        hints = typing.get_type_hints(cls)
        count = 0
        for field in dataclasses.fields(cls):
            assert len(field.metadata.get("doc", "")) > 10, f"{cls.__name__}.{field.name}"
            count += walk(hints[field.name]) if dataclasses.is_dataclass(hints[field.name]) else 1
        return count

    assert walk(ServerConfig) == 26 and walk(DealerConfig) == 7 and walk(EdgeConfig) == 29
