"""``splitface-edge``: terminal-side commands. ``embed`` runs the face pipeline on files.

Every command builds its pipeline from the terminal's config (``--config``: models, their
folder, detection settings), so enrolment and live queries see faces the same way; ``embed``
without a config uses the config's defaults with the models under ``var/models``. Outputs
list every face of every frame (box, landmarks, quality, status); ``--json`` prints one JSON
object per frame. Embeddings are never printed (``--show-norms`` prints only their L2 norm).

Every command exits with a code from one table (edge/exit_codes.py, docs/DEPLOY.md) and
writes nothing to stderr but its own messages unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from splitface.edge.cli_logging import setup_cli_logging
from splitface.edge.exit_codes import ExitCode, best_answer


def _pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--single-face", action="store_true",
                   help="single-face commands: refuse frames with more than one face instead "
                        "of taking the largest, most central one")


def pipeline_options_from_args(args: argparse.Namespace, config: Any = None):
    """PipelineOptions from ``config`` or ``--config`` (only its models checked: ``embed``
    needs no keys), else the config defaults and ``--var``'s models."""
    from splitface.edge.cli_config import load_cli_config
    from splitface.edge.pipeline.settings import (
        default_pipeline_options,
        pipeline_options_from_config,
    )

    policy = "single" if args.single_face else "primary"
    if config is None and getattr(args, "config", None) is not None:
        config = load_cli_config(args.config, keys=False, models=True)
    if config is not None:
        return pipeline_options_from_config(config, args.threads, policy)
    var = args.var.resolve() if getattr(args, "var", None) else None
    return default_pipeline_options(var, args.threads, policy)


def annotate_path(out: Path, frame_name: str, several: bool) -> Path:
    """``OUT.jpg`` for a single image; ``OUT_<frame>.jpg`` per frame of a folder or video."""
    if not several:
        return out
    stem = Path(frame_name).stem.replace(":", "-")
    return out.with_name(f"{out.stem}_{stem}{out.suffix}")


def cmd_embed(args: argparse.Namespace) -> int:
    from splitface.edge.cli_common import run_guarded
    from splitface.edge.pipeline.capture import CaptureOptions, FrameSource
    from splitface.edge.pipeline.pipeline import FacePipeline

    def body() -> int:
        # models first: a missing model is a configuration error whatever the input
        with FacePipeline.from_options(pipeline_options_from_args(args)) as pipe, \
                FrameSource(CaptureOptions(source=args.input, max_frames=args.max_frames)) as src:
            return _embed_frames(args, pipe, src)

    return run_guarded(body)


def _embed_frames(args: argparse.Namespace, pipe: Any, source: Any) -> int:
    """One record per frame; exit 0 when any frame had an embedded face, else 2."""
    import numpy as np

    from splitface.edge.pipeline.annotate import label_for, write_annotated

    codes: list[int] = []
    n_ok = n = 0
    several = source.kind != "image"  # one annotated file per frame
    for out in pipe.run(source):
        n += 1
        rec: dict[str, Any] = {"frame": out.frame.name, "status": out.status,
                               "decode_ms": round(out.frame.decode_ms, 3)}
        codes.append(ExitCode.OK if out.result is not None and out.result.embedded
                     else ExitCode.BAD_INPUT)
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
    return best_answer(codes)


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


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), not argparse's 2, which means bad input here."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from splitface.edge.cli_service import SERVICE_SUBCOMMANDS

    parser = _Parser(prog="splitface-edge", description="splitface edge terminal commands",
                     epilog="exit codes: 0 ok, 1 negative answer (rejected, unknown), 2 bad "
                            "input, 3 refused by the servers, 4 servers unavailable or "
                            "inconsistent, 64 usage, 78 configuration (docs/DEPLOY.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in [*SUBCOMMANDS, *SERVICE_SUBCOMMANDS]:
        add(sub)
    for p in sub.choices.values():
        p.add_argument("-v", "--verbose", action="store_true",
                       help="also show INFO lines, and the libraries' own log lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_cli_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("splitface-edge: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
