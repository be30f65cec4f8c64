"""``splitface-edge`` against a deployment of its own that the tests break: no model yet, a
server killed in the middle of an enrolment batch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import pytest

from splitface.edge.exit_codes import ExitCode
from splitface.edge.testdata import TestData
from splitface.servers.deploy_local import LocalDeployment
from tests.services.conftest import client_for, free_base_port

BATCH = 16  # images in the batch a server dies in
# synthetic views of one photo that pass the enrolment quality bar
GOOD_VIEWS = ("_mirror", "_roll+15", "_roll-15", "_bright-g0.5", "_yaw+0.12", "_yaw-0.12",
              "_jpeg-q15", "_noise-s10")
DOWN_S = 5.0  # longer than the client's own retries (2 x 2 s): the batch has to wait
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) "
                      r"splitface[.\w]*: ")


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-batch") / "dep"
    d = LocalDeployment.create(root, edges=1, base_port=free_base_port(),
                               train={"epochs": 1, "batch_size": 16})
    cfg = root / "edge-1" / "config.toml"  # a dead server is noticed within 2 s, not 5
    cfg.write_text(cfg.read_text().replace("request_timeout_s = 5.0", "request_timeout_s = 2.0")
                   .replace("retries = 2", "retries = 1"))
    d.start()
    with client_for(d) as c:
        d.wait_ready(c)
    yield d
    d.stop()


def edge(dep, *args: str, config: str = "config.toml") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splitface.edge.cli", *args, "--config",
                           str(dep.root / "edge-1" / config)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    """An LFW-style folder: NAME/NAME_0001.jpg, BATCH images of two people."""
    root = tmp_path_factory.mktemp("lfw")
    by = TestData.load().by_identity(kinds=("view",))
    for name in ("obama", "biden"):
        (root / name).mkdir()
        views = [im for im in by[name] if im.path.stem.endswith(GOOD_VIEWS)]
        for i, im in enumerate(views[: BATCH // 2], 1):
            shutil.copy(im.path, root / name / f"{name}_{i:04d}{im.path.suffix}")
    assert len(list(root.glob("*/*"))) == BATCH
    return root


def test_without_a_model_queries_are_refused(dep, lfw):
    """exit 3, with the servers' code, for identify and verify before any training."""
    photo = str(next((lfw / "obama").iterdir()))
    for args in (("identify", photo), ("verify", photo, "--identity", "obama")):
        r = edge(dep, *args)
        assert r.returncode == ExitCode.REFUSED and "no_model" in r.stderr, (args, r.stderr)


def test_batch_enrolment_rides_out_a_server_restart(dep, lfw):
    """P1 is killed after a few images and restarted DOWN_S later: the batch pauses, retries
    the image in flight with the same request id and goes on; every image is enrolled once."""
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "splitface.edge.cli", "enroll", str(lfw), "--json",
           "--config", str(dep.root / "edge-1" / "config.toml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = []
    try:
        for line in proc.stdout:
            records.append(json.loads(line))
            if len(records) == 3:
                dep.kill("p1")
                time.sleep(DOWN_S)
                dep.start(("p1",))
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - t0
    err = proc.stderr.read()
    assert rc == ExitCode.OK, (records, err)
    assert len(records) == BATCH and {r["status"] for r in records} == {"enrolled"}, records
    assert max(r["attempts"] for r in records) >= 2  # one was retried, none dropped
    assert "waiting up to" in err and "answer again" in err
    for line in err.splitlines():  # our own lines only, each with time and level
        assert LOG_LINE.match(line), line
    with client_for(dep) as c:
        s0, s1 = c.status()
    assert s0["records"] == s1["records"] == BATCH and s0["digest"] == s1["digest"]
    assert took < 60
    r = edge(dep, "enroll", str(lfw), "--json")  # re-running the batch stores nothing twice
    assert r.returncode == 0
    assert {json.loads(x)["status"] for x in r.stdout.splitlines()} == {"duplicate"}
