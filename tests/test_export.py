"""The ONNX contract: names, dynamic shapes, one file, parity with torch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from models.checkpoint import load_model
from models.export import OUTPUT_NAMES, max_abs_diff, parity, parity_lengths


@pytest.fixture(scope="module")
def quick(quick_build, quick_manifest):
    entry = quick_manifest["models"][0]
    model = load_model(quick_build / entry["weights_file"], entry["config"])
    return quick_build, entry, model


def test_single_file_no_external_data(quick):
    out, entry, _ = quick
    proto = onnx.load(str(out / entry["file"]), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert not list(out.glob("*.data")), "no external-data side file"


def test_names_and_dynamic_axes(quick):
    out, entry, _ = quick
    proto = onnx.load(str(out / entry["file"]))
    (inp,) = proto.graph.input
    assert inp.name == "input_ids"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    dims = inp.type.tensor_type.shape.dim
    assert all(d.dim_param and not d.dim_value for d in dims), "batch and T are symbolic"
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)


@pytest.mark.parametrize("T", [1, 7, 32])
def test_parity_every_output(quick, T):
    out, entry, model = quick
    ids = torch.randint(
        entry["config"]["vocab_size"], (3, T), generator=torch.Generator().manual_seed(T)
    )
    sess = ort.InferenceSession(str(out / entry["file"]), providers=["CPUExecutionProvider"])
    got = sess.run(list(OUTPUT_NAMES), {"input_ids": ids.numpy()})
    with torch.no_grad():
        want = model(ids)
    for name, g, w in zip(OUTPUT_NAMES, got, want, strict=True):
        assert g.shape == tuple(w.shape), name
        assert max_abs_diff(w.numpy(), g) <= 1e-4, name


def test_parity_function_reports_all_outputs(quick):
    out, entry, model = quick
    errors = parity(model, out / entry["file"])
    assert set(errors) == set(OUTPUT_NAMES)
    assert max(errors.values()) <= 1e-4
    assert entry["parity_max_abs_error"].keys() == errors.keys()


def test_parity_lengths_cover_one_middle_and_block():
    assert parity_lengths(128) == [1, 64, 128]
    assert parity_lengths(2) == [1, 2]


def test_max_abs_diff_treats_matching_infinities_as_equal():
    a = np.array([1.0, -np.inf, 3.0])
    assert max_abs_diff(a, np.array([1.0, -np.inf, 3.5])) == 0.5
    assert max_abs_diff(a, np.array([1.0, 0.0, 3.0])) == float("inf")
    assert max_abs_diff(a, np.array([1.0, np.nan, 3.0])) == float("inf")
