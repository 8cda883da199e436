"""NumPy-in, NumPy-out neural-network functions backed by the C++ kernels.

Forward signatures and semantics follow ``torch.nn.functional``; each forward
has an explicit ``*_backward`` since there is no autograd. Layout is NCHW;
float32 and float64 are supported and the output has the input's dtype. Any
array-like is accepted (non-contiguous arrays are copied once); inputs are never
modified, except the running statistics that ``batch_norm`` updates in place.

One module per family (conv, pool, norm, linear, activation, relaxed, recurrent), all
re-exported here; :mod:`pyconvnet.reference` mirrors them name for name as naive
loops.
"""
from .activation import dropout, dropout_backward, relu, relu_backward, sigmoid, sigmoid_backward
from .conv import (conv2d, conv2d_backward, conv2d_output_size, conv_transpose2d, conv_transpose2d_backward, fold,
                   unfold)
from .linear import linear, linear_backward
from .norm import batch_norm, batch_norm_backward
from .pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward, pool2d_output_size
from .relaxed import (check_index, grid_index, index_to_L, receptive_conv, receptive_conv_backward, relaxed_conv,
                      relaxed_conv_backward, soft_receptive_field, soft_receptive_field_backward)

__all__ = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
    "unfold", "fold", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "batch_norm", "batch_norm_backward", "linear", "linear_backward", "relu", "relu_backward",
    "sigmoid", "sigmoid_backward", "dropout", "dropout_backward",
    "conv2d_output_size", "pool2d_output_size",
    "relaxed_conv", "relaxed_conv_backward", "receptive_conv", "receptive_conv_backward", "grid_index",
    "index_to_L", "check_index", "soft_receptive_field", "soft_receptive_field_backward",
]
from .activation import (erf, erf_backward, gelu, gelu_backward, hardtanh, hardtanh_backward, log_softmax,  # noqa: E402
                         log_softmax_backward)
from .pad import PAD_MODES, pad, pad_backward, pad_output_size  # noqa: E402
from .pool import (adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_max_pool2d,  # noqa: E402
                   adaptive_max_pool2d_backward)

__all__ += [
    "gelu", "gelu_backward", "erf", "erf_backward", "hardtanh", "hardtanh_backward", "log_softmax",
    "log_softmax_backward", "pad", "pad_backward", "pad_output_size", "PAD_MODES", "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward", "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
]
from .recurrent import lstm, lstm_backward  # noqa: E402

__all__ += ["lstm", "lstm_backward"]
