"""Hand-built ONNX graphs for the op-variant and bad-file tests (onnx.helper)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(nodes, in_shape, out_name="y", inits=None, opset=17, in_name="x", batch="N"):
    """A graph reading x (batch, *in_shape) and writing ``out_name`` (shape left to inference)."""
    inputs = [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, [batch] + list(in_shape))]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    opsets = [helper.make_opsetid("", opset)]
    # the output's type from ONNX's own shape inference (the checker wants one)
    probe = helper.make_model(helper.make_graph(nodes, "t", inputs, [], inits), opset_imports=opsets)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(probe).graph.value_info}
    out = inferred.get(out_name)
    if out is None or not out.type.tensor_type.HasField("shape"):
        out = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch])
    graph = helper.make_graph(nodes, "t", inputs, [out], inits)
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 8
    return m


def save(m, path):
    onnx.save(m, str(path))
    return str(path)


def ort_run(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]
