"""``splitface-edge`` service commands as a person would run them, against real daemons."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from splitface.edge.batch import EnrolRecord
from splitface.edge.cli import main as cli_main
from splitface.edge.cli_admin import ADMIN_NOTE, status_report
from splitface.edge.cli_logging import QUIET_NATIVE_ENV
from splitface.edge.cli_table import Column, TextTable
from splitface.edge.exit_codes import ExitCode, best_answer, for_refusal, worst
from splitface.edge.testdata import TestData
from tests.services.conftest import free_base_port


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


# --------------------------------------------------------------- the exit-code table
def variant(deployment, name: str, ports: int = 0, **changes: str) -> Path:
    """A copy of edge-1's config (next to it: key paths are relative) with lines replaced:
    ``changes`` maps a config key to its new TOML value, for every line assigning it;
    ``ports``: the servers' ports moved there (where nobody listens)."""
    cfg = deployment.root / "edge-1" / "config.toml"
    text = cfg.read_text()
    if ports:
        for i in (0, 1):
            text = text.replace(f":{deployment.base_port + i}\"", f":{ports + i}\"")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        key = line.split("=")[0].strip()
        if key in changes:
            lines[i] = f"{key} = {changes[key]}"
    out = cfg.with_name(name)
    out.write_text("\n".join(lines) + "\n")
    return out


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``splitface-edge ARGV`` in this process (no interpreter start: the table has many
    rows); returns (exit code, stdout, stderr)."""
    try:
        rc = cli_main(list(argv))
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_every_command_exits_by_the_table(deployment, photos, tmp_path, capsys):
    """Each command, each class of outcome it can produce -> the code docs/DEPLOY.md lists.
    (Refusals of identify/verify for a deployment without a model: test_cli_batch.py.)"""
    cfg = str(deployment.root / "edge-1" / "config.toml")
    plain = str(deployment.root / "edge-2" / "config.toml")  # not an admin terminal
    dead = str(variant(deployment, "dead.toml", ports=free_base_port(), request_timeout_s="0.5",
                       retries="0"))
    nomodels = str(variant(deployment, "nomodels.toml",
                           model_dir=f'"{tmp_path / "no-such-folder"}"'))
    missing = str(tmp_path / "missing.toml")
    face, other = str(photos["obama"][0]), str(photos["biden"][0])
    stranger = str(TestData.load().photos("crowd2-0")[0].path)
    noface = str(TestData.load().nofaces()[0].path)
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    lfw = tmp_path / "lfw"
    (lfw / "a:b\nc").mkdir(parents=True)  # not a name the servers accept
    shutil.copy(photos["biden"][1], lfw / "a:b\nc" / "x_0001.jpg")
    for name in ("obama", "biden"):  # whatever ran before, these are enrolled and trained
        assert cli(capsys, "enroll", "--identity", name, *map(str, photos[name][1:5]),
                   "--config", cfg)[0] == 0
    assert cli(capsys, "admin", "train", "--config", cfg)[0] == 0

    E = ExitCode
    table = {
        ("embed", face): E.OK,
        ("embed", noface): E.BAD_INPUT,
        ("embed", str(corrupt)): E.BAD_INPUT,
        ("embed", face, "--config", nomodels): E.CONFIG,
        ("embed", face, "--frobnicate"): E.USAGE,
        ("enroll", "--identity", "obama", face, "--config", cfg): E.OK,
        ("enroll", "--identity", "obama", noface, face, "--config", cfg): E.BAD_INPUT,
        ("enroll", str(lfw), "--config", cfg): E.BAD_INPUT,
        ("enroll", "--identity", "obama", face, "--config", plain): E.REFUSED,
        ("enroll", "--identity", "obama", face, other, "--patience", "0", "--config", dead):
            E.UNAVAILABLE,
        ("enroll", "--identity", "a/b", face, "--config", cfg): E.USAGE,
        ("enroll", face, other, "--config", cfg): E.USAGE,  # no --identity, not a folder
        ("enroll", "--identity", "obama", face, "--config", missing): E.CONFIG,
        ("enroll", "--identity", "obama", face, "--config", nomodels): E.CONFIG,
        ("identify", face, "--config", cfg): E.OK,
        ("identify", stranger, "--config", cfg): E.NEGATIVE,
        ("identify", noface, "--config", cfg): E.BAD_INPUT,
        ("identify", str(corrupt), "--config", cfg): E.BAD_INPUT,
        ("identify", face, "--config", dead): E.UNAVAILABLE,
        ("identify", face, "--max-frames", "x", "--config", cfg): E.USAGE,
        ("identify", face, "--config", nomodels): E.CONFIG,
        ("verify", face, "--identity", "obama", "--config", cfg): E.OK,
        ("verify", face, "--identity", "biden", "--config", cfg): E.NEGATIVE,
        ("verify", noface, "--identity", "obama", "--config", cfg): E.BAD_INPUT,
        ("verify", face, "--identity", "obama", "--config", dead): E.UNAVAILABLE,
        ("verify", face, "--identity", "../x", "--config", cfg): E.USAGE,
        ("verify", face, "--identity", "obama", "--config", missing): E.CONFIG,
        ("status", "--config", cfg): E.OK,
        ("status", "--config", plain): E.OK,
        ("status", "--config", dead): E.UNAVAILABLE,
        ("status", "--config", nomodels): E.OK,  # needs no model
        ("status", "--config", missing): E.CONFIG,
        ("admin", "reconcile", "--config", cfg): E.OK,
        ("admin", "reconcile", "--config", nomodels): E.OK,
        ("admin", "train", "--config", plain): E.REFUSED,
        ("admin", "reconcile", "--config", dead): E.UNAVAILABLE,
        ("admin", "revoke", "--config", cfg): E.USAGE,  # revoke whom?
        ("admin", "revoke", "x\ny", "--config", cfg): E.USAGE,
        ("admin", "train", "--config", missing): E.CONFIG,
    }
    got = {}
    for argv, want in table.items():
        rc, out, err = cli(capsys, *argv)
        got[argv] = rc
        assert "Traceback" not in err, (argv, err)
        if want > E.BAD_INPUT:  # says why: on stderr, or in the batch's rows
            assert err.strip() or "refused:" in out or "failed:" in out, (argv, out, err)
    wrong = {" ".join(a): (got[a], int(w)) for a, w in table.items() if got[a] != w}
    assert not wrong, wrong


def test_verify_reports_each_image(deployment, photos, tmp_path, capsys):
    """verify FOLDER verifies every image in it, one row each, naming the image; the exit
    code is the worst row's (here a face-less image: 2)."""
    cfg = str(deployment.root / "edge-1" / "config.toml")
    folder = tmp_path / "probe"
    folder.mkdir()
    for i, p in enumerate(photos["obama"][:2]):
        shutil.copy(p, folder / f"{i}_{p.name}")
    shutil.copy(TestData.load().nofaces()[0].path, folder / "9_noface.jpg")
    rc, out, _ = cli(capsys, "verify", str(folder), "--identity", "obama", "--json",
                     "--config", cfg)
    recs = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["image"]).name for r in recs] == sorted(p.name for p in folder.iterdir())
    assert [r["accepted"] for r in recs] == [True, True, None]
    assert recs[2]["status"] == "no_face" and rc == ExitCode.BAD_INPUT
    one = folder / f"0_{photos['obama'][0].name}"
    rc, out, _ = cli(capsys, "verify", str(one), "--identity", "obama", "--config", cfg)
    header, row, summary = out.splitlines()
    assert header.split() == ["image", "result", "query", "ms", "notes"]
    assert row.startswith(str(one)) and row.split()[1] == "accepted"
    assert summary.startswith("obama: 1/1") and rc == 0


def test_tables_have_a_header_and_aligned_columns(deployment, photos, capsys):
    cfg = str(deployment.root / "edge-1" / "config.toml")
    group = str(TestData.load().groups()[6].path)
    rc, out, _ = cli(capsys, "identify", group, "--config", cfg)
    lines = out.splitlines()
    header, rows = lines[0], lines[1:-1]
    assert header.split()[:4] == ["frame", "face", "status", "identity"] and len(rows) >= 5
    starts = [header.index(t) for t in ("status", "identity", "box")]
    for row in rows:  # every value starts under its title, two spaces after its neighbour
        for s in starts:
            assert row[s - 2:s] == "  " and row[s] != " ", (header, row)
    rc, out, _ = cli(capsys, "enroll", "--identity", "obama", *map(str, photos["obama"][1:3]),
                     "--config", cfg)
    header, *rows, summary = out.splitlines()
    assert header.split() == ["status", "identity", "file", "notes"] and len(rows) == 2
    col = header.index("file")
    assert all(r[col - 2:col] == "  " and r[col:].startswith(str(photos["obama"][0].parent))
               for r in rows)
    assert summary.startswith("2/2 images enrolled") and rc == 0


def test_identify_prints_only_our_messages(deployment, photos):
    """No LiteRT/TFLite/absl INFO lines on stderr; --verbose lets them through."""
    r = edge(deployment, "identify", str(photos["obama"][0]))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    cfg = deployment.root / "edge-1" / "config.toml"
    env = {k: v for k, v in os.environ.items() if k not in QUIET_NATIVE_ENV}
    r = subprocess.run([sys.executable, "-m", "splitface.edge.cli", "identify",
                        str(photos["obama"][0]), "--verbose", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "XNNPACK" in r.stderr, r.stderr


def test_status_and_admin_need_no_models(deployment, tmp_path):
    """A terminal whose models folder is gone can still ask the servers; neither the face
    pipeline nor an inference runtime is even imported."""
    cfg = variant(deployment, "nomodels2.toml", model_dir=f'"{tmp_path / "gone"}"')
    code = ("import json, sys\n"
            "from splitface.edge.cli import main\n"
            f"rcs = [main(['status', '--config', {str(cfg)!r}, '--json']),\n"
            f"       main(['admin', 'reconcile', '--config', {str(cfg)!r}])]\n"
            "heavy = [m for m in sys.modules if m.startswith(('ai_edge_litert', 'tflite', "
            "'cv2', 'splitface.edge.pipeline.pipeline'))]\n"
            "print(json.dumps({'rcs': rcs, 'heavy': heavy}), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    status = json.loads(r.stdout.splitlines()[0])
    assert status["consistent"] is True, r.stderr
    assert json.loads(r.stderr.splitlines()[-1]) == {"rcs": [0, 0], "heavy": []}


def test_status_text_and_json_agree():
    """"consistent" needs both peer links up; the text says what the JSON says."""
    ok = {"peer_ok": True, "records": 3, "digest": "d", "model_version": 1, "key_epoch": 1,
          "identities_count": 2}
    cases = [(ok, ok, True, []),
             (ok | {"peer_ok": False}, ok, False, ["peer link down on P0"]),
             (ok, ok | {"digest": "e"}, False, ["different enrolments"]),
             (ok, ok | {"model_version": 2}, False, ["different model versions"]),
             (ok, ok | {"key_epoch": 2}, False, ["MAC key epochs"])]
    for s0, s1, consistent, problems in cases:
        rec, text, code = status_report(s0, s1)
        assert rec["consistent"] is consistent and rec["peer_link"] is (
            s0["peer_ok"] and s1["peer_ok"])
        assert len(rec["problems"]) == len(problems) and all(
            p in q for p, q in zip(problems, rec["problems"]))
        last = text.splitlines()[-1]
        assert (last == "consistent") is consistent and "consistent" in last.lower()
        assert all(p in text for p in rec["problems"])
        assert ("DOWN" in text) is (not rec["peer_link"])
        assert code == (ExitCode.OK if consistent else ExitCode.UNAVAILABLE)
    pf = {"hits": 15, "misses": 5, "queued": 3}
    rec, text, _ = status_report(ok | {"prefetch": pf}, ok | {"prefetch": pf})
    assert rec["prefetch"] == [pf, pf] and "P1 15 hits, 5 misses, 3 queued" in text
    rec, text, _ = status_report(ok | {"identities": ["a", "b"], "revoked": []}, ok)
    assert rec["identities_names"] == ["a", "b"] and "identities (2): a, b" in text
    rec, text, code = status_report({"peer_ok": True}, {"peer_ok": False})  # not an admin
    assert rec == {"peer_link": False, "peer_ok": [True, False], "details": ADMIN_NOTE}
    assert "DOWN" in text and "consistent" not in text and code == ExitCode.UNAVAILABLE


def test_cli_log_lines_carry_time_and_level():
    r = subprocess.run([sys.executable, "-c", "import logging, sys\n"
                        "from splitface.edge.cli_logging import setup_cli_logging\n"
                        "setup_cli_logging(verbose=False)\n"
                        "logging.getLogger('splitface.edge.batch').warning('hello')\n"
                        "logging.getLogger('splitface.edge.client').info('hidden')\n"
                        "logging.getLogger('somelib').warning('hidden too')\n"],
                       capture_output=True, text=True, timeout=60)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING "
                        r"splitface\.edge\.batch: hello\n", r.stderr), r.stderr


def test_exit_code_rules():
    assert worst([0, 2, 1]) == ExitCode.BAD_INPUT and worst([]) == ExitCode.OK
    assert best_answer([2, 1, 2]) == ExitCode.NEGATIVE and best_answer([2, 0]) == ExitCode.OK
    assert best_answer([]) == ExitCode.BAD_INPUT
    assert for_refusal("peer_unavailable") == for_refusal("out_of_sync") == ExitCode.UNAVAILABLE
    assert for_refusal("unauthorized") == for_refusal("no_model") == ExitCode.REFUSED
    rows = {"enrolled": 0, "duplicate": 0, "no_face": 2, "low_quality": 2, "corrupt_input": 2,
            "invalid_identity": 2, "refused:unauthorized": 3, "refused:out_of_sync": 4,
            "failed:unavailable": 4, "failed:disagree": 4, "skipped": 4}
    assert {s: EnrolRecord(Path("x.jpg"), "a", s).exit_code for s in rows} == rows
    assert all(c.__doc__ and c.__doc__ != ExitCode.__doc__ for c in ExitCode)


def test_text_table_never_runs_columns_together():
    table = TextTable([Column("a", 3), Column("bb", right=True), Column("c")])
    assert table.header() == "a    bb  c"
    assert table.row("toolong", 5, "x\ny") == "toolong   5  x\\ny"  # pushed right, escaped
    assert table.row(None, None, None) == "-     -"  # no trailing blanks or dash
