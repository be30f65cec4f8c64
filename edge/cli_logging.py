"""What ``splitface-edge`` writes to stderr: its own messages, not its libraries' chatter.

An operator reads stderr for what went wrong. LiteRT/TFLite, absl, glog and OpenCV write
INFO and WARNING lines of their own (``Created TensorFlow Lite XNNPACK delegate``, ...) that
say nothing about the command, so they are silenced unless ``--verbose``. The native ones
read their environment once, when first loaded, hence :func:`quiet_native_logs` must run
before the face pipeline is imported. Log lines carry a timestamp and level, like the
daemons' lines when run by hand (servers/cli/common.py).
"""

from __future__ import annotations

import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Environment read by the native libraries: hide their INFO and WARNING lines.
QUIET_NATIVE_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow / LiteRT (runtime.py applies it to TFLite's
                                  # minimal logger too, which ignores it)
    "GLOG_minloglevel": "2",  # glog (mediapipe-style graphs)
    "OPENCV_LOG_LEVEL": "ERROR",  # OpenCV's "[ WARN:0@...]" lines
}


def quiet_native_logs() -> None:
    """Set the native libraries' log thresholds, unless the operator set them already."""
    for name, value in QUIET_NATIVE_ENV.items():
        os.environ.setdefault(name, value)


def setup_cli_logging(verbose: bool) -> None:
    """Timestamped lines on stderr: our loggers from WARNING (INFO with ``--verbose``),
    third-party loggers from ERROR (INFO with ``--verbose``)."""
    if not verbose:
        quiet_native_logs()
    if logging.getLogger().handlers:  # embedded (a test, a script): its logging is not ours
        return
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format=LOG_FORMAT,
                        stream=sys.stderr)
    logging.getLogger("splitface").setLevel(logging.INFO if verbose else logging.WARNING)
