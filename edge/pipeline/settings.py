"""Pipeline options from the edge config: the one place every command and the daemon get them.

Enrolment (``splitface-edge enroll``) and live queries (``splitface-edged``, ``identify``)
must see faces the same way, or templates and probes come from different landmarks. So the
models, their folder and the detection settings come from the terminal's config, never from
per-command flags; without a config (``embed`` on a developer checkout) the config's defaults
apply, with the models under ``var/models``.
"""

from __future__ import annotations

from pathlib import Path

from splitface.edge.models.paths import VarLayout
from splitface.edge.pipeline.detect import DetectorOptions, model_file
from splitface.edge.pipeline.embed import EmbedderOptions
from splitface.edge.pipeline.landmarks import LandmarkerOptions
from splitface.edge.pipeline.pipeline import PipelineOptions
from splitface.shared.config import DetectionOptions, EdgeConfig, ModelOptions


def detector_range(detection: DetectionOptions, mode: str) -> str:
    """``auto``: full range for a surveillance camera, short range at a tap terminal."""
    if detection.range != "auto":
        return detection.range
    return "short" if mode == "tap-to-verify" else "full"


def pipeline_options(models: ModelOptions, detection: DetectionOptions, mode: str,
                     model_dir: Path, threads: int = 1,
                     face_policy: str = "primary") -> PipelineOptions:
    """PipelineOptions for these config sections, with model files under ``model_dir``."""
    layout = VarLayout(model_dir.parent)  # only the file names; model_dir is the folder
    rng = detector_range(detection, mode)
    emb = {"mobilefacenet-int8": layout.mobilefacenet_int8,
           "mobilefacenet-float": layout.mobilefacenet_float}.get(models.embedder)
    return PipelineOptions(
        detector=DetectorOptions(range=rng, model_path=model_dir / model_file(layout, rng).name,
                                 min_eye_px=detection.min_eye_px if rng == "full" else 0.0,
                                 num_threads=threads),
        landmarker=LandmarkerOptions(model_path=model_dir / layout.face_landmark.name,
                                     num_threads=threads),
        embedder=EmbedderOptions(kind=models.embedder,
                                 model_path=model_dir / emb.name if emb else None,
                                 num_threads=threads),
        face_policy=face_policy)


def pipeline_options_from_config(config: EdgeConfig, threads: int = 1,
                                 face_policy: str = "primary") -> PipelineOptions:
    """What ``splitface-edged`` and every ``splitface-edge`` command run with this config."""
    return pipeline_options(config.models, config.detection, config.mode,
                            config.models.model_dir, threads, face_policy)


def default_pipeline_options(var_dir: Path | None = None, threads: int = 1,
                             face_policy: str = "primary") -> PipelineOptions:
    """The config's defaults (surveillance terminal) with the models of a checkout's var/."""
    layout = VarLayout(var_dir) if var_dir is not None else VarLayout.default()
    return pipeline_options(ModelOptions(), DetectionOptions(), "surveillance", layout.models,
                            threads, face_policy)
