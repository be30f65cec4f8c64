"""``splitface-edge`` service commands as a person would run them, against real daemons."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from splitface.edge.testdata import TestData


def edge(deployment, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    cfg = deployment.root / "edge-1" / "config.toml"
    return subprocess.run([sys.executable, "-m", "splitface.edge.cli", *args, "--config",
                           str(cfg)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def photos():
    data = TestData.load()
    return {n: [i.path for i in imgs] for n, imgs in data.by_identity().items()}


def test_enroll_train_identify_verify_by_cli(deployment, photos):
    for name in ("obama", "biden"):
        r = edge(deployment, "enroll", "--identity", name, *map(str, photos[name][1:5]), "--json")
        assert r.returncode == 0, r.stderr
        statuses = [json.loads(line)["status"] for line in r.stdout.splitlines()]
        assert statuses.count("enrolled") >= 3, statuses
    r = edge(deployment, "admin", "train", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "trained"
    r = edge(deployment, "identify", str(photos["obama"][0]), "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.splitlines()[0])
    (face,) = rec["faces"]  # every face of the frame is listed, with its box and quality
    assert face["identity"] == "obama" and face["accepted"] is True
    assert face["status"] == "identified" and len(face["box"]) == 4 and face["quality"]
    r = edge(deployment, "verify", str(photos["biden"][0]), "--identity", "biden", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["accepted"] is True
    r = edge(deployment, "verify", str(photos["obama"][0]), "--identity", "biden", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["accepted"] is False
    r = edge(deployment, "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["consistent"] is True


def test_cli_errors_are_clear(deployment, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    r = edge(deployment, "enroll", "--identity", "someone", str(bad), "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["status"] == "corrupt_input"
    r = edge(deployment, "verify", str(photos["obama"][0]), "--identity", "no-such-person",
             "--json")  # answered like a stranger's face: no membership oracle
    assert r.returncode == 1 and json.loads(r.stdout)["accepted"] is False
    r = edge(deployment, "verify", str(photos["obama"][0]), "--identity", "two\nlines")
    assert r.returncode == 64 and "identity must be" in r.stderr
    r = subprocess.run([sys.executable, "-m", "splitface.edge.cli", "status", "--config",
                        str(tmp_path / "missing.toml")], capture_output=True, text=True)
    assert r.returncode == 78 and "configuration error" in r.stderr
