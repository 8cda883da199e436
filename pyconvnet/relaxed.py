"""The relaxed receptive-field convolution (Tazume, Ochi, Sakata, Mori, "Proposal of
optimization method of local receptive field using gradient descent") in one namespace.

Nothing is defined here: the functions live in :mod:`pyconvnet.functional.relaxed`,
their naive loops in :mod:`pyconvnet.reference.relaxed`, the layer in
:mod:`pyconvnet.layers.relaxed`, the bilevel search in :mod:`pyconvnet.search`,
the pictures in :mod:`pyconvnet.plots` and :func:`field_distance` in
:mod:`pyconvnet.metrics`. This module gathers them for scripts that want the whole
method under one name (``from pyconvnet import relaxed as R``)."""
from .functional.relaxed import (check_index, grid_index, index_to_L, receptive_conv, receptive_conv_backward,
                                 relaxed_conv, relaxed_conv_backward, soft_receptive_field,
                                 soft_receptive_field_backward)
from .layers.relaxed import RelaxedConv
from .metrics import field_distance
from .plots import plot_receptive_fields, write_png
from .reference.relaxed import receptive_conv as ref_receptive_conv
from .reference.relaxed import receptive_conv_backward as ref_receptive_conv_backward
from .reference.relaxed import relaxed_conv as ref_relaxed_conv
from .reference.relaxed import relaxed_conv_backward as ref_relaxed_conv_backward
from .search import (BilevelSearch, arch_gradient, arch_parameters, discretize, relaxed_layers, search,
                     weight_parameters)

__all__ = [
    "relaxed_conv", "relaxed_conv_backward", "receptive_conv", "receptive_conv_backward",
    "grid_index", "index_to_L", "check_index", "soft_receptive_field", "soft_receptive_field_backward",
    "ref_relaxed_conv", "ref_relaxed_conv_backward", "ref_receptive_conv", "ref_receptive_conv_backward",
    "RelaxedConv",
    "arch_parameters", "weight_parameters", "relaxed_layers", "discretize", "arch_gradient",
    "BilevelSearch", "search",
    "plot_receptive_fields", "field_distance", "write_png",
]
