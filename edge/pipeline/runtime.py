"""Load a LiteRT interpreter: ``ai-edge-litert`` first, ``tflite-runtime`` as the fallback.

Kept in one place so every model on the terminal runs with the same thread policy, and the
same log policy: TFLite's C++ "minimal logger" prints ``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.`` straight to stderr while a model loads and ignores
``TF_CPP_MIN_LOG_LEVEL``, so loading applies that threshold to what it printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from splitface.edge.pipeline.errors import ModelMissingError, RuntimeUnavailableError

#: TF_CPP_MIN_LOG_LEVEL n hides the first n of these native line prefixes.
_NATIVE_LEVELS = ("INFO: ", "WARNING: ", "ERROR: ")


def _interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise RuntimeUnavailableError(
                "neither ai-edge-litert nor tflite-runtime is installed"
            ) from exc
    return Interpreter


def _native_threshold() -> int:
    try:
        return max(0, min(int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")), 3))
    except ValueError:
        return 0


@contextlib.contextmanager
def native_log_filter() -> Iterator[None]:
    """Hold what native code writes to fd 2 meanwhile; pass on the lines at or above
    ``TF_CPP_MIN_LOG_LEVEL`` (everything else, such as Python's own lines, passes too)."""
    hidden = _NATIVE_LEVELS[:_native_threshold()]
    if not hidden:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True)
                    if not line.decode(errors="replace").startswith(hidden)]
            if kept:
                os.write(2, b"".join(kept))


def load_interpreter(model_path: Path, num_threads: int = 1) -> Any:
    """An allocated interpreter for ``model_path``; one thread by default (edge benchmark)."""
    if not Path(model_path).is_file():
        raise ModelMissingError(f"model not found: {model_path} (run `make models`)")
    with native_log_filter():
        interpreter = _interpreter_class()(model_path=str(model_path), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter
