"""splitface-edged in tap-to-verify mode over the real card stack: pcscd + the vpcd driver +
a virtual card, the real TapFlow, real servers and real faces. The card reader going away
(pcscd stopped) and coming back is reported and recovered without a restart."""

from __future__ import annotations

import cv2
import pytest

from splitface.edge.card import CardTerminal, TerminalOptions
from splitface.edge.pipeline.pipeline import FacePipeline
from splitface.edge.tap import TapFlow, TapStatus
from splitface.edge.testdata import TestData
from tests.card.conftest import pcscd, running_pcscd  # noqa: F401  (fixtures)
from tests.card.pcscd import Pcscd
from tests.card.virtual_card import VirtualCardApplet, VpcdCard
from tests.daemon.conftest import Deployed, _pipeline_options
from tests.daemon.harness import EdgedProcess, edge_config, free_port, write_video

CARD_ID = bytes.fromhex("5346000000000d01")


@pytest.fixture
def obama_card(deployed: Deployed, running_pcscd: Pcscd) -> VirtualCardApplet:  # noqa: F811
    """A card personalised for obama and bound on both servers (enrolment with the card)."""
    deployed.ensure_up()
    data = TestData.load()
    enrol, _ = data.enrol_probe("obama", n_enrol=3)
    frames = [cv2.imread(str(i.path)) for i in enrol]
    applet = VirtualCardApplet(CARD_ID)
    opts = TerminalOptions(reader_name_contains=running_pcscd.readers[0], tap_timeout_s=5.0)
    with deployed.client() as c, FacePipeline.from_options(_pipeline_options()) as pipe, \
            CardTerminal.from_options(opts) as term, TapFlow(c, pipe, term, lambda: None) as flow:
        with VpcdCard(applet, running_pcscd.slot_port(0)):
            result = flow.enroll_with_card("obama", frames)
        assert result.status is TapStatus.ENROLLED, result
        assert term.wait_for_removal(running_pcscd.readers[0], 5.0)
        assert c.admin("train").status == "trained"
    return applet


def test_tap_to_verify_and_reader_outage(deployed: Deployed, running_pcscd: Pcscd,  # noqa: F811
                                         obama_card: VirtualCardApplet, tmp_path) -> None:
    obama = next(f for who, f in deployed.scene.people if who == "obama")
    video = write_video(tmp_path / "camera.avi", [(obama, 60)], 15.0)
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(video),
                      publish=publish, mode="tap-to-verify")
    text = cfg.read_text().replace('reader = ""', f'reader = "{running_pcscd.readers[0]}"')
    cfg.write_text(text)
    with EdgedProcess(cfg, publish, tmp_path) as d:
        d.wait_for("READY=1", lambda: d.has("READY"), 60)
        with VpcdCard(obama_card, running_pcscd.slot_port(0)):
            ok = d.wait_event(lambda e: e["event"].startswith("verification"), 30,
                              what="a verification after the tap")
        assert ok["event"] == "verification", ok
        assert (ok["accepted"], ok["identity"], ok["status"]) == (True, "obama", "accepted")
        assert "total_ms" in ok["timings_ms"]
        # The reader goes away (pcscd stops): reported, retried, never fatal.
        running_pcscd.stop()
        try:
            n = len(d.events)
            d.wait_event(lambda e: e["event"] == "card_reader_unavailable", 30, after=n,
                         what="card_reader_unavailable")
            d.wait_event(lambda e: e["event"] == "card_reader_unavailable" and
                         e["attempt"] >= 2, 30, after=n, what="a reader retry")
            assert d.proc.poll() is None
        finally:
            running_pcscd.start()
        m = len(d.events)
        d.wait_event(lambda e: e["event"] == "card_reader_restored", 40, after=m,
                     what="card_reader_restored")
        with VpcdCard(obama_card, running_pcscd.slot_port(0)):
            again = d.wait_event(lambda e: e["event"].startswith("verification"), 30, after=m,
                                 what="a verification after the reader came back")
        assert again["event"] == "verification" and again["accepted"], again
        assert d.terminate() == 0
