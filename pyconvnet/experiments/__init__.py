"""Reproduction experiments of the source documents (run from the CLI: ``pyconvnet experiment NAME``).

Each experiment is one module here with ``add_arguments(parser)``, ``run_from_args(args)`` (returns
the exit status) and ``main(argv)``; its first docstring paragraph is the command's description.
:data:`EXPERIMENTS` maps a command name to its module and a one-line help; the CLI builds one
subcommand per entry, so a new experiment is a module plus one line here.

* ``relaxed-mnist`` (:mod:`.relaxed_mnist`) -- the relaxed receptive field paper (Tazume et al.):
  relaxed receptive-field convolution on MNIST and pixel-permuted MNIST (Tables 4.1 / 4.2, Fig. 4.1).
* ``cifar10-speedrun`` (:mod:`.cifar10_speedrun`) -- Keller Jordan's airbench94 recipe: CIFAR-10
  to 94% on the CPU.
* ``arithmetic-lstm`` (:mod:`.arithmetic_lstm`) -- the CNN+LSTM paper: two MNIST digits, the first
  terms of an arithmetic sequence, in; the third term out (model-1, model-2; Table 2, Figs. 4-5).
* ``dcgan`` (:mod:`.dcgan`) -- the Kyoto Univ. exercise §6.6: a DCGAN on MNIST (Algorithm 1), its
  samples judged by a LeNet-5.
* ``smile`` (:mod:`.smile`) -- the Kyoto Univ. exercise §6.5 B2: smile / non-smile classification
  from image folders streamed from disk (a synthetic stand-in for the faces).
* ``robust-lenet5`` (:mod:`.robust_lenet5`) -- the LeNet-5 translation report (Tohoku Univ.): LeNet-5 and
  the robust LeNet-5 with and without translated training, on the plain and the translated test set.
* ``overfit`` (:mod:`.overfit`) -- the Kyoto Univ. exercise's B1-(1): deliberate over-fitting and the
  regularised run beside it.
"""
from __future__ import annotations

import importlib

# name -> (module under pyconvnet.experiments, help line)
EXPERIMENTS = {
    "relaxed-mnist": ("relaxed_mnist", "the relaxed receptive field paper: learned receptive fields on MNIST / "
                                       "pixel-permuted MNIST"),
    "cifar10-speedrun": ("cifar10_speedrun", "CIFAR-10 to 94% with the airbench94 recipe (Jordan, 2024) on the CPU"),
    "arithmetic-lstm": ("arithmetic_lstm", "the CNN+LSTM paper: CNNs + LSTM on MNIST arithmetic sequences"),
    "dcgan": ("dcgan", "the Kyoto Univ. exercise §6.6: DCGAN on MNIST, judged by a LeNet-5"),
    "smile": ("smile", "the Kyoto Univ. exercise §6.5 B2: smile / non-smile faces streamed from image folders"),
    "robust-lenet5": ("robust_lenet5", "the LeNet-5 translation report: LeNet-5 / robust LeNet-5 with translated "
                                       "training and test (Table 1)"),
    "overfit": ("overfit", "the Kyoto Univ. exercise B1-(1): a large CNN over-fitting a small subset beside its "
                           "regularised twin"),
}


def load(name):
    """The module of experiment ``name`` (imported on demand: each pulls in only what it needs)."""
    try:
        module, _ = EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"experiment: expected one of {', '.join(EXPERIMENTS)}, got {name!r}") from None
    return importlib.import_module(f"{__name__}.{module}")
