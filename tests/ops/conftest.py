"""Fixtures for the ops tests: a freshly generated local deployment folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitface.shared.deployment import Deployment, InitOptions, init_deployment


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
def deployment(tmp_path: Path, model_dir: Path) -> Deployment:
    """Two terminals, everything on loopback, state inside the folders."""
    return init_deployment(tmp_path / "dep", InitOptions(edges=2, layout="local",
                                                         model_dir=model_dir, base_port=17100))
