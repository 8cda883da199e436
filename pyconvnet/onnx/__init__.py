"""Models in and out through ONNX (optional extra ``pyconvnet[onnx]``: the ``onnx`` package,
imported only when a function here is called).

* :func:`export` writes a ``Sequential`` / ``Graph`` of our layers in inference form
  (batch norm with its running statistics, dropout off) with a dynamic batch dimension;
  ONNX Runtime reproduces ``model.forward(x, training=False)``.
* :func:`load` reads what ``torch.onnx.export`` writes for CNNs (both exporters, opsets
  13+) into a trainable ``Graph`` of our layers.

The op tables: ``SUPPORTED_OPS`` (import) and ``EXPORTABLE_LAYERS`` (export).
"""
from .export import EXPORTABLE_LAYERS, export
from .load import SUPPORTED_OPS, load, metadata

__all__ = ["export", "load", "metadata", "SUPPORTED_OPS", "EXPORTABLE_LAYERS"]
