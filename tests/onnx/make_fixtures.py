"""Writes tests/fixtures/onnx/: the torch_nets exported by torch.onnx's dynamo exporter (opsets 18
and 20) with one input batch and torch's eval output on it, so the test suite checks the import of
dynamo-exported files without paying ~5 s of torch.export per network. Regenerate after a torch
upgrade (the tests also export one network live with each exporter):

    python tests/onnx/make_fixtures.py
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_nets as T  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "onnx")


def main():
    os.makedirs(OUT, exist_ok=True)
    arrays = {}
    for name in T.NETS:
        m, shape = T.build(name)
        x = torch.from_numpy(np.random.default_rng(1).random((3,) + shape).astype(np.float32))
        with torch.no_grad():
            y = m(x).numpy()
        arrays[f"{name}.x"], arrays[f"{name}.y"] = x.numpy(), y
        for opset in (18, 20):
            T.export(m, shape, os.path.join(OUT, f"{name}_dynamo_{opset}.onnx"), True, opset)
    np.savez(os.path.join(OUT, "torch_outputs.npz"), torch_version=np.array(torch.__version__), **arrays)


if __name__ == "__main__":
    main()
