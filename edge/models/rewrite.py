"""Rewrite a TFLite flatbuffer without TensorFlow: fix the batch to 1 and add a SignatureDef.

The npm MobileFaceNet has a hard-coded batch of 2 and no signature; ai-edge-quantizer needs a
``serving_default`` signature to calibrate, and a batch of 1 halves the work per face. The
schema object API bundled with ai-edge-litert (``schema_py_generated``) round-trips the model.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

SIGNATURE_KEY = "serving_default"


def _opname(model: schema.ModelT, op: schema.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    for name in dir(schema.BuiltinOperator):
        if not name.startswith("_") and getattr(schema.BuiltinOperator, name) == builtin:
            return name
    return f"BUILTIN_{builtin}"


def load_model(path: Path) -> schema.ModelT:
    return schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)


def save_model(model: schema.ModelT, path: Path) -> None:
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(bytes(builder.Output()))
    tmp.replace(path)


def set_batch_one(model: schema.ModelT, old_batch: int) -> int:
    """Set the leading dim of every activation tensor (no constant buffer) from old_batch to 1.

    Reshape target shapes (option and constant input) are patched too. Returns tensors changed.
    """
    changed = 0
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
            has_data = data is not None and len(data) > 0
            shape = tensor.shape
            if not has_data and shape is not None and len(shape) and shape[0] == old_batch:
                tensor.shape = np.array([1, *list(shape[1:])], dtype=np.int32)
                sig = tensor.shapeSignature
                if sig is not None and len(sig) and sig[0] == old_batch:
                    tensor.shapeSignature = np.array([1, *list(sig[1:])], dtype=np.int32)
                changed += 1
        for op in graph.operators:
            if _opname(model, op) != "RESHAPE":
                continue
            opts = op.builtinOptions
            if opts is not None and getattr(opts, "newShape", None) is not None:
                ns = np.asarray(opts.newShape, dtype=np.int32).copy()
                if len(ns) and ns[0] == old_batch:
                    ns[0] = 1
                    opts.newShape = ns
            if len(op.inputs) > 1:
                shape_t = graph.tensors[op.inputs[1]]
                buf = model.buffers[shape_t.buffer]
                if buf.data is not None and len(buf.data):
                    vals = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.int32).copy()
                    if len(vals) and vals[0] == old_batch:
                        vals[0] = 1
                        buf.data = np.frombuffer(vals.tobytes(), dtype=np.uint8)
    return changed


def normalise_opcodes(model: schema.ModelT) -> None:
    """Copy ``deprecated_builtin_code`` into ``builtin_code`` (TOCO-era files leave it 0).

    Newer tools (ai-edge-quantizer among them) read only ``builtin_code``; left at 0 every op
    would look like ADD and its weights would be quantized as activations.
    """
    for code in model.operatorCodes:
        code.builtinCode = max(code.builtinCode, code.deprecatedBuiltinCode)


def rewrite_abs_prelu(model: schema.ModelT) -> int:
    """Rewrite TOCO's PReLU ``relu(x) + a*(x - |x|)`` as ``relu(x) + 2a*(x - relu(x))``.

    Same function (x - |x| = 2 min(x, 0) = 2 (x - relu(x))), but without ABS, which
    ai-edge-quantizer leaves in float: 33 ABS ops meant 66 QUANTIZE/DEQUANTIZE round trips and
    an int8 model slower than the float one. Returns the number of PReLUs rewritten.
    """
    graph = model.subgraphs[0]
    producers: dict[int, schema.OperatorT] = {}
    consumers: dict[int, list[schema.OperatorT]] = {}
    for op in graph.operators:
        for t in op.outputs:
            producers[int(t)] = op
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(op)
    relu_of: dict[int, int] = {}
    for op in graph.operators:
        if _opname(model, op) == "RELU":
            relu_of[int(op.inputs[0])] = int(op.outputs[0])
    dead: list[schema.OperatorT] = []
    for op in graph.operators:
        if _opname(model, op) != "ABS":
            continue
        x, a = int(op.inputs[0]), int(op.outputs[0])
        users = consumers.get(a, [])
        if x not in relu_of or len(users) != 1 or _opname(model, users[0]) != "SUB":
            continue
        sub = users[0]
        if [int(i) for i in sub.inputs] != [x, a]:
            continue
        muls = consumers.get(int(sub.outputs[0]), [])
        if len(muls) != 1 or _opname(model, muls[0]) != "MUL":
            continue
        const = [int(i) for i in muls[0].inputs if int(i) != int(sub.outputs[0])]
        buf = model.buffers[graph.tensors[const[0]].buffer] if const else None
        if buf is None or buf.data is None or not len(buf.data):
            continue
        alpha = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.float32) * np.float32(2.0)
        buf.data = np.frombuffer(alpha.astype(np.float32).tobytes(), dtype=np.uint8)
        sub.inputs = np.array([x, relu_of[x]], dtype=np.int32)
        dead.append(op)
    graph.operators = [op for op in graph.operators if all(op is not d for d in dead)]
    drop_unused_tensors(graph)
    return len(dead)


def split_prelu_convs(model: schema.ModelT) -> int:
    """Turn ``conv -> relu(x) + a2*(x - relu(x))`` into two convs with fused ReLU.

    With r = relu(conv(W, b)) and n = relu(conv(-W, -b)) = -min(x, 0), the PReLU is
    r + (-a2) * n: the int8 graph then has no standalone RELU/SUB, which XNNPACK's int8 path
    does not take (they fell back to reference kernels, ~1 ms each at 56x56x64), and both
    branches are non-negative, which quantizes more finely. Costs one extra conv per PReLU.
    Returns the number of PReLUs rewritten (run after :func:`rewrite_abs_prelu`).
    """
    import copy

    graph = model.subgraphs[0]
    consumers: dict[int, list[schema.OperatorT]] = {}
    for op in graph.operators:
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(op)

    def const(idx: int) -> np.ndarray | None:
        buf = model.buffers[graph.tensors[idx].buffer]
        if buf.data is None or not len(buf.data):
            return None
        return np.frombuffer(bytes(bytearray(buf.data)), dtype=np.float32)

    def new_const(like: int, values: np.ndarray, suffix: bytes) -> int:
        buf = schema.BufferT()
        buf.data = np.frombuffer(values.astype(np.float32).tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        t = copy.deepcopy(graph.tensors[like])
        t.buffer = len(model.buffers) - 1
        t.name = graph.tensors[like].name + suffix
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    done = 0
    new_ops: list[schema.OperatorT] = []
    dead: list[schema.OperatorT] = []
    for op in graph.operators:
        new_ops.append(op)
        if _opname(model, op) not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        if op.builtinOptions.fusedActivationFunction != schema.ActivationFunctionType.NONE:
            continue
        x = int(op.outputs[0])
        users = consumers.get(x, [])
        kinds = sorted(_opname(model, u) for u in users)
        if kinds != ["RELU", "SUB"]:
            continue
        relu = next(u for u in users if _opname(model, u) == "RELU")
        sub = next(u for u in users if _opname(model, u) == "SUB")
        r = int(relu.outputs[0])
        if [int(i) for i in sub.inputs] != [x, r]:
            continue
        muls = consumers.get(int(sub.outputs[0]), [])
        if len(muls) != 1 or _opname(model, muls[0]) != "MUL":
            continue
        mul = muls[0]
        a_idx = next((int(i) for i in mul.inputs if int(i) != int(sub.outputs[0])), -1)
        alpha = const(a_idx) if a_idx >= 0 else None
        w, b = const(int(op.inputs[1])), const(int(op.inputs[2]))
        if alpha is None or w is None or b is None:
            continue
        # Branch 1: the conv itself, ReLU fused, writes r.
        op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU
        op.outputs = np.array([r], dtype=np.int32)
        # Branch 2: negated conv, ReLU fused, writes n = -min(x, 0).
        neg = copy.deepcopy(op)
        n_tensor = copy.deepcopy(graph.tensors[x])
        n_tensor.name = graph.tensors[x].name + b"/neg_relu"
        graph.tensors.append(n_tensor)
        n = len(graph.tensors) - 1
        neg.inputs = np.array([int(op.inputs[0]), new_const(int(op.inputs[1]), -w, b"/neg"),
                               new_const(int(op.inputs[2]), -b, b"/neg")], dtype=np.int32)
        neg.outputs = np.array([n], dtype=np.int32)
        new_ops.append(neg)
        mul.inputs = np.array([n, new_const(a_idx, -alpha, b"/neg")], dtype=np.int32)
        dead += [relu, sub]
        done += 1
    graph.operators = [o for o in new_ops if all(o is not d for d in dead)]
    drop_unused_tensors(graph)
    return done


def drop_unused_tensors(graph: schema.SubGraphT) -> None:
    """Remove tensors no op or graph boundary refers to, renumbering every reference."""
    used = {int(t) for op in graph.operators for t in (*op.inputs, *op.outputs) if t >= 0}
    used |= {int(t) for t in (*graph.inputs, *graph.outputs)}
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}

    def _re(idx) -> np.ndarray:
        return np.array([remap[int(t)] if t >= 0 else -1 for t in idx], dtype=np.int32)

    graph.tensors = [graph.tensors[i] for i in keep]
    for op in graph.operators:
        op.inputs, op.outputs = _re(op.inputs), _re(op.outputs)
    graph.inputs, graph.outputs = _re(graph.inputs), _re(graph.outputs)


def add_signature(model: schema.ModelT, key: str = SIGNATURE_KEY) -> None:
    """Add a signature naming subgraph 0's inputs/outputs by their tensor names."""
    graph = model.subgraphs[0]

    def _maps(indices: list[int]) -> list[schema.TensorMapT]:
        maps = []
        for idx in indices:
            tm = schema.TensorMapT()
            name = graph.tensors[idx].name
            tm.name = name.decode() if isinstance(name, bytes) else name
            tm.tensorIndex = int(idx)
            maps.append(tm)
        return maps

    sig = schema.SignatureDefT()
    sig.signatureKey = key
    sig.subgraphIndex = 0
    sig.inputs = _maps(list(graph.inputs))
    sig.outputs = _maps(list(graph.outputs))
    model.signatureDefs = [sig]


def make_batch1_signed(src: Path, dst: Path, split_prelu: bool = False) -> None:
    """Batch-2 npm MobileFaceNet -> batch-1 model with a ``serving_default`` signature.

    ``split_prelu`` gives the quantizer's input (fast in int8, ~40 % slower in float), so the
    float embedder ships without it.
    """
    model = load_model(src)
    in_shape = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]].shape
    normalise_opcodes(model)
    rewrite_abs_prelu(model)
    if split_prelu:
        split_prelu_convs(model)
    set_batch_one(model, int(in_shape[0]))
    add_signature(model)
    save_model(model, dst)
