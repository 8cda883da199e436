"""Naive NumPy reference of the functional API: the test oracle and the "naive
loops" baseline of ``bench/``.

Every function is written straight from its formula as plain Python loops over
output positions (for the scatter-shaped ops, over input positions) with a small
NumPy reduction over one receptive field. Nothing here is clever or fast on
purpose: the point is to be obviously right, and independent of the C++ kernels
and of ``pyconvnet.functional``: nothing here imports from the rest of pyconvnet.

Semantics and signatures follow ``torch.nn.functional``: NCHW layout (an
unbatched (C, H, W) input is accepted where torch accepts it), float32 or
float64 in, the same dtype out, int-or-pair arguments, torch's output-size
rules. Arithmetic is done in float64 and cast back at the end, so a float32
result is the correctly rounded value and not one more float32 implementation.
Inputs are never modified, except the running statistics ``batch_norm`` updates
in place (as torch does).

Formulas are those of the Kyoto Univ. exercise "Image recognition with neural
networks" (advanced task A): convolution and im2col §5.6 eqs. (56)-(62), max
pooling §5.7 eqs. (63)-(64), batch normalisation §5.3 eqs. (28)-(38); the relaxed
receptive-field convolution is that of the relaxed receptive field paper
(Tazume et al.). One module per family, mirroring :mod:`pyconvnet.functional`.
"""
from .activation import relu, relu_backward
from .conv import conv2d, conv2d_backward, conv_transpose2d, conv_transpose2d_backward, fold, unfold
from .linear import linear, linear_backward
from .norm import batch_norm, batch_norm_backward
from .pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from .relaxed import receptive_conv, receptive_conv_backward, relaxed_conv, relaxed_conv_backward

__all__ = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
    "unfold", "fold", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "batch_norm", "batch_norm_backward", "linear", "linear_backward", "relu", "relu_backward",
    "relaxed_conv", "relaxed_conv_backward", "receptive_conv", "receptive_conv_backward",
]
from .activation import (erf, erf_backward, gelu, gelu_backward, hardtanh, hardtanh_backward, log_softmax,  # noqa: E402
                         log_softmax_backward)
from .pad import pad, pad_backward  # noqa: E402
from .pool import (adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_max_pool2d,  # noqa: E402
                   adaptive_max_pool2d_backward)

__all__ += [
    "gelu", "gelu_backward", "erf", "erf_backward", "hardtanh", "hardtanh_backward", "log_softmax",
    "log_softmax_backward", "pad", "pad_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
]
from .recurrent import lstm, lstm_backward  # noqa: E402

__all__ += ["lstm", "lstm_backward"]
