"""Locate the real test photos fetched by ``make models`` (see ``edge/models/testdata_build.py``).

The index under ``var/testdata/index.json`` names, for every image, its identity, its kind
(``photo`` = real single-person photo, ``view`` = synthetic view of one, ``group`` = several
people, ``noface``) and its registry source. Tests, benchmarks and the demo read it from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from splitface.edge.models.paths import VarLayout

INDEX_NAME = "index.json"
KINDS = ("photo", "view", "group", "noface")


class TestDataMissingError(FileNotFoundError):
    """``var/testdata`` has not been built; run ``make models``."""


@dataclass(frozen=True)
class TestImage:
    """One image file and what it shows."""

    __test__ = False  # not a pytest class

    path: Path
    identity: str  # "" for group / noface images
    kind: str
    source: str  # registry archive key
    base: str = ""  # for views: the photo they were made from
    transform: str = ""  # for views: e.g. "yaw+20", "jpeg q=15"
    faces: tuple[tuple[int, int], ...] = ()  # group photos: face centres marked by hand


@dataclass(frozen=True)
class TestData:
    """The test-photo catalogue; cheap to load, holds no pixels."""

    __test__ = False

    root: Path
    images: tuple[TestImage, ...]

    @classmethod
    def load(cls, root: Path | None = None) -> TestData:
        root = Path(root) if root is not None else VarLayout.default().testdata
        index = root / INDEX_NAME
        if not index.is_file():
            raise TestDataMissingError(f"{index} not found; run `make models`")
        raw = json.loads(index.read_text())
        images = tuple(
            TestImage(path=root / e["path"], identity=e["identity"], kind=e["kind"],
                      source=e["source"], base=e.get("base", ""),
                      transform=e.get("transform", ""),
                      faces=tuple(tuple(c) for c in e.get("faces", ())))
            for e in raw["images"]
        )
        return cls(root, images)

    def identities(self, min_photos: int = 1) -> list[str]:
        """Identities with at least ``min_photos`` real photos (views not counted)."""
        counts: dict[str, int] = {}
        for im in self.images:
            if im.kind == "photo":
                counts[im.identity] = counts.get(im.identity, 0) + 1
        return sorted(k for k, n in counts.items() if n >= min_photos)

    def photos(self, identity: str | None = None, kinds: tuple[str, ...] = ("photo",)
               ) -> list[TestImage]:
        return [im for im in self.images
                if im.kind in kinds and (identity is None or im.identity == identity)]

    def by_identity(self, kinds: tuple[str, ...] = ("photo", "view")) -> dict[str, list[TestImage]]:
        out: dict[str, list[TestImage]] = {}
        for im in self.images:
            if im.kind in kinds and im.identity:
                out.setdefault(im.identity, []).append(im)
        return out

    def enrol_probe(self, identity: str, n_enrol: int = 3
                    ) -> tuple[list[TestImage], list[TestImage]]:
        """Deterministic split of one identity's images: enrol with real photos first (then
        views), probe with the rest. Partial-face photos are only ever probes."""
        ims = [im for im in self.images if im.identity == identity and im.kind in ("photo", "view")]
        ims.sort(key=lambda im: (im.kind != "photo", im.transform == "partial", str(im.path)))
        usable = [im for im in ims if im.transform != "partial"]
        enrol = usable[:n_enrol]
        return enrol, [im for im in ims if im not in enrol]

    def groups(self) -> list[TestImage]:
        return self.photos(kinds=("group",))

    def nofaces(self) -> list[TestImage]:
        return self.photos(kinds=("noface",))


def paste(photo: np.ndarray, scale: float, size: tuple[int, int] = (1280, 720),
          at: tuple[float, float] = (0.5, 0.45), background: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """A real photo shrunk by ``scale`` (area-averaged) into a larger frame, centred at ``at``
    (fractions of the frame) as far as it fits: faces far from the camera, for tests and
    benchmarks. Returns (frame, 2x3 map from photo to frame continuous coordinates). The
    background is a face-free photo stretched to the frame, or plain grey."""
    w, h = size
    frame = np.full((h, w, 3), 110, np.uint8) if background is None else \
        cv2.resize(background, (w, h), interpolation=cv2.INTER_AREA)
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    x0 = int(min(max(at[0] * w - sw / 2, 0), max(w - sw, 0)))
    y0 = int(min(max(at[1] * h - sh / 2, 0), max(h - sh, 0)))
    frame[y0:y0 + sh, x0:x0 + sw] = small[: h - y0, : w - x0]
    sx, sy = sw / photo.shape[1], sh / photo.shape[0]
    return frame, np.array([[sx, 0.0, x0], [0.0, sy, y0]])
