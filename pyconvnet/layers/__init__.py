"""Thin, autograd-free layers over pyconvnet.functional (NumPy in, NumPy out).

Contract (see base.Layer): ``y = layer.forward(x, training=False)``,
``grad_x = layer.backward(grad_y)`` (overwrites ``layer.grads``), ``params`` /
``grads`` / ``buffers`` dicts of arrays that are only ever modified in place,
``parameters()`` -> (name, param, grad) triples for the optimizers,
``state_dict()`` / ``load_state_dict()``, and ``config()`` /
``layer_from_config()`` to rebuild a model. float32 by default (``dtype=``),
float64 works (``layer.astype(np.float64)``).
"""
from .base import LAYERS, Layer, layer_from_config, register
from .conv import Conv2d, ConvTranspose2d, Linear
from .pool import AvgPool2d, MaxPool2d
from .norm import BatchNorm1d, BatchNorm2d
from .activation import Dropout, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .shape import Add, Concat, Flatten, PixelShuffle, PixelUnshuffle, Upsample
from .container import Graph, Sequential
from .relaxed import RelaxedConv
from ..gradcheck import check_backward, numerical_grads

__all__ = [
    "Layer", "layer_from_config", "register", "LAYERS",
    "Linear", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "Identity",
    "Flatten", "Upsample", "PixelShuffle", "PixelUnshuffle", "Concat", "Add",
    "RelaxedConv", "Sequential", "Graph", "check_backward", "numerical_grads",
]
from .activation import GELU, Erf, Hardtanh, LogSoftmax, ReLU6  # noqa: E402
from .pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d, GlobalAvgPool2d, GlobalMaxPool2d  # noqa: E402
from .shape import Pad2d, Reshape, Transpose  # noqa: E402
from .arith import ConstantArith, Elementwise  # noqa: E402
from .recurrent import LSTM  # noqa: E402
from .shape import Stack  # noqa: E402

__all__ += [
    "GELU", "Erf", "Hardtanh", "ReLU6", "LogSoftmax", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "GlobalAvgPool2d",
    "GlobalMaxPool2d", "Pad2d", "Reshape", "Transpose", "ConstantArith", "Elementwise", "LSTM", "Stack",
]
