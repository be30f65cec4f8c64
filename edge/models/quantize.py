"""Static int8 quantization of MobileFaceNet with ai-edge-quantizer (no TensorFlow needed).

Recipes (weights are always symmetric per-channel int8):
  * ``a8w8``: every op int8 activations (asymmetric), min/max calibration;
  * ``a8w8-float-head``: as a8w8 but the ops whose names match ``head_regex`` stay float —
    the embedding head (the GDConv + linear 1x1 convs) is where one int8 step moves
    a 192-d unit vector the most, so keeping it float lifts the worst-case cosine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

RECIPES = ("a8w8", "a8w8-float-head")
HEAD_REGEX = r"MobileFaceNet/Logits/.*"


def make_recipe(name: str, head_regex: str = HEAD_REGEX):
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe_manager

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {RECIPES}")
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                         activation_num_bits=8, weight_num_bits=8)
    if name == "a8w8-float-head":
        rm.add_quantization_config(regex=head_regex,
                                   operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                   algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return rm.get_quantization_recipe()


def quantize_model(float_path: Path, out_path: Path, calibration: Sequence[np.ndarray],
                   recipe_name: str = "a8w8",
                   input_range: tuple[float, float] | None = None) -> None:
    """Calibrate on ``calibration`` (each (112,112,3) float32, normalised) and write int8.

    The calibrator averages per-batch min/max, so the input tensor's range comes out narrower
    than the pixels can reach and bright highlights clip (this cost 0.03 of worst-case cosine);
    ``input_range`` overrides it with the known range of the normalised pixels.
    """
    from ai_edge_quantizer import quantizer

    qt = quantizer.Quantizer(str(float_path), make_recipe(recipe_name))
    data = {"serving_default": [{"input": np.asarray(x, np.float32)[None]} for x in calibration]}
    # The quantizer draws tqdm bars and a size report on stderr/stdout; keep build logs terse.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull), \
            contextlib.redirect_stdout(devnull):
        result = qt.calibrate(data)
        if input_range is not None:
            name = _input_tensor_name(float_path)
            qsv = result[name]
            result[name] = {**qsv, "min": np.full_like(np.asarray(qsv["min"]), input_range[0]),
                            "max": np.full_like(np.asarray(qsv["max"]), input_range[1])}
        tmp = out_path.with_name(out_path.name + ".part.tflite")
        qt.quantize(result).export_model(str(tmp), overwrite=True)
    tmp.replace(out_path)


def _input_tensor_name(model_path: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(model_path)).get_input_details()[0]["name"]
