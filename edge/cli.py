"""``splitface-edge``: terminal-side commands. ``embed`` runs the capture pipeline on files.

Subcommands are registered by small functions so the enrol / identify / verify commands can be
added next to ``embed`` without touching it. ``embed`` prints detections and timings; the
embedding itself is never printed (``--show-norms`` prints only its L2 norm, for debugging).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from splitface.edge.pipeline.embed import EMBEDDER_KINDS


def _pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedder", choices=EMBEDDER_KINDS, default="mobilefacenet-int8")
    p.add_argument("--detector", choices=("mediapipe", "litert"), default="mediapipe")
    p.add_argument("--var", type=Path, default=None,
                   help="var/ directory holding models/ (default: $SPLITFACE_VAR or repo var/)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--single-face", action="store_true",
                   help="reject frames with more than one face instead of taking the primary")


def pipeline_options_from_args(args: argparse.Namespace):
    """Build PipelineOptions from the shared ``--embedder/--detector/...`` flags."""
    from splitface.edge.models.paths import VarLayout
    from splitface.edge.pipeline.detect_base import DetectorOptions
    from splitface.edge.pipeline.embed import EmbedderOptions
    from splitface.edge.pipeline.pipeline import PipelineOptions

    layout = VarLayout(args.var.resolve()) if args.var else VarLayout.default()
    model = None
    if args.embedder == "mobilefacenet-int8":
        model = layout.mobilefacenet_int8
    elif args.embedder == "mobilefacenet-float":
        model = layout.mobilefacenet_float
    return PipelineOptions(
        detector=DetectorOptions(backend=args.detector, model_path=layout.blazeface_short,
                                 num_threads=args.threads),
        embedder=EmbedderOptions(kind=args.embedder, model_path=model, num_threads=args.threads),
        face_policy="single" if args.single_face else "primary",
    )


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from splitface.edge.pipeline.capture import CaptureOptions, FrameSource, SourceOpenError
    from splitface.edge.pipeline.errors import PipelineError
    from splitface.edge.pipeline.pipeline import FacePipeline

    try:
        source = FrameSource(CaptureOptions(source=args.input, max_frames=args.max_frames))
        pipe = FacePipeline.from_options(pipeline_options_from_args(args))
    except (SourceOpenError, PipelineError) as exc:
        print(f"splitface-edge: {exc.status}: {exc}", file=sys.stderr)
        return 2
    n_ok = n = 0
    with source, pipe:
        for out in pipe.run(source):
            n += 1
            rec: dict = {"frame": out.frame.name, "status": out.status,
                         "decode_ms": round(out.frame.decode_ms, 3)}
            if out.result is not None:
                n_ok += 1
                r = out.result
                rec.update({"faces": len(r.detections), "primary": r.face.to_dict(),
                            "embedder": r.embedder, "dim": int(r.embedding.shape[0]),
                            "timings": r.timings.to_dict()})
                if args.show_norms:
                    rec["embedding_norm"] = round(float(np.linalg.norm(r.embedding)), 6)
            else:
                rec["error"] = str(out.error)
            if args.json:
                print(json.dumps(rec), flush=True)
            else:
                _print_human(rec)
    if not args.json:
        print(f"{n_ok}/{n} frames embedded")
    return 0 if n_ok else 1


def _print_human(rec: dict) -> None:
    if rec["status"] != "ok":
        print(f"{rec['frame']}: {rec['status']} ({rec.get('error', '')})")
        return
    p, t = rec["primary"], rec["timings"]
    line = (f"{rec['frame']}: {rec['faces']} face(s), box={p['box']} score={p['score']:.3f}; "
            f"detect {t['detect_ms']:.2f} ms, align {t['align_ms']:.2f} ms, "
            f"embed {t['embed_ms']:.2f} ms ({rec['embedder']}, {rec['dim']}-d)")
    if "embedding_norm" in rec:
        line += f", norm={rec['embedding_norm']:.6f}"
    print(line)


def add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="detect, align and embed faces in an image, video or folder")
    p.add_argument("input", help="image file, video file, image folder or camera index")
    p.add_argument("--json", action="store_true", help="one JSON object per frame")
    p.add_argument("--show-norms", action="store_true",
                   help="debug: print each embedding's L2 norm (never the embedding)")
    p.add_argument("--max-frames", type=int, default=None)
    _pipeline_args(p)
    p.set_defaults(func=cmd_embed)


# Each entry adds one subcommand; the enrol/identify/verify commands append theirs here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_embed]


def build_parser() -> argparse.ArgumentParser:
    from splitface.edge.cli_service import SERVICE_SUBCOMMANDS

    parser = argparse.ArgumentParser(prog="splitface-edge",
                                     description="splitface edge terminal commands")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in [*SUBCOMMANDS, *SERVICE_SUBCOMMANDS]:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
