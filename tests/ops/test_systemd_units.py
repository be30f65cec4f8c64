"""The systemd units: verify cleanly, are hardened as documented, and agree with the configs."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from splitface.shared.config import load_dealer_config, load_edge_config, load_server_config
from splitface.shared.deployment import Deployment, InitOptions, init_deployment
from tests.ops.units import INSTANCES, REPO, UNIT_DIR, analyze, instance_of, make_root, parse_unit

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze missing: run scripts/"
                                          "install_system_deps.sh")
#: Highest accepted `systemd-analyze security` exposure per unit (0 = locked down, 10 = open).
MAX_EXPOSURE = {"splitface-server@0.service": 1.5, "splitface-server@1.service": 1.5,
                "splitface-dealer.service": 1.5, "splitface-edged.service": 2.0}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("sdroot"))


@needs_systemd
@pytest.mark.parametrize("unit", sorted(INSTANCES))
def test_verify_has_no_output(root: Path, unit: str) -> None:
    result = analyze("verify", f"--root={root}", unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # any warning counts as a failure
    assert result.stdout == ""


@needs_systemd
def test_verify_harness_catches_warnings(tmp_path: Path) -> None:
    """Negative control: a typo and a missing binary must show up on stderr."""
    root = make_root(tmp_path)
    unit = root / "etc/systemd/system/splitface-dealer.service"
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHme=yes"))
    result = analyze("verify", f"--root={root}", "splitface-dealer.service")
    assert "Unknown key 'ProtectHme'" in result.stderr
    (root / "opt/splitface/.venv/bin/splitface-edged").unlink()
    result = analyze("verify", f"--root={root}", "splitface-edged.service")
    assert "is not executable" in result.stderr


def _exposure(root: Path, unit: str) -> float:
    result = analyze("security", "--offline=true", f"--root={root}", unit)
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


@needs_systemd
def test_security_exposure_is_low_and_documented(root: Path) -> None:
    doc = (REPO / "docs" / "DEPLOY.md").read_text()
    for unit, limit in MAX_EXPOSURE.items():
        score = _exposure(root, unit)
        assert score <= limit, f"{unit}: exposure {score} > {limit}"
        row = re.search(rf"\| `{re.escape(unit)}` \| (\d+\.\d) \|", doc)
        assert row, f"docs/DEPLOY.md has no exposure row for {unit}"
        assert float(row.group(1)) == score, f"docs/DEPLOY.md: {unit} is now {score}"


REQUIRED = {
    "Service.Type": "notify", "Service.NotifyAccess": "main", "Service.Restart": "on-failure",
    "Service.User": "splitface", "Service.ProtectSystem": "strict",
    "Service.ProtectHome": "yes", "Service.NoNewPrivileges": "yes", "Service.PrivateTmp": "yes",
    "Service.CapabilityBoundingSet": "", "Service.LockPersonality": "yes",
    "Service.RestrictNamespaces": "yes", "Service.ProtectKernelTunables": "yes",
    "Service.ProtectKernelModules": "yes", "Service.ProtectKernelLogs": "yes",
    "Service.ProtectControlGroups": "yes", "Service.LimitCORE": "0", "Service.UMask": "0077",
    "Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
}


@pytest.mark.parametrize("unit", sorted(INSTANCES))
def test_hardening_directives(unit: str) -> None:
    d = parse_unit(UNIT_DIR / INSTANCES[unit], instance_of(unit))
    for key, value in REQUIRED.items():
        assert d.get(key) == [value], f"{unit}: {key}={d.get(key)}"
    assert d["Service.SystemCallFilter"][0] == "@system-service"
    assert float(d["Service.WatchdogSec"][0]) > 0
    assert float(d["Service.RestartSec"][0]) > 0
    assert "Unit.StartLimitIntervalSec" in d and "Unit.StartLimitBurst" in d
    assert not any(k.startswith("Service.ReadWritePaths") for k in d), "only state is writable"
    if unit == "splitface-edged.service":
        assert "Service.PrivateDevices" not in d and "Service.MemoryDenyWriteExecute" not in d
        assert d["Service.DevicePolicy"] == ["closed"]
        assert d["Service.DeviceAllow"] == ["char-video4linux rw"]
        assert "pcscd.socket" in d["Unit.Wants"][0]
    else:
        assert d["Service.PrivateDevices"] == ["yes"]
        # numba's kernels need code mapped executable (test_hardening.py): set, it would
        # silently put the servers on the numpy reference
        assert "Service.MemoryDenyWriteExecute" not in d


def _console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("unit", sorted(INSTANCES))
def test_paths_agree_with_configs_and_entry_points(unit: str, tmp_path: Path) -> None:
    """ExecStart runs a declared console script from /opt/splitface/.venv with the config in
    ConfigurationDirectory=, and StateDirectory= is the state_dir splitface-keys writes."""
    d = parse_unit(UNIT_DIR / INSTANCES[unit], instance_of(unit))
    argv = d["Service.ExecStart"][0].split()
    assert argv[0].startswith("/opt/splitface/.venv/bin/")
    assert Path(argv[0]).name in _console_scripts()
    config = Path(argv[argv.index("--config") + 1])
    assert config == Path("/etc") / d["Service.ConfigurationDirectory"][0] / "config.toml"
    state = Path("/var/lib") / d["Service.StateDirectory"][0]

    dep = init_deployment(tmp_path / "dep", InitOptions(edges=1))
    dep = Deployment(dep.root)
    if unit.startswith("splitface-server@"):
        party = int(instance_of(unit))
        assert argv[argv.index("--party") + 1] == str(party)
        loaded = load_server_config(dep.config_path(f"p{party}"), party=party, check_files=False)
    elif unit == "splitface-dealer.service":
        loaded = load_dealer_config(dep.config_path("dealer"), check_files=False)
    else:
        loaded = load_edge_config(dep.config_path("edge-1"), check_files=False)
        assert loaded.events.publish == f"ipc:///run/{d['Service.RuntimeDirectory'][0]}/events"
    assert loaded.state_dir == state
