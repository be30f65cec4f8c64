"""A broken configuration exits 78 (EX_CONFIG: the unit does not restart) with one clear
message; nothing is started, nothing else is printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.conftest import Deployed
from tests.daemon.harness import edge_config, free_port

EX_CONFIG = 78


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splitface.edge.daemon.main", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def good(deployed: Deployed, tmp_path: Path) -> Path:
    video = tmp_path / "camera.avi"
    video.write_bytes(b"not opened by --check")
    return edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(video),
                       publish=f"tcp://127.0.0.1:{free_port()}")


def test_check_accepts_a_good_config(good: Path) -> None:
    r = _run("--config", str(good), "--check")
    assert r.returncode == 0, r.stderr
    assert "config, keys and models OK" in r.stdout


def test_missing_config_file(tmp_path: Path) -> None:
    r = _run("--config", str(tmp_path / "nope.toml"))
    assert r.returncode == EX_CONFIG
    assert "configuration file not found" in r.stderr and "nope.toml" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize(("old", "new", "message"), [
    ('mode = "surveillance"', 'mode = "sentry"', "mode"),
    ("stable_frames = 3", "stable_frames = 0", "stable_frames"),
    ("[camera]", "[camera]\nresolution = 5", "resolution"),
])
def test_bad_values_are_named(good: Path, old: str, new: str, message: str) -> None:
    text = good.read_text()
    assert old in text
    good.write_text(text.replace(old, new, 1))
    r = _run("--config", str(good))
    assert r.returncode == EX_CONFIG, r.stderr
    assert "configuration error" in r.stderr and message in r.stderr
    assert "Traceback" not in r.stderr


def test_unsafe_secret_key_permissions(good: Path, tmp_path: Path) -> None:
    import shutil
    import tomllib

    cfg = tomllib.loads(good.read_text())
    key = tmp_path / "leaky.key_secret"
    shutil.copy(good.parent / cfg["secret_key_file"], key)
    key.chmod(0o644)
    good.write_text(good.read_text().replace(cfg["secret_key_file"], str(key)))
    r = _run("--config", str(good))
    assert r.returncode == EX_CONFIG
    assert "leaky.key_secret" in r.stderr and "Traceback" not in r.stderr


def test_models_missing(good: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    text = good.read_text()
    lines = [f'model_dir = "{empty}"' if ln.startswith("model_dir") else ln
             for ln in text.splitlines()]
    good.write_text("\n".join(lines) + "\n")
    r = _run("--config", str(good))
    assert r.returncode == EX_CONFIG
    assert "models" in r.stderr and "make models" in r.stderr
    assert "Traceback" not in r.stderr


def test_tap_mode_without_its_pin_variable(good: Path) -> None:
    text = good.read_text().replace('mode = "surveillance"', 'mode = "tap-to-verify"')
    text = text.replace('# pin_env = "SPLITFACE_CARD_PIN"', 'pin_env = "SPLITFACE_TEST_PIN"')
    good.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "SPLITFACE_TEST_PIN"}
    r = subprocess.run([sys.executable, "-m", "splitface.edge.daemon.main", "--config",
                        str(good)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == EX_CONFIG, r.stderr
    assert "SPLITFACE_TEST_PIN" in r.stderr and "Traceback" not in r.stderr
