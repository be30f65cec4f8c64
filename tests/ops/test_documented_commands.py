"""The README's commands, run verbatim in a fresh folder: keys, the three daemons, and every
`splitface-edge` line, each with the exit code the documentation promises. The inputs the
lines name (lfw_folder/, a1.jpg, camera.mp4, ...) are staged from the bundled test photos;
the terminal daemon line needs /etc and a camera and is covered by tests/daemon."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from splitface.edge.testdata import TestData
from tests.ops.units import REPO

DAEMONS = ("splitface-dealer", "splitface-server")
ENROLLED = ("obama", "crowd3-2", "crowd6-0")  # the LFW-style folder
ALICE = "crowd6-1"  # whose photos play alice


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Using it"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [" ".join(shlex.split(ln, comments=True)) for ln in lines if ln.strip()]


def _fit(img: np.ndarray) -> np.ndarray:
    out = np.zeros((480, 640, 3), np.uint8)
    h, w = img.shape[:2]
    s = min(480 / h, 640 / w)
    small = cv2.resize(img, (int(w * s), int(h * s)))
    out[:small.shape[0], :small.shape[1]] = small
    return out


def _stage_inputs(cwd: Path) -> None:
    """The files the README's lines name, from photos that pass the enrolment bar (a batch
    with a blurred or side-on photo exits 2, as documented)."""
    from splitface.edge.pipeline.errors import PipelineError
    from splitface.edge.pipeline.pipeline import FacePipeline, PipelineOptions

    views = TestData.load().by_identity()
    with FacePipeline.from_options(PipelineOptions()) as pipe:
        def enrolable(im) -> bool:
            try:
                pipe.process(cv2.imread(str(im.path)), purpose="enrol")
                return True
            except PipelineError:
                return False
        good = {n: [im for im in views[n] if enrolable(im)] for n in (*ENROLLED, ALICE)}
    for name in ENROLLED:
        folder = cwd / "lfw_folder" / name
        folder.mkdir(parents=True)
        for i, im in enumerate(good[name][:4], 1):
            shutil.copy(im.path, folder / f"{name}_{i:04d}{im.path.suffix}")
    alice = [im.path for im in good[ALICE]]
    shutil.copy(alice[0], cwd / "a1.jpg")
    shutil.copy(alice[1], cwd / "a2.jpg")
    shutil.copy(alice[2], cwd / "photo.jpg")
    (cwd / "probes").mkdir()
    for p in alice[3:5]:
        shutil.copy(p, cwd / "probes" / p.name)
    writer = cv2.VideoWriter(str(cwd / "camera.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5,
                             (640, 480))
    assert writer.isOpened()
    for im in (good["obama"][5], good[ALICE][5]):
        writer.write(_fit(cv2.imread(str(im.path))))
    writer.release()


def _wait_ready(env: dict, cwd: Path, daemons: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for d in daemons:
            assert d.poll() is None, f"{d.args} exited with {d.returncode}"
        r = subprocess.run(["splitface-edge", "status", "--config", "deploy/edge-1/config.toml",
                            "--json"], cwd=cwd, env=env, capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"the daemons did not come up: {r.stdout} {r.stderr}")


def test_the_readme_commands_run_verbatim(tmp_path):
    commands = readme_commands()
    assert commands[0].startswith("splitface-keys init") and len(commands) >= 12
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    (cwd / "var").symlink_to(REPO / "var")  # what `make demo` built in the checkout
    _stage_inputs(cwd)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    daemons: list[subprocess.Popen] = []
    ran = []
    try:
        for cmd in commands:
            argv = shlex.split(cmd)
            if argv[0] == "splitface-edged":
                continue  # needs /etc/splitface and a camera: tests/daemon runs the daemon
            if argv[0] in DAEMONS:
                log = open(cwd / f"{len(daemons)}.log", "wb")  # noqa: SIM115 - lives on
                daemons.append(subprocess.Popen(argv, cwd=cwd, env=env, stdout=log,
                                                stderr=subprocess.STDOUT))
                continue
            if argv[0] == "splitface-edge" and not ran:
                _wait_ready(env, cwd, daemons)
            r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=600)
            ran.append(cmd)
            assert r.returncode == 0, f"{cmd}\nexit {r.returncode}\n{r.stdout}\n{r.stderr}"
            if argv[1] == "identify":
                assert "obama" in r.stdout and ALICE not in r.stdout, r.stdout
    finally:
        for d in daemons:
            d.terminate()
        for d in daemons:
            try:
                assert d.wait(20) == 0, f"{d.args} exited with {d.returncode}"
            except subprocess.TimeoutExpired:
                d.kill()
                raise
    assert len(ran) >= 9
    assert not any(ln.startswith("Traceback") for ln in (cwd / "0.log").read_text().splitlines())


def deploy_key_commands() -> set[str]:
    """Every `splitface-keys ...` command docs/DEPLOY.md shows (code spans and blocks)."""
    text = (REPO / "docs" / "DEPLOY.md").read_text().replace("\\\n", " ")
    found = re.findall(r"`(splitface-keys [^`]+)`", text)
    found += re.findall(r"^(splitface-keys .+)$", text, re.M)
    return {" ".join(c.split()) for c in found if len(c.split()) > 2}


# The guide's key commands in the order an operator runs them, with its placeholders filled
# in (FILE, NEW) and the terminal's own folder standing in for /etc/splitface/edge/keys on
# the terminal; then `cp` brings the public key back, as the guide says.
DEPLOY_SEQUENCE = [
    "splitface-keys init --out ./site-a --edges 3 --admin edge-1 --p0-host 10.0.0.1 "
    "--p1-host 10.0.1.1 --dealer-host 10.0.2.1 --base-port 7100",
    "splitface-keys check --deployment site-a",
    "splitface-keys show-public FILE --fingerprint",
    "splitface-keys generate --name gate-7 --out /etc/splitface/edge/keys",
    "splitface-keys add-edge --deployment site-a --name gate-7 --public-key gate-7.key",
    "splitface-keys check --deployment site-a",
    "splitface-keys revoke-edge --deployment site-a --name gate-7",
    "splitface-keys add-edge --deployment site-a --name gate-7",
    "splitface-keys check --deployment site-a",
    "splitface-keys generate --name p0 --out NEW",
]
FILLED = {"FILE": "site-a/p0/keys/p0.key", "/etc/splitface/edge/keys": "terminal-keys",
          "NEW": "NEW"}


def test_the_deploy_guide_key_commands_run_verbatim(tmp_path):
    documented = deploy_key_commands()
    assert set(DEPLOY_SEQUENCE) == documented, (
        "docs/DEPLOY.md's splitface-keys commands changed: update DEPLOY_SEQUENCE",
        documented - set(DEPLOY_SEQUENCE), set(DEPLOY_SEQUENCE) - documented)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    for cmd in DEPLOY_SEQUENCE:
        argv = [FILLED.get(a, a) for a in shlex.split(cmd)]
        r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, f"{cmd}\nexit {r.returncode}\n{r.stdout}\n{r.stderr}"
        if argv[1] == "generate" and argv[3] == "gate-7":
            shutil.copy(tmp_path / "terminal-keys" / "gate-7.key", tmp_path / "gate-7.key")
        if argv[1] == "show-public":
            assert len(r.stdout.splitlines()) == 2  # the key and its fingerprint
    assert (tmp_path / "site-a" / "gate-7").is_dir()
    assert (tmp_path / "NEW" / "p0.key_secret").is_file()
