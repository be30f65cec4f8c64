"""Batch enrolment reads the same image types as every other command (it used to keep its
own list, without TIFF)."""

from pathlib import Path

from splitface.edge.batch import lfw_folder
from splitface.edge.pipeline.capture import IMAGE_SUFFIXES


def test_every_image_type_the_capture_reads_is_enrolled(tmp_path: Path):
    person = tmp_path / "Ada Lovelace"
    person.mkdir()
    for i, suffix in enumerate(IMAGE_SUFFIXES):
        (person / f"img_{i}{suffix.upper() if i % 2 else suffix}").write_bytes(b"x")
    (person / "notes.txt").write_text("not an image")
    got = lfw_folder(tmp_path)
    assert {p.suffix.lower() for _, p in got} == set(IMAGE_SUFFIXES)
    assert {".tif", ".tiff"} <= set(IMAGE_SUFFIXES)
    assert all(name == "Ada Lovelace" for name, _ in got)
