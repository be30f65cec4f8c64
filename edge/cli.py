"""``splitface-edge``: terminal-side commands. ``embed`` runs the face pipeline on files.

Every command builds its pipeline from the terminal's config (``--config``: models, their
folder, detection settings), so enrolment and live queries see faces the same way; ``embed``
without a config uses the config's defaults with the models under ``var/models``. Outputs
list every face of every frame (box, landmarks, quality, status); ``--json`` prints one JSON
object per frame. Embeddings are never printed (``--show-norms`` prints only their L2 norm).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--single-face", action="store_true",
                   help="single-face commands: refuse frames with more than one face instead "
                        "of taking the largest, most central one")


def pipeline_options_from_args(args: argparse.Namespace):
    """PipelineOptions from ``--config`` (or the config defaults and ``--var``'s models)."""
    from splitface.edge.pipeline.settings import (
        default_pipeline_options,
        pipeline_options_from_config,
    )
    from splitface.shared.config import load_edge_config

    policy = "single" if args.single_face else "primary"
    if getattr(args, "config", None) is not None:
        return pipeline_options_from_config(load_edge_config(args.config), args.threads, policy)
    var = args.var.resolve() if getattr(args, "var", None) else None
    return default_pipeline_options(var, args.threads, policy)


def annotate_path(out: Path, frame_name: str, several: bool) -> Path:
    """``OUT.jpg`` for a single image; ``OUT_<frame>.jpg`` per frame of a folder or video."""
    if not several:
        return out
    stem = Path(frame_name).stem.replace(":", "-")
    return out.with_name(f"{out.stem}_{stem}{out.suffix}")


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from splitface.edge.pipeline.annotate import label_for, write_annotated
    from splitface.edge.pipeline.capture import CaptureOptions, FrameSource, SourceOpenError
    from splitface.edge.pipeline.errors import PipelineError
    from splitface.edge.pipeline.pipeline import FacePipeline
    from splitface.shared.config import ConfigError

    try:
        source = FrameSource(CaptureOptions(source=args.input, max_frames=args.max_frames))
        pipe = FacePipeline.from_options(pipeline_options_from_args(args))
    except (SourceOpenError, PipelineError) as exc:
        print(f"splitface-edge: {exc.status}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 78
    n_ok = n = 0
    with source, pipe:
        several = source.kind != "image"  # one annotated file per frame
        for out in pipe.run(source):
            n += 1
            rec: dict[str, Any] = {"frame": out.frame.name, "status": out.status,
                                   "decode_ms": round(out.frame.decode_ms, 3)}
            if out.result is not None:
                r = out.result
                n_ok += bool(r.embedded)
                faces = []
                for i, face in enumerate(r):
                    d = {"face": i, **face.to_dict(), "timings": face.timings.to_dict()}
                    if face.embedded:
                        d.update(embedder=face.embedder, dim=int(face.embedding.shape[0]))
                        if args.show_norms:
                            d["embedding_norm"] = round(float(np.linalg.norm(face.embedding)), 6)
                    faces.append(d)
                rec.update(detect_ms=round(r.detect_ms, 3), faces=faces)
                if args.annotate:
                    write_annotated(annotate_path(args.annotate, out.frame.name, several),
                                    out.frame.image, r.faces, [label_for(f) for f in r])
            else:
                rec["error"] = str(out.error)
            if args.json:
                print(json.dumps(rec), flush=True)
            else:
                _print_human(rec)
    if not args.json:
        print(f"{n_ok}/{n} frames with an embedded face")
    return 0 if n_ok else 1


def _print_human(rec: dict) -> None:
    if "faces" not in rec:
        print(f"{rec['frame']}: {rec['status']} ({rec.get('error', '')})")
        return
    print(f"{rec['frame']}: {len(rec['faces'])} face(s), detect {rec['detect_ms']:.2f} ms")
    for f in rec["faces"]:
        q, t = f["quality"], f["timings"]
        line = (f"  #{f['face']} {f['status']:<11} box={f['box']} eyes {q['eye_px']:.0f} px "
                f"yaw {q['yaw_deg']:+.0f} roll {q['roll_deg']:+.0f}")
        if f["status"] == "ok":
            line += (f"; landmarks {t['landmarks_ms']:.2f} ms, align {t['align_ms']:.2f} ms, "
                     f"embed {t['embed_ms']:.2f} ms ({f['embedder']}, {f['dim']}-d)")
        else:
            line += f" ({', '.join(f.get('reasons', []))})"
        if "embedding_norm" in f:
            line += f", norm={f['embedding_norm']:.6f}"
        print(line)


def add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="detect, align and embed every face of an image, video "
                                     "or folder (no servers)")
    p.add_argument("input", help="image file, video file, image folder or camera index")
    p.add_argument("--config", type=Path, default=None,
                   help="terminal config.toml (models, detection); default: its defaults")
    p.add_argument("--var", type=Path, default=None,
                   help="without --config: var/ holding models/ (default $SPLITFACE_VAR or "
                        "the checkout's var/)")
    p.add_argument("--json", action="store_true", help="one JSON object per frame")
    p.add_argument("--show-norms", action="store_true",
                   help="debug: print each embedding's L2 norm (never the embedding)")
    p.add_argument("--annotate", type=Path, default=None, metavar="OUT.jpg",
                   help="write the frame with boxes, landmarks and quality drawn on it "
                        "(OUT_<frame>.jpg per frame for a folder or video)")
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
