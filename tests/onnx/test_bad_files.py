"""Files pyconvnet.onnx.load must refuse with a ValueError naming the file and the problem,
never a crash or a half-built model."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402
from onnx_helpers import model, save  # noqa: E402

from pyconvnet import onnx as pox  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "onnx")


def conv_model():
    return model([helper.make_node("Conv", ["x", "W"], ["y"])], (2, 5, 5),
                 inits={"W": np.ones((3, 2, 3, 3), np.float32)})


def expect(path, *parts):
    with pytest.raises(ValueError) as e:
        pox.load(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


def test_truncated_file(tmp_path):
    data = conv_model().SerializeToString()
    for cut in (len(data) // 3, len(data) - 5):
        p = tmp_path / f"cut{cut}.onnx"
        p.write_bytes(data[:cut])
        expect(p, "truncated")


def test_not_onnx(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a model\n" * 20)
    expect(p, "not an ONNX model")
    npz = tmp_path / "weights.onnx"
    with open(npz, "wb") as f:
        np.savez(f, a=np.zeros(3))
    expect(npz, "not an ONNX model")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    expect(p, "empty")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        pox.load(tmp_path / "nope.onnx")


def test_dynamic_spatial_size_is_unresolvable(tmp_path):
    m = conv_model()
    dim = m.graph.input[0].type.tensor_type.shape.dim[2]
    dim.ClearField("dim_value")
    dim.dim_param = "height"
    expect(save(m, tmp_path / "dyn.onnx"), "dynamic size 'height' in dimension 2", "unresolvable")


def test_reshape_target_computed_from_the_batch(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i"], ["n"]),
             helper.make_node("Mul", ["n", "two"], ["n2"]), helper.make_node("Unsqueeze", ["n2", "a"], ["n3"]),
             helper.make_node("Concat", ["n3", "m"], ["t"], axis=0), helper.make_node("Reshape", ["x", "t"], ["y"])]
    inits = {"i": np.array(0, np.int64), "two": np.array(2, np.int64), "a": np.array([0], np.int64),
             "m": np.array([-1], np.int64)}
    expect(save(model(nodes, (4, 2), inits=inits), tmp_path / "r.onnx"), "unresolvable dynamic shape")


def test_old_opset(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], (3,), opset=11)
    expect(save(m, tmp_path / "old.onnx"), "opset 11 is older than 13")


def test_foreign_domain_op(tmp_path):
    n = helper.make_node("FusedConv", ["x"], ["y"], domain="com.microsoft", name="fc")
    g = helper.make_graph([n], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    expect(save(m, tmp_path / "ms.onnx"), "com.microsoft::FusedConv", "node 'fc'")


def test_invalid_graph(tmp_path):
    """A node reading a value nothing defines: the checker's message, with the file."""
    m = conv_model()
    m.graph.node[0].input[0] = "ghost"
    expect(save(m, tmp_path / "ghost.onnx"), "not a valid ONNX model")


def test_missing_external_data(tmp_path):
    src = os.path.join(FIXTURES, "lenet_dynamo_18.onnx")
    dst = tmp_path / "lenet.onnx"
    shutil.copy(src, dst)  # without its .data file
    expect(dst, "external")


def test_non_float_input(tmp_path):
    m = conv_model()
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(ValueError, match="INT64|not a valid"):
        pox.load(save(m, tmp_path / "int.onnx"))
