"""``splitface-edge enroll | identify | verify | status | admin``: talk to the two servers.

Every command reads the terminal's config (``--config``, made by ``splitface-keys``) for
the server endpoints, their public keys, this terminal's key and the face pipeline (models,
detection). Results are printed as a table or, with ``--json``, one JSON object per line
(``identify``: one per frame, listing every face); embeddings are never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from splitface.edge.cli import _pipeline_args, pipeline_options_from_args

EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, EXIT_CONFIG = 3, 4, 64, 78


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="this terminal's config.toml")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _client(args: argparse.Namespace, timeout_s: float | None = None):
    from splitface.edge.client import SplitfaceClient, client_options_from_config
    from splitface.shared.config import load_edge_config

    cfg = load_edge_config(args.config)
    return SplitfaceClient(client_options_from_config(cfg, timeout_s=timeout_s))


def _emit(args: argparse.Namespace, rec: dict[str, Any], human: str) -> None:
    print(json.dumps(rec, default=str) if args.json else human, flush=True)


def _run(args: argparse.Namespace, body) -> int:
    """Map the client's failures to clear messages and exit codes."""
    from splitface.edge.client import ServerRefused, ServersDisagree, ServerUnavailable
    from splitface.edge.pipeline.errors import PipelineError
    from splitface.shared.api import ApiError
    from splitface.shared.config_schema import ConfigError

    try:
        return body()
    except (ConfigError, PermissionError, FileNotFoundError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ServerRefused as exc:
        print(f"refused by the servers: {exc.code}: {exc.reason}", file=sys.stderr)
        return EXIT_REFUSED
    except (ServerUnavailable, ServersDisagree) as exc:
        print(f"servers unavailable or inconsistent: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PipelineError as exc:
        print(f"{exc.status}: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:  # refused here before anything was sent (e.g. a bad name)
        print(f"invalid request: {exc.code}: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE


def cmd_enroll(args: argparse.Namespace) -> int:
    from splitface.edge.batch import enroll_folder, enroll_image
    from splitface.edge.pipeline.pipeline import FacePipeline

    def body() -> int:
        with _client(args) as client, \
                FacePipeline.from_options(pipeline_options_from_args(args)) as pipe:
            if args.identity:
                records = [enroll_image(client, pipe, args.identity, Path(p)) for p in args.input]
            elif len(args.input) == 1 and Path(args.input[0]).is_dir():
                records = enroll_folder(client, pipe, Path(args.input[0]))
            else:
                print("give --identity NAME with image files, or one LFW-style folder "
                      "(NAME/NAME_0001.jpg)", file=sys.stderr)
                return 2
            for r in records:
                why = f" ({', '.join(r.reasons)})" if r.reasons else ""
                _emit(args, {"path": str(r.path), "identity": r.identity, "status": r.status,
                             "reasons": list(r.reasons)},
                      f"{r.status:<14}{r.identity:<20}{r.path}{why}")
            ok = sum(r.status in ("enrolled", "duplicate") for r in records)
            if not args.json:
                print(f"{ok}/{len(records)} images enrolled")
            return 0 if ok else 2

    return _run(args, body)


def cmd_identify(args: argparse.Namespace) -> int:
    from splitface.edge.batch import identify_source
    from splitface.edge.cli import annotate_path
    from splitface.edge.pipeline.annotate import label_for, write_annotated
    from splitface.edge.pipeline.capture import IMAGE_SUFFIXES
    from splitface.edge.pipeline.pipeline import FacePipeline

    def body() -> int:
        source: str | int = int(args.input) if args.input.isdigit() else args.input
        single = Path(args.input).is_file() and Path(args.input).suffix.lower() in IMAGE_SUFFIXES
        with _client(args) as client, \
                FacePipeline.from_options(pipeline_options_from_args(args)) as pipe:
            for row in identify_source(client, pipe, source, args.max_frames):
                rec = {"frame": row.frame.name, "status": row.status,
                       "faces": [f.to_dict() | {"face": i} for i, f in enumerate(row.faces)],
                       "edge_ms": round(row.edge_ms, 2)}
                if row.error:
                    rec["error"] = row.error
                human = [f"{row.frame.name:<12}{row.status:<12}{len(row.faces)} face(s)"]
                for i, f in enumerate(row.faces):
                    who = (f.outcome.identity if f.outcome is not None else None) or "-"
                    why = ", ".join(f.face.reasons)
                    human.append(f"  #{i} {f.status:<12}{who:<20}box={rec['faces'][i]['box']} "
                                 f"eyes {f.face.quality.eye_px:.0f} px {why}")
                _emit(args, rec, "\n".join(human))
                if args.annotate and row.frame.image is not None:
                    labels = [label_for(f.face, f.outcome.identity if f.outcome else None,
                                        f.outcome is not None) for f in row.faces]
                    path = annotate_path(args.annotate, row.frame.name, not single)
                    write_annotated(path, row.frame.image, [f.face for f in row.faces], labels)
        return 0

    return _run(args, body)


def cmd_verify(args: argparse.Namespace) -> int:
    import time

    from splitface.edge.pipeline.capture import CaptureOptions, FrameSource
    from splitface.edge.pipeline.pipeline import FacePipeline

    def body() -> int:
        with _client(args) as client, \
                FacePipeline.from_options(pipeline_options_from_args(args)) as pipe, \
                FrameSource(CaptureOptions(source=args.input, max_frames=1)) as src:
            frame = next(iter(src))
            if frame.error is not None:
                raise frame.error
            face = pipe.process(frame.image)
            t0 = time.perf_counter()
            out = client.verify(args.identity, face.embedding)
            query_ms = (time.perf_counter() - t0) * 1000.0
            _emit(args, {"identity": args.identity, "status": out.status,
                         "accepted": out.accepted, "query_ms": round(query_ms, 2),
                         "face": face.to_dict()},
                  f"{out.status}: {args.identity}")
            return 0 if out.accepted else 1

    return _run(args, body)


def cmd_status(args: argparse.Namespace) -> int:
    def body() -> int:
        with _client(args) as client:
            s0, s1 = client.status()
        if "records" not in s0 or "records" not in s1:  # not an admin terminal
            up = bool(s0.get("peer_ok")) and bool(s1.get("peer_ok"))
            _emit(args, {"peer_link": up},
                  f"servers answer, peer link {'up' if up else 'DOWN'} (store details are "
                  "shown to admin terminals only)")
            return 0 if up else 1
        consistent = s0["digest"] == s1["digest"] and s0["model_version"] == s1["model_version"]
        rec = {"identities": s0["identities"], "records": [s0["records"], s1["records"]],
               "model_version": [s0["model_version"], s1["model_version"]],
               "consistent": consistent, "peer_link": s0["peer_ok"]}
        _emit(args, rec, f"{len(s0['identities'])} identities, records P0={s0['records']} "
                         f"P1={s1['records']}, model v{s0['model_version']}/"
                         f"v{s1['model_version']}, "
                         f"{'consistent' if consistent else 'OUT OF SYNC: run admin reconcile'}")
        return 0 if consistent else 1

    return _run(args, body)


def cmd_admin(args: argparse.Namespace) -> int:
    def body() -> int:
        with _client(args, timeout_s=args.timeout) as client:
            out = client.admin(args.op.replace("-", "_"), args.identity or "")
        details = {k: v for k, v in out.details.items() if k != "req"}
        _emit(args, details, f"{out.status}: " + ", ".join(f"{k}={v}" for k, v in
                                                           details.items() if k != "status"))
        return 0

    return _run(args, body)


def add_enroll(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enroll", help="enrol faces: images of one identity, or an LFW-style "
                                      "folder NAME/NAME_0001.jpg")
    p.add_argument("input", nargs="+", help="image files (with --identity) or one folder")
    p.add_argument("--identity", help="the identity the images show")
    _config_arg(p)
    _pipeline_args(p)
    p.set_defaults(func=cmd_enroll)


def add_identify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identify", help="1:N identification of an image, video, folder or camera")
    p.add_argument("input", help="image, video, image folder or camera index")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--annotate", type=Path, default=None, metavar="OUT.jpg",
                   help="write the frame with boxes, landmarks, names or 'unknown' and quality "
                        "drawn on it (OUT_<frame>.jpg per frame of a folder)")
    _config_arg(p)
    _pipeline_args(p)
    p.set_defaults(func=cmd_identify)


def add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="1:1 verification of one image against an identity")
    p.add_argument("input", help="image file or camera index")
    p.add_argument("--identity", required=True)
    _config_arg(p)
    _pipeline_args(p)
    p.set_defaults(func=cmd_verify)


def add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="both servers' record counts, model version, consistency")
    _config_arg(p)
    p.set_defaults(func=cmd_status)


def add_admin(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="train | revoke IDENTITY | restore IDENTITY | reconcile | "
                                     "rotate-key (admin terminals)")
    p.add_argument("op", choices=("train", "revoke", "restore", "reconcile", "rotate-key"))
    p.add_argument("identity", nargs="?", help="for revoke and restore")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds (training is slow)")
    _config_arg(p)
    p.set_defaults(func=cmd_admin)


SERVICE_SUBCOMMANDS = [add_enroll, add_identify, add_verify, add_status, add_admin]
