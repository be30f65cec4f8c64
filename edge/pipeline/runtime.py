"""Load a LiteRT interpreter: ``ai-edge-litert`` first, ``tflite-runtime`` as the fallback.

Kept in one place so every model on the terminal runs with the same thread policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from splitface.edge.pipeline.errors import ModelMissingError, RuntimeUnavailableError


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


def load_interpreter(model_path: Path, num_threads: int = 1) -> Any:
    """An allocated interpreter for ``model_path``; one thread by default (edge benchmark)."""
    if not Path(model_path).is_file():
        raise ModelMissingError(f"model not found: {model_path} (run `make models`)")
    interpreter = _interpreter_class()(model_path=str(model_path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter
