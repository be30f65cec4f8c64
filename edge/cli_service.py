"""``splitface-edge enroll | identify | verify``: faces from files or a camera, to the servers.

Every command reads the terminal's config (``--config``, made by ``splitface-keys``) for
the server endpoints, their public keys, this terminal's key and the face pipeline (models,
detection). Results are printed as a table with a header or, with ``--json``, one JSON
object per line: one per image (``enroll``, ``verify``) or per frame (``identify``, listing
every face). Embeddings are never printed. Exit codes: edge/exit_codes.py.

Names are checked here, before a model is loaded or a server asked: ``--identity`` that the
servers would refuse (``a/b``, a newline, over 128 bytes of UTF-8) is a usage error (64); in
folder mode a badly named folder is reported per image and skipped.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from splitface.edge.cli import _pipeline_args, pipeline_options_from_args
from splitface.edge.cli_admin import add_admin, add_status
from splitface.edge.cli_common import (
    check_identity_arg,
    config_args,
    emit,
    fail,
    load_config,
    make_client,
    run_guarded,
)
from splitface.edge.cli_table import Column, TextTable
from splitface.edge.exit_codes import ExitCode, best_answer, worst

STATUS_WIDTH = 16  # fits every status but the rare refused:/failed:<code>


def _image_suffixes() -> tuple[str, ...]:
    from splitface.edge.pipeline.capture import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


def expand_inputs(inputs: list[str]) -> list[str]:
    """Each folder replaced by its image files (sorted); files and camera indexes as given."""
    out: list[str] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            out += [str(p) for p in sorted(path.iterdir())
                    if p.is_file() and p.suffix.lower() in _image_suffixes()]
        else:
            out.append(given)
    return out


def _pipeline(args: argparse.Namespace, config: Any):
    from splitface.edge.pipeline.pipeline import FacePipeline

    return FacePipeline.from_options(pipeline_options_from_args(args, config))


# ------------------------------------------------------------------ enroll
def cmd_enroll(args: argparse.Namespace) -> int:
    from splitface.edge.batch import enroll_many, lfw_folder
    from splitface.edge.outage import OutageOptions

    def body() -> int:
        if args.identity is not None:
            identity = check_identity_arg(args.identity)
            items = [(identity, Path(p)) for p in expand_inputs(args.input)]
        elif len(args.input) == 1 and Path(args.input[0]).is_dir():
            items = lfw_folder(Path(args.input[0]))
        else:
            return fail(ExitCode.USAGE, "give --identity NAME with image files or folders, or "
                                        "one LFW-style folder (NAME/NAME_0001.jpg)")
        if not items:
            return fail(ExitCode.BAD_INPUT, f"no images in {' '.join(args.input)}")
        config = load_config(args, models=True)
        table = TextTable([Column("status", STATUS_WIDTH),
                           Column("identity").fit(n for n, _ in items),
                           Column("file").fit(p for _, p in items), Column("notes")])
        records = []
        with make_client(config) as client, _pipeline(args, config) as pipe:
            if not args.json:
                print(table.header(), flush=True)
            for r in enroll_many(client, pipe, items, OutageOptions(patience_s=args.patience),
                                 force=args.force):
                records.append(r)
                notes = list(r.reasons) + ([f"{r.attempts} attempts"] if r.attempts > 1 else [])
                emit(args, {"path": str(r.path), "identity": r.identity, "status": r.status,
                            "reasons": list(r.reasons), "attempts": r.attempts},
                     table.row(r.status, r.identity, r.path, "; ".join(notes)))
        if not args.json:
            print(_enrol_summary(records))
        return worst(r.exit_code for r in records)

    return run_guarded(body)


def _enrol_summary(records: list) -> str:
    stored = sum(r.exit_code == ExitCode.OK for r in records)
    dup = sum(r.status == "duplicate" for r in records)
    line = f"{stored}/{len(records)} images enrolled" + (f" ({dup} already)" if dup else "")
    other = Counter(r.status for r in records if r.exit_code != ExitCode.OK)
    if other:
        line += "; not enrolled: " + ", ".join(f"{s} {n}" for s, n in sorted(other.items()))
    return line


# ------------------------------------------------------------------ identify
def _frame_column(given: str) -> Column:
    path = Path(given)
    names = [Path(p).name for p in expand_inputs([given])] if path.exists() else []
    return Column("frame", len("camera:00000")).fit(names)


def _box(face: dict[str, Any]) -> str:
    return ",".join(str(round(v)) for v in face["box"])


def cmd_identify(args: argparse.Namespace) -> int:
    from splitface.edge.batch import identify_source
    from splitface.edge.cli import annotate_path
    from splitface.edge.pipeline.annotate import label_for, write_annotated
    from splitface.edge.pipeline.capture import IMAGE_SUFFIXES

    def body() -> int:
        source: str | int = int(args.input) if args.input.isdigit() else args.input
        single = Path(args.input).is_file() and Path(args.input).suffix.lower() in IMAGE_SUFFIXES
        config = load_config(args, models=True)
        table = TextTable([_frame_column(args.input), Column("face", right=True),
                           Column("status", 12), Column("identity", 16),
                           Column("box x,y,w,h", 16), Column("eyes px", right=True),
                           Column("notes")])
        codes: list[int] = []
        tally: Counter[str] = Counter()
        with make_client(config) as client, _pipeline(args, config) as pipe:
            if not args.json:
                print(table.header(), flush=True)
            for row in identify_source(client, pipe, source, args.max_frames):
                rec = {"frame": row.frame.name, "status": row.status,
                       "faces": [f.to_dict() | {"face": i} for i, f in enumerate(row.faces)],
                       "edge_ms": round(row.edge_ms, 2)}
                if row.error:
                    rec["error"] = row.error
                answered = [f for f in row.faces if f.outcome is not None]
                codes.append(ExitCode.OK if any(f.outcome.accepted for f in answered) else
                             ExitCode.NEGATIVE if answered else ExitCode.BAD_INPUT)
                lines = [table.row(row.frame.name, None, row.status, None, None, None,
                                   row.error)] if not row.faces else []
                for i, (f, d) in enumerate(zip(row.faces, rec["faces"], strict=True)):
                    tally[f.status] += 1
                    who = f.outcome.identity if f.outcome is not None else None
                    lines.append(table.row(row.frame.name, i, f.status, who, _box(d),
                                           f"{f.face.quality.eye_px:.0f}",
                                           ", ".join(f.face.reasons)))
                emit(args, rec, "\n".join(lines))
                if args.annotate and row.frame.image is not None:
                    labels = [label_for(f.face, f.outcome.identity if f.outcome else None,
                                        f.outcome is not None) for f in row.faces]
                    path = annotate_path(args.annotate, row.frame.name, not single)
                    write_annotated(path, row.frame.image, [f.face for f in row.faces], labels)
        if not args.json:
            faces = ", ".join(f"{n} {s}" for s, n in sorted(tally.items())) or "no face"
            print(f"{len(codes)} frame(s): {faces}")
        return best_answer(codes)

    return run_guarded(body)


# ------------------------------------------------------------------ verify
def _verify_one(client: Any, pipe: Any, identity: str, given: str
                ) -> tuple[dict[str, Any], ExitCode]:
    """One image (or one camera frame) verified; bad input is reported, not raised. Server
    failures are raised: the rest would fail alike (exit 3 or 4 after the rows so far)."""
    import time

    from splitface.edge.pipeline.capture import CaptureOptions, FrameSource
    from splitface.edge.pipeline.errors import PipelineError
    from splitface.edge.pipeline.quality import LowQualityError

    rec: dict[str, Any] = {"image": given, "identity": identity, "status": "", "accepted": None}
    try:
        with FrameSource(CaptureOptions(source=given, max_frames=1)) as src:
            frame = next(iter(src), None)
        if frame is None or frame.error is not None:
            err = frame.error if frame is not None else None
            rec.update(status=err.status if err else "corrupt_input",
                       error=str(err) if err else "no frame")
            return rec, ExitCode.BAD_INPUT
        face = pipe.process(frame.image)
    except PipelineError as exc:
        rec.update(status=exc.status, error=str(exc))
        if isinstance(exc, LowQualityError):
            rec["reasons"] = list(exc.reasons)
        return rec, ExitCode.BAD_INPUT
    t0 = time.perf_counter()
    out = client.verify(identity, face.embedding)
    rec.update(status=out.status, accepted=out.accepted,
               query_ms=round((time.perf_counter() - t0) * 1000.0, 2), face=face.to_dict())
    return rec, ExitCode.OK if out.accepted else ExitCode.NEGATIVE


def cmd_verify(args: argparse.Namespace) -> int:
    def body() -> int:
        identity = check_identity_arg(args.identity)
        inputs = expand_inputs(args.input)
        if not inputs:
            return fail(ExitCode.BAD_INPUT, f"no images in {' '.join(args.input)}")
        config = load_config(args, models=True)
        table = TextTable([Column("image").fit(inputs), Column("result", 14),
                           Column("query ms", right=True), Column("notes")])
        codes: list[ExitCode] = []
        with make_client(config) as client, _pipeline(args, config) as pipe:
            if not args.json:
                print(table.header(), flush=True)
            for given in inputs:
                rec, code = _verify_one(client, pipe, identity, given)
                codes.append(code)
                notes = rec.get("error", "") or ", ".join(rec.get("reasons", []))
                ms = rec.get("query_ms")
                emit(args, rec, table.row(given, rec["status"],
                                          None if ms is None else f"{ms:.1f}", notes))
        if not args.json:
            ok = codes.count(ExitCode.OK)
            no = codes.count(ExitCode.NEGATIVE)
            print(f"{identity}: {ok}/{len(codes)} image(s) accepted, {no} rejected, "
                  f"{len(codes) - ok - no} without a usable face")
        return worst(codes)

    return run_guarded(body)


# ------------------------------------------------------------------ parsers
def add_enroll(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enroll", help="enrol faces: images (or folders of images) of one "
                                      "identity, or an LFW-style folder NAME/NAME_0001.jpg")
    p.add_argument("input", nargs="+", help="image files or folders (with --identity), or one "
                                            "LFW-style folder")
    p.add_argument("--identity", help="the identity the images show")
    p.add_argument("--patience", type=float, default=120.0, metavar="SECONDS",
                   help="how long one server outage may pause the batch before the rest is "
                        "skipped (default 120; re-running the batch is safe)")
    p.add_argument("--force", action="store_true",
                   help="add the samples even if they do not match the identity's trained "
                        "template (refused as not_the_same_person otherwise)")
    config_args(p)
    _pipeline_args(p)
    p.set_defaults(func=cmd_enroll)


def add_identify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identify", help="1:N identification of an image, video, folder or camera")
    p.add_argument("input", help="image, video, image folder or camera index")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--annotate", type=Path, default=None, metavar="OUT.jpg",
                   help="write the frame with boxes, landmarks, names or 'unknown' and quality "
                        "drawn on it (OUT_<frame>.jpg per frame of a folder)")
    config_args(p)
    _pipeline_args(p)
    p.set_defaults(func=cmd_identify)


def add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="1:1 verification against an identity of each image "
                                      "given (folders: each image in them), one row per image")
    p.add_argument("input", nargs="+", help="image files, image folders or one camera index")
    p.add_argument("--identity", required=True)
    config_args(p)
    _pipeline_args(p)
    p.set_defaults(func=cmd_verify)


SERVICE_SUBCOMMANDS = [add_enroll, add_identify, add_verify, add_status, add_admin]
