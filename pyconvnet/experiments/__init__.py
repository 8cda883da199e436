"""Reproduction experiments of the seed papers (run from the CLI: ``pyconvnet experiment ...``).

* :mod:`pyconvnet.experiments.relaxed_mnist` -- the relaxed receptive field paper (Tazume et al.), relaxed receptive-field
  convolution on MNIST and pixel-permuted MNIST (paper Tables 4.1 / 4.2, Fig. 4.1).
"""
