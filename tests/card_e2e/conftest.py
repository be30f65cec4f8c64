"""Real pcscd + vpcd + virtual cards, a real LocalDeployment, the real face pipeline.

Nothing is mocked: the terminal side is ``splitface.edge.tap.TapFlow`` over pyscard and
``SplitfaceClient``; the servers are the dealer/P0/P1 daemons on loopback; the camera is a
queue of real test photos fed to the real detector and embedder.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from splitface.edge.card import CardTerminal, ConnectionOptions, TerminalOptions
from splitface.edge.client import SplitfaceClient
from splitface.edge.pipeline.detect import DetectorOptions
from splitface.edge.pipeline.pipeline import FacePipeline, PipelineOptions
from splitface.edge.tap import TapFlow, TapOptions, TapStatus
from splitface.edge.testdata import TestData, TestDataMissingError
from splitface.servers.deploy_local import LocalDeployment
from tests.card.conftest import insert_card, pcscd, running_pcscd  # noqa: F401  (fixtures)
from tests.card.pcscd import Pcscd
from tests.card.virtual_card import VirtualCardApplet
from tests.services.conftest import client_for, free_base_port

# Servers give up on a missing submit after this long (the shipped default is 30 s);
# short here so a card pulled mid-transaction costs the suite seconds, not half a minute.
SERVER_TIMEOUT_S = 4.0
OBAMA_CARD = bytes.fromhex("5346000000000b01")
BIDEN_CARD = bytes.fromhex("5346000000000b02")


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img


@dataclass(frozen=True)
class Photos:
    """Real photos per identity, split into enrolment and probe images."""

    enrol: dict[str, list[np.ndarray]]
    probe: dict[str, list[np.ndarray]]
    noface: np.ndarray


@pytest.fixture(scope="session")
def photos() -> Photos:
    try:
        td = TestData.load()
    except TestDataMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    enrol, probe = {}, {}
    for name, n in (("obama", 3), ("biden", 1), ("astronaut", 1)):
        e, p = td.enrol_probe(name, n)
        enrol[name] = [_read(i.path) for i in e]
        probe[name] = [_read(i.path) for i in p if i.transform != "partial"][:2]
    return Photos(enrol, probe, _read(td.nofaces()[0].path))


@pytest.fixture(scope="session")
def pipeline() -> Iterator[FacePipeline]:
    tap = PipelineOptions(detector=DetectorOptions(range="short", min_eye_px=0))
    with FacePipeline(tap) as p:
        yield p


def _set_key(text: str, key: str, value: float) -> str:
    out, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
    assert n == 1, f"{key} not in the generated config"
    return out


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    root = tmp_path_factory.mktemp("deploy") / "dep"
    dep = LocalDeployment.create(root, edges=2, base_port=free_base_port(),
                                 train={"epochs": 5, "batch_size": 32, "learning_rate": 1.0})
    for p in ("p0", "p1"):
        cfg = root / p / "config.toml"
        cfg.write_text(_set_key(cfg.read_text(), "request_timeout_s", SERVER_TIMEOUT_S))
    dep.start()
    with client_for(dep) as c:
        dep.wait_ready(c)
    yield dep
    codes = dep.stop()
    assert codes == {"dealer": 0, "p0": 0, "p1": 0}, codes


@pytest.fixture
def client(deployment: LocalDeployment) -> Iterator[SplitfaceClient]:
    with client_for(deployment, timeout=15.0) as c:
        yield c


class Camera:
    """The terminal's frame provider: returns queued photos; ``on_frame`` runs first."""

    def __init__(self) -> None:
        self.queue: list[np.ndarray] = []
        self.on_frame: Callable[[], None] | None = None
        self.served = 0

    def show(self, *images: np.ndarray) -> None:
        self.queue = list(images)

    def __call__(self) -> np.ndarray | None:
        if self.on_frame is not None:
            self.on_frame()
        if not self.queue:
            return None
        self.served += 1
        return self.queue.pop(0)


@pytest.fixture
def camera() -> Camera:
    return Camera()


@pytest.fixture
def card_terminal(running_pcscd: Pcscd) -> Iterator[CardTerminal]:  # noqa: F811
    opts = TerminalOptions(reader_name_contains=running_pcscd.readers[0], tap_timeout_s=5.0,
                           connection=ConnectionOptions(apdu_timeout_s=3.0))
    with CardTerminal.from_options(opts) as term:
        yield term


@pytest.fixture
def tap_flow(client: SplitfaceClient, pipeline: FacePipeline, card_terminal: CardTerminal,
             camera: Camera) -> Iterator[TapFlow]:
    opts = TapOptions(tap_timeout_s=5.0, capture_timeout_s=5.0, max_frames=5)
    with TapFlow.from_options(opts, client=client, pipeline=pipeline, terminal=card_terminal,
                              frames=camera) as flow:
        yield flow


@dataclass
class Enrolled:
    """Cards personalised and bound during the module's enrolment."""

    cards: dict[str, VirtualCardApplet] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)


@pytest.fixture(scope="module")
def enrolled(deployment: LocalDeployment, photos: Photos, pipeline: FacePipeline,
             pcscd: Pcscd) -> Enrolled:  # noqa: F811
    """obama and biden enrol with their own card; astronaut without one; then train."""
    from tests.card.virtual_card import VpcdCard

    out = Enrolled()
    opts = TerminalOptions(reader_name_contains=pcscd.readers[0], tap_timeout_s=5.0)
    with client_for(deployment) as c, CardTerminal.from_options(opts) as term, \
            TapFlow(c, pipeline, term, lambda: None) as flow:
        for name, card_id in (("obama", OBAMA_CARD), ("biden", BIDEN_CARD)):
            applet = VirtualCardApplet(card_id)
            with VpcdCard(applet, pcscd.slot_port(0)):
                out.results[name] = flow.enroll_with_card(name, photos.enrol[name])
                out.cards[name] = applet
            assert term.wait_for_removal(pcscd.readers[0], 5.0)
        for img in photos.enrol["astronaut"]:
            c.enroll("astronaut", pipeline.process(img).embedding)
        assert c.admin("train").status == "trained"
    for name in out.cards:
        assert out.results[name].status is TapStatus.ENROLLED, out.results[name]
    return out


@dataclass(frozen=True)
class ServerState:
    """Everything a refused request must leave untouched, on both servers."""

    status: tuple[tuple, tuple]
    cards: tuple[tuple, tuple]


def server_state(client: SplitfaceClient, dep: LocalDeployment) -> ServerState:
    keys = ("identities", "model_version", "model_identities", "records", "digest")
    s = client.status(names=True)
    cards = []
    for p in ("p0", "p1"):
        db = dep.root / p / "state" / "cards.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            cards.append(tuple(con.execute(
                "SELECT card_id, public_key, identity_id, status FROM card_bindings "
                "ORDER BY card_id").fetchall()))
    return ServerState(tuple(tuple(x[k] if not isinstance(x[k], list) else tuple(x[k])
                                   for k in keys) for x in s), tuple(cards))
