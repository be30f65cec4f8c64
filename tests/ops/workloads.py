"""Exercise the native dependency stacks the services run on, for the hardening tests.

``python -m tests.ops.workloads server|edge [--mdwe] [--models DIR]`` runs in a child process:
``server`` covers what P0/P1/the dealer link against (numpy BLAS threads, pyzmq CURVE + ZAP,
msgpack, sqlite3 WAL, cryptography, sd_notify, numba's compiled kernels); ``edge`` covers
LiteRT with XNNPACK, MediaPipe's face detector, OpenCV capture from an image folder and the
CURVE client side.
``--mdwe`` first applies Linux's PR_SET_MDWE (refuse writable+executable memory, the kernel
twin of systemd's MemoryDenyWriteExecute=), and proves it is active by failing a W+X mapping itself.
"""

from __future__ import annotations

import ctypes
import importlib
import mmap
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
NOBODY = 65534
#: Exit status when the kernel lacks PR_SET_MDWE (Linux < 6.3): the test skips, it cannot pass.
NO_MDWE = 77
#: Imported before dropping privileges: the interpreter and venv may live where nobody cannot
#: read (e.g. under /root), and a library's import is the same whoever does it.
PRELOAD = {
    "server": ["sqlite3", "msgpack", "numpy", "numpy.linalg", "zmq", "zmq.auth.thread",
               "zmq.utils.monitor", "cryptography.hazmat.primitives.hashes",
               "cryptography.hazmat.primitives.asymmetric.x25519",
               "cryptography.hazmat.primitives.ciphers",
               "cryptography.hazmat.primitives.ciphers.aead",
               "cryptography.hazmat.primitives.kdf.hkdf", "splitface.shared.sdnotify",
               "importlib.resources", "numba"],
    "edge": ["cv2", "numpy", "ai_edge_litert.interpreter", "mediapipe",
             "mediapipe.tasks.python.vision", "zmq", "zmq.auth.thread"],
}


def apply_mdwe() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE) failed")
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        return
    raise AssertionError("PR_SET_MDWE is not enforced: a W+X mapping succeeded")


def curve_round_trip(transport: str, tmp: Path) -> None:
    import zmq
    from zmq.auth.thread import ThreadAuthenticator

    server_pub, server_sec = zmq.curve_keypair()
    client_pub, client_sec = zmq.curve_keypair()
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    try:
        allow = tmp / f"allow-{transport}"
        allow.mkdir()
        (allow / "c.key").write_text(f'curve\n    public-key = "{client_pub.decode()}"\n')
        auth.configure_curve(domain="*", location=str(allow))
        rep = ctx.socket(zmq.REP)
        rep.curve_server, rep.curve_secretkey, rep.curve_publickey = True, server_sec, server_pub
        req = ctx.socket(zmq.REQ)
        req.curve_secretkey, req.curve_publickey = client_sec, client_pub
        req.curve_serverkey = server_pub
        for s in (rep, req):
            s.linger, s.rcvtimeo = 0, 5000
        if transport == "tcp":
            port = rep.bind_to_random_port("tcp://127.0.0.1")
            req.connect(f"tcp://127.0.0.1:{port}")
        else:
            rep.bind(f"ipc://{tmp}/sock")
            req.connect(f"ipc://{tmp}/sock")
        req.send_multipart([b"hdr", os.urandom(64 * 1024)])
        rep.send_multipart(rep.recv_multipart())
        assert len(req.recv_multipart()[1]) == 64 * 1024
        rep.close()
        req.close()
    finally:
        auth.stop()
        ctx.term()


def compiled_kernels(mdwe: bool) -> None:
    """What every server and the dealer run at start (warmup.py), then a DCF round trip on
    whichever path the process can run: numba's kernels, or under PR_SET_MDWE (no code
    mapped executable) the numpy reference, which the daemons fall back to."""
    import numpy as np

    from splitface.servers.mpc.fss import dcf, kernels
    from splitface.servers.mpc.warmup import load_compiled_kernels
    from splitface.shared import ring

    load_compiled_kernels()
    assert kernels.AVAILABLE is not mdwe, f"numba loaded: {kernels.AVAILABLE}, MDWE: {mdwe}"
    roots = np.frombuffer(os.urandom(64), dtype=np.uint64).reshape(2, 2, 2).copy()
    keys = dcf.gen(np.array([5, 9], dtype=np.uint64),
                   ring.from_uint64(np.ones((2, 1), dtype=np.uint64)), 4, roots)
    x = np.array([[4, 5], [9, 8]], dtype=np.uint64)
    v = ring.add(dcf.evaluate(0, keys, x), dcf.evaluate(1, keys, x))
    assert v[0].ravel().tolist() == [1, 0, 0, 1] and not v[1].any()


def server_stack(tmp: Path, mdwe: bool = False) -> None:
    import sqlite3

    import msgpack
    import numpy as np
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from splitface.shared import sdnotify

    a = np.frombuffer(os.urandom(8 * 256 * 256), dtype=np.uint64).reshape(256, 256)
    b = (a & 0xFFFF).astype(np.float64)
    assert np.isfinite(b @ b.T).all()  # BLAS, multi-threaded
    assert (a * a + a).dtype == np.uint64  # wrapping ring arithmetic
    key = os.urandom(32)
    stream = Cipher(algorithms.AES(key), modes.CTR(os.urandom(16))).encryptor()
    assert len(stream.update(bytes(1 << 16))) == 1 << 16  # AES-CTR PRG
    AESGCM(key).encrypt(os.urandom(12), b"x", None)
    shared = X25519PrivateKey.generate().exchange(X25519PrivateKey.generate().public_key())
    HKDF(hashes.SHA256(), 32, None, b"splitface").derive(shared)
    packed = msgpack.packb({"v": 1, "shape": [256, 256]})
    assert msgpack.unpackb(packed)["v"] == 1
    db = sqlite3.connect(tmp / "state.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    with db:
        db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, blob BLOB)")
        db.execute("INSERT INTO t VALUES (?, ?)", ("r1", a.tobytes()))
    db.close()
    curve_round_trip("tcp", tmp)
    curve_round_trip("ipc", tmp)
    sdnotify.notify({"NOTIFY_SOCKET": str(tmp / "notify")}, READY=1)  # refused: no listener
    worker = threading.Thread(target=lambda: np.linalg.svd(b[:64, :64]))
    worker.start()
    worker.join()
    compiled_kernels(mdwe)


def edge_stack(tmp: Path, models: Path) -> None:
    import cv2
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    for model in sorted(models.glob("*.tflite")):
        interpreter = Interpreter(model_path=str(model), num_threads=2)  # XNNPACK delegate
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            data = np.zeros(detail["shape"], detail["dtype"])
            interpreter.set_tensor(detail["index"], data)
        interpreter.invoke()
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    detector_model = models / "face_detection_short_range.tflite"  # the one with metadata
    if detector_model.exists():
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(detector_model)))
        with vision.FaceDetector.create_from_options(options) as detector:
            image = mp.Image(image_format=mp.ImageFormat.SRGB,
                             data=np.zeros((480, 640, 3), np.uint8))
            assert detector.detect(image).detections == []
    frames = tmp / "frames"
    frames.mkdir()
    for i in range(3):
        image = np.full((480, 640, 3), 40 * i, np.uint8)
        cv2.imwrite(str(frames / f"{i:04d}.png"), image)
    capture = cv2.VideoCapture(str(frames / "%04d.png"), cv2.CAP_IMAGES)
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (480, 640, 3)
    warp = cv2.getAffineTransform(np.float32([[0, 0], [1, 0], [0, 1]]),
                                  np.float32([[1, 1], [2, 1], [1, 2]]))
    cv2.warpAffine(frame, warp, (112, 112))
    curve_round_trip("tcp", tmp)


def as_service_user(fn: Callable[[], None]) -> int:
    """Run ``fn`` the way a unit with ``User=`` runs it: as an unprivileged user.

    Run as root (as in CI containers), the stack behaves differently from the service (SQLite,
    for one, fchown()s its journal files only when root). So a root caller forks, drops to
    nobody and runs ``fn`` there; the test ignores that child's syscalls up to its setuid().
    """
    if os.geteuid() != 0:
        fn()
        return 0
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            fn()
            code = 0
        except BaseException:  # report, then leave the forked interpreter without cleanup
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def main(argv: list[str]) -> int:
    stack = argv[0]
    if "--mdwe" in argv:
        try:
            apply_mdwe()
        except OSError as exc:
            print(f"PR_SET_MDWE unavailable: {exc}", file=sys.stderr)
            return NO_MDWE
    for name in [*PRELOAD[stack], "traceback"]:
        try:
            importlib.import_module(name)
        except OSError:  # numba under PR_SET_MDWE: its JIT cannot map code executable
            if name != "numba":
                raise
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o777)
        if stack == "server":
            # numba imports more modules lazily while it compiles: one run as the caller
            # loads them all (the interpreter may live where nobody cannot read)
            compiled_kernels("--mdwe" in argv)
            code = as_service_user(lambda: server_stack(Path(tmp), "--mdwe" in argv))
        else:
            models = Path(argv[argv.index("--models") + 1])
            # MediaPipe imports more modules lazily, deep inside (concurrent.futures, importlib
            # readers): one run as the caller loads them all, the run as nobody repeats it.
            warm = Path(tmp) / "warm-up"
            warm.mkdir()
            edge_stack(warm, models)
            code = as_service_user(lambda: edge_stack(Path(tmp), models))
    if code == 0:
        print(f"{stack} stack ok")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
