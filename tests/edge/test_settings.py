"""One set of pipeline settings from the terminal's config, for every command and the daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from splitface.edge.cli import main as cli_main
from splitface.edge.pipeline.settings import pipeline_options_from_config
from splitface.shared.config import (
    DetectionOptions,
    EdgeConfig,
    ModelOptions,
    ServerLink,
    ServersOptions,
)


def _config(mode: str, detection: DetectionOptions, model_dir: Path) -> EdgeConfig:
    link = ServerLink(endpoint="tcp://127.0.0.1:7001", public_key_file=Path("p.key"))
    return EdgeConfig(terminal_id="t1", secret_key_file=Path("t1.key_secret"), mode=mode,
                      servers=ServersOptions(p0=link, p1=ServerLink(
                          endpoint="tcp://127.0.0.1:7002", public_key_file=Path("q.key"))),
                      models=ModelOptions(model_dir=model_dir, embedder="mobilefacenet-float"),
                      detection=detection)


@pytest.mark.parametrize("mode,rng,expect,tiles", [
    ("surveillance", "auto", "full", 20.0), ("tap-to-verify", "auto", "short", 0.0),
    ("tap-to-verify", "full", "full", 20.0), ("surveillance", "short", "short", 0.0)])
def test_detector_follows_the_terminal(mode, rng, expect, tiles, tmp_path):
    opts = pipeline_options_from_config(_config(mode, DetectionOptions(range=rng), tmp_path))
    assert opts.detector.range == expect and opts.detector.min_eye_px == tiles
    names = {"full": "face_detection_full_range_sparse.tflite",
             "short": "face_detection_short_range.tflite"}
    assert opts.detector.model_path == tmp_path / names[expect]
    assert opts.landmarker.model_path == tmp_path / "face_landmark.tflite"
    assert opts.embedder.kind == "mobilefacenet-float"
    assert opts.embedder.model_path == tmp_path / "mobilefacenet_float.tflite"


def test_cli_takes_models_and_detection_from_the_config(tmp_path, testdata, capsys):
    """``embed --config`` runs what the config says: a short-range terminal finds none of the
    six faces round the table that the full-range one finds, and a model_dir without the
    models is an error (the CLI used to ignore both)."""
    models = Path(testdata.root).parent / "models"
    subprocess.run([sys.executable, "-m", "splitface.shared.cli_keys", "init", "--out",
                    str(tmp_path / "dep"), "--edges", "1", "--layout", "local",
                    "--model-dir", str(models)], check=True, capture_output=True, text=True)
    cfg = (tmp_path / "dep" / "edge-1" / "config.toml").read_text()
    group = str(testdata.groups()[6].path)
    found = {}
    for rng in ("full", "short"):
        path = tmp_path / "dep" / "edge-1" / f"{rng}.toml"
        assert 'range = "auto"' in cfg
        path.write_text(cfg.replace('range = "auto"', f'range = "{rng}"'))
        cli_main(["embed", group, "--config", str(path), "--json"])
        found[rng] = len(json.loads(capsys.readouterr().out.splitlines()[-1])["faces"])
    assert found == {"full": 6, "short": 0}
    empty = tmp_path / "no-models"
    empty.mkdir()
    bad = tmp_path / "dep" / "edge-1" / "bad.toml"
    bad.write_text(cfg.replace(str(models), str(empty)))
    assert cli_main(["embed", group, "--config", str(bad)]) == 78  # configuration error
    assert "model_missing" in capsys.readouterr().err
