"""Lower-precision variants of an exported model, for the precision lesson (build time: onnx).

From the fp32 ONNX file, two more graphs with the same input and the same named float32
outputs (``logits``, ``attn_scores``, ``attn_probs``, ``hidden`` and the inside of every
block, models/contract.py; an integer output, a mixture of experts' chosen ``experts``, stays
int64):

- **fp16**: weights and every activation stored in float16. An op that ONNX Runtime's CPU
  provider can run on float16 tensors keeps them (its kernel registry says which); any other
  op gets a Cast round trip, fp16 → fp32 → op → fp16: its inputs are fp16 values, it computes
  in fp32, and its result is rounded to fp16 before the next op reads it. The graph records
  which ops are which (``NATIVE``/``EMULATED`` in the manifest).
- **bf16**: emulated throughout, since the CPU provider has no bfloat16 arithmetic. Weights
  are stored in bfloat16; after every op that computes, Cast fp32 → bf16 → fp32 rounds its
  result, so every op reads bf16 values and computes in fp32. Ops that only move values
  (reshape, transpose, gather, ...) return values they were given, already bf16.

``python -m models.lowp [--static DIR] [--model NAME]`` writes the variants next to an
existing model and lists them in the manifest entry's ``variants`` field, without retraining;
``python -m models.build`` writes them for every new model. The fp32 file is never touched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from models.manifest import MANIFEST_NAME, STATIC_DIR, read_manifest, write_manifest
from models.runtime import sha256_file

VARIANTS = ("fp16", "bf16")
_TYPE = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)
# Ops whose float outputs are copies of input values: rounding after them changes nothing.
MOVEMENT_OPS = frozenset(
    {
        "Concat",
        "Expand",
        "Flatten",
        "Gather",
        "Identity",
        "Reshape",
        "Slice",
        "Split",
        "Squeeze",
        "Transpose",
        "Unsqueeze",
    }
)
DESCRIPTIONS = {
    "fp16": (
        "float16 graph: weights and activations in fp16; ops without an fp16 kernel in ONNX "
        "Runtime's CPU provider run in fp32 between Casts (fp16 → fp32 → op → fp16); "
        "LayerNormalization keeps its mean and variance in fp32 (stash_type=1)"
    ),
    "bf16": (
        "bfloat16 emulated: weights stored in bf16; every computing op reads bf16 values, "
        "computes in fp32 and its result is rounded to bf16 (Cast fp32 → bf16 → fp32)"
    ),
}


def cpu_fp16_ops(opset: int) -> frozenset[str]:
    """Op types (default domain) with a CPU kernel for ``opset`` that takes float16 tensors,
    read from ONNX Runtime's kernel registry."""
    from onnxruntime.capi import _pybind_state

    ops = set()
    for d in _pybind_state.get_all_opkernel_def():
        if d.provider != "CPUExecutionProvider" or d.domain not in ("", "ai.onnx"):
            continue
        lo, hi = d.version_range
        if not lo <= opset <= hi:
            continue
        # e.g. LayerNormalization registers T = fp16 with U (its mean and variance) = fp32
        if any("tensor(float16)" in v for v in d.type_constraints.values()):
            ops.add(d.op_name)
    return frozenset(ops)


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of every float32 tensor in the graph (inputs, weights, activations, outputs)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    infos = [*g.input, *g.output, *g.value_info]
    names = {v.name for v in infos if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    names |= {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT}
    return names


def _tensor(values: np.ndarray, name: str, precision: str) -> TensorProto:
    """A weight stored in ``precision``, rounded to nearest even (ml_dtypes' casts)."""
    if precision == "fp16":
        return numpy_helper.from_array(values.astype(np.float16), name)
    bits = values.astype(ml_dtypes.bfloat16).view(np.uint16)
    t = helper.make_tensor(name, TensorProto.BFLOAT16, values.shape, bits.tobytes(), raw=True)
    return t


def _cast(src: str, dst: str, to: int) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [dst], name=f"cast_{src}_to_{dst}", to=to)


def convert(model: onnx.ModelProto, precision: str) -> tuple[onnx.ModelProto, dict]:
    """The ``precision`` variant of an fp32 ``model`` and a record of how it was made
    (which op types run natively, which between Casts)."""
    if precision not in VARIANTS:
        raise ValueError(f"precision must be one of {', '.join(VARIANTS)}, not {precision!r}")
    floats = _float_tensors(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    del g.value_info[:]  # the types change; ONNX Runtime infers them again
    low = _TYPE[precision]
    fp16 = precision == "fp16"
    native = cpu_fp16_ops(_opset(model)) if fp16 else frozenset()
    # the float outputs; an integer one (a mixture of experts' chosen ``experts``) is left be
    outputs = {o.name for o in g.output if o.name in floats}

    inits = []
    pre: list[onnx.NodeProto] = []
    for t in g.initializer:
        if t.data_type != TensorProto.FLOAT:
            inits.append(t)
        elif fp16:
            inits.append(_tensor(numpy_helper.to_array(t), t.name, "fp16"))
        else:  # bf16 weights, widened to fp32 for the ops (folded once when the session loads)
            inits.append(_tensor(numpy_helper.to_array(t), f"{t.name}__bf16", "bf16"))
            pre.append(_cast(f"{t.name}__bf16", t.name, TensorProto.FLOAT))
    del g.initializer[:]
    g.initializer.extend(inits)

    nodes = list(pre)
    kept, emulated = set(), set()
    f32_copy: dict[str, str] = {}  # fp16 tensor -> its fp32 copy, shared by its readers
    for node in g.node:
        ins = [i for i in node.input if i in floats]
        outs = [o for o in node.output if o in floats]
        if not ins and not outs:
            nodes.append(node)
            continue
        if fp16 and node.op_type in native:
            kept.add(node.op_type)
            nodes.append(node)
            continue
        if not fp16 and node.op_type in MOVEMENT_OPS:
            kept.add(node.op_type)
            nodes.append(node)
            continue
        emulated.add(node.op_type)
        if fp16:
            for i, name in enumerate(node.input):
                if name in floats:
                    if name not in f32_copy:
                        f32_copy[name] = f"{name}__f32"
                        nodes.append(_cast(name, f32_copy[name], TensorProto.FLOAT))
                    node.input[i] = f32_copy[name]
        nodes.append(node)
        for i, name in enumerate(node.output):
            if name in floats:
                node.output[i] = f"{name}__op"
                if fp16:
                    nodes.append(_cast(f"{name}__op", name, low))
                else:
                    nodes.append(_cast(f"{name}__op", f"{name}__bf16", low))
                    nodes.append(_cast(f"{name}__bf16", name, TensorProto.FLOAT))
    if fp16:
        # the named outputs stay float32: the last fp16 value, widened (exactly)
        for n in nodes:
            for i, name in enumerate(n.output):
                if name in outputs:
                    n.output[i] = f"{name}__fp16"
            for i, name in enumerate(n.input):
                if name in outputs:
                    n.input[i] = f"{name}__fp16"
        widened = [o.name for o in g.output if o.name in outputs]
        nodes.extend(_cast(f"{name}__fp16", name, TensorProto.FLOAT) for name in widened)
    del g.node[:]
    g.node.extend(nodes)
    g.name = f"{g.name}_{precision}"
    onnx.checker.check_model(out, full_check=True)
    record = {
        # fp16: ops run by an fp16 kernel; bf16: ops that only move (already bf16) values
        ("native_ops" if fp16 else "movement_ops"): sorted(kept),
        "emulated_ops": sorted(emulated),
        "description": DESCRIPTIONS[precision],
        "onnxruntime": onnxruntime.__version__,
    }
    return out, record


def variant_file(model_file: str, precision: str) -> str:
    """``anatomy-gpt.onnx`` -> ``anatomy-gpt-fp16.onnx``."""
    stem = model_file[: -len(".onnx")] if model_file.endswith(".onnx") else model_file
    return f"{stem}-{precision}.onnx"


def _save(model: onnx.ModelProto, path: Path) -> None:
    # next to the target, then rename: a crash never leaves a half-written model
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_variants(static_dir: Path, entry: dict) -> dict:
    """Write the fp16 and bf16 variants of ``entry``'s model into ``static_dir``; returns the
    manifest's ``variants`` field (file, sha256, bytes, how each was made)."""
    static_dir = Path(static_dir)
    src = static_dir / entry["file"]
    if not src.is_file():
        raise FileNotFoundError(f"model file not found: {src}")
    model = onnx.load(str(src))
    variants = {}
    for precision in VARIANTS:
        converted, record = convert(model, precision)
        path = static_dir / variant_file(entry["file"], precision)
        _save(converted, path)
        variants[precision] = {
            "file": path.name,
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            **record,
        }
        print(
            f"[lowp] {path.name}: {path.stat().st_size / 1e6:.1f} MB; "
            f"between Casts: {', '.join(record['emulated_ops']) or 'none'}"
        )
    return variants


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.lowp", description=__doc__.split("\n")[0])
    p.add_argument("--static", type=Path, default=STATIC_DIR, help="folder with manifest.json")
    p.add_argument("--model", help="only this model (default: every model in the manifest)")
    args = p.parse_args(argv)

    manifest = read_manifest(args.static)
    entries = [m for m in manifest["models"] if args.model in (None, m.get("name"))]
    if not entries:
        print(f"error: no model {args.model!r} in {args.static / MANIFEST_NAME}", file=sys.stderr)
        return 2
    try:
        for entry in entries:
            entry = dict(entry, variants=write_variants(args.static, entry))
            write_manifest(args.static, entry)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
