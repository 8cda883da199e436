"""The bilevel (DARTS-style) search of the relaxed receptive field paper (Tazume et
al., "Proposal of optimization method of local receptive field using gradient
descent", Fig. 3.1, eq. 4): learn the receptive-field sources R of every :class:`~pyconvnet.layers.RelaxedConv`
on a validation loss while the weights W are trained on the training loss.

* :func:`arch_parameters` / :func:`weight_parameters`: the two optimizers' parameters;
* :func:`arch_gradient`: grad_R of the validation loss, first order or with the
  one-step unrolled weights of eq. 4;
* :class:`BilevelSearch` (one R step then one W step) and :func:`search` (epochs of
  them, on the training loop's epoch generator);
* :func:`relaxed_layers`, :func:`discretize`.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from .data.augment import to_float
from .layers.relaxed import RelaxedConv
from .losses import SoftmaxCrossEntropy
from .functional import soft_receptive_field_backward
from .training import epoch_generator, no_input_grad

__all__ = ["arch_parameters", "weight_parameters", "relaxed_layers", "discretize", "arch_gradient",
           "BilevelSearch", "search"]


def _is_arch(name):
    return name == "R" or name.endswith(".R")


def arch_parameters(model):
    """(name, param, grad) triples of the receptive-field sources R (for the R optimizer)."""
    return [t for t in model.parameters() if _is_arch(t[0])]


def weight_parameters(model):
    """(name, param, grad) triples of everything else (for the W optimizer)."""
    return [t for t in model.parameters() if not _is_arch(t[0])]


def relaxed_layers(model):
    """Every RelaxedConv inside ``model`` (depth first)."""
    out, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, RelaxedConv):
            out.append(layer)
        stack.extend(child for _, child in reversed(list(layer._children())))
    return out


def discretize(model):
    """Discretises every RelaxedConv of ``model`` (argmax receptive fields); returns the model."""
    for layer in relaxed_layers(model):
        layer.discretize()
    return model


def _set_arch_grad(model, mode):
    for layer in relaxed_layers(model):
        layer.arch_grad = mode if mode == "L" else bool(mode)


def _forward_backward(model, loss, x, y):
    value = float(loss.forward(model.forward(x, training=True), y))
    if not math.isfinite(value):
        raise FloatingPointError(f"bilevel search diverged: loss is {value}")
    model.backward(loss.backward())
    return value


def arch_gradient(model, loss, train_batch, val_batch, order=2, xi=0.01, eps=0.01):
    """Gradient of the validation loss with respect to every R, left in the models' R grads.

    order=1: grad_R L_val(W, R) (first-order DARTS).
    order=2: the paper's eq. 4, grad_R L_val(W', R) with W' = W - xi grad_W L_train(W, R),
    = grad_R L_val(W', R) - xi * H grad_W' L_val(W', R), where the mixed second derivative
    times the vector is DARTS's central difference
    (grad_R L_train(W+, R) - grad_R L_train(W-, R)) / (2 e),  W+- = W +- e v,  e = eps / |v|.
    Everything is linear in grad L_c, so the three terms are combined at the L_c level and the
    softmax Jacobian is applied once; softmax(R) itself is computed once (R is fixed here).
    The weights are restored exactly; their grads are left undefined. Returns the validation
    loss (at W' for order 2)."""
    if order not in (1, 2):
        raise ValueError(f"order: expected 1 or 2, got {order!r}")
    layers = relaxed_layers(model)
    weights = weight_parameters(model)
    if not layers:
        raise ValueError("model: no RelaxedConv layer (nothing to search)")
    xt, yt = train_batch
    xv, yv = val_batch
    if order == 1:
        _set_arch_grad(model, True)
        for layer in layers:  # only grad R is used: skip the relaxed layers' weight gradients (one GEMM)
            layer.weight_grad = False
        try:
            return _forward_backward(model, loss, xv, yv)
        finally:
            for layer in layers:
                layer.weight_grad = True
    saved = [p.copy() for _, p, _ in weights]
    holds = [layer.hold_L() for layer in layers]
    for h in holds:
        h.__enter__()
    try:
        # 1. virtual step W' = W - xi grad_W L_train(W, R)
        _set_arch_grad(model, False)
        _forward_backward(model, loss, xt, yt)
        for _, p, g in weights:
            p -= p.dtype.type(xi) * g
        # 2. grad_W' and grad_L of L_val at (W', R)
        _set_arch_grad(model, "L")
        val_loss = _forward_backward(model, loss, xv, yv)
        v = [g.astype(np.float64) for _, _, g in weights]
        g_L = [layer._grads["R"].astype(np.float64) for layer in layers]
        norm = math.sqrt(sum(float(np.vdot(a, a)) for a in v))
        if norm > 0 and xi != 0:
            e = eps / norm
            for layer in layers:
                layer.weight_grad = False
            try:
                for sign in (1.0, -1.0):  # 3. grad_L L_train at W +- e v
                    for (_, p, _), p0, vi in zip(weights, saved, v):
                        np.copyto(p, p0 + sign * e * vi, casting="same_kind")
                    _forward_backward(model, loss, xt, yt)
                    for gl, layer in zip(g_L, layers):
                        gl -= (sign * xi / (2 * e)) * layer._grads["R"]
            finally:
                for layer in layers:
                    layer.weight_grad = True
        for gl, layer in zip(g_L, layers):
            L = layer.soft_L()
            np.copyto(layer._grads["R"], soft_receptive_field_backward(gl.astype(L.dtype), L, layer.centre),
                      casting="same_kind")
    finally:
        _set_arch_grad(model, True)
        for h in holds:
            h.__exit__(None, None, None)
        for (_, p, _), p0 in zip(weights, saved):
            np.copyto(p, p0)
    return val_loss


class BilevelSearch:
    """Alternating DARTS-style optimisation (the paper's Fig. 3.1): per step an R update on a
    validation batch (``order`` 1 or 2, see :func:`arch_gradient`) then a W update on a
    training batch. ``w_optimizer`` must hold only the weights (:func:`weight_parameters`),
    ``r_optimizer`` only the R tensors (:func:`arch_parameters`). ``xi`` (gamma of eq. 4)
    defaults to the W optimizer's learning rate."""

    def __init__(self, model, w_optimizer, r_optimizer, loss=None, order=1, xi=None, eps=0.01):
        if order not in (1, 2):
            raise ValueError(f"order: expected 1 or 2, got {order!r}")
        self.model, self.w_opt, self.r_opt = model, w_optimizer, r_optimizer
        self.loss = loss if loss is not None else SoftmaxCrossEntropy()
        self.order = order
        self.xi = float(xi) if xi is not None else float(getattr(w_optimizer, "lr", 0.01))
        self.eps = float(eps)
        arch_ids = {id(p) for _, p, _ in arch_parameters(model)}
        for name, p, _ in getattr(w_optimizer, "_entries", ()):
            if id(p) in arch_ids:
                raise ValueError(f"w_optimizer: holds the receptive-field parameter {name!r}; build it from "
                                 f"weight_parameters(model)")

    def step(self, train_batch, val_batch):
        """One R update then one W update; returns (train_loss, val_loss)."""
        model = self.model
        val_loss = arch_gradient(model, self.loss, train_batch, val_batch, self.order, self.xi, self.eps)
        self.r_opt.step()
        _set_arch_grad(model, False)
        try:
            train_loss = _forward_backward(model, self.loss, *train_batch)
        finally:
            _set_arch_grad(model, True)
        self.w_opt.step()
        return train_loss, val_loss


def search(model, train, val, epochs, batch_size, w_optimizer, r_optimizer, *, loss=None, order=1, xi=None,
           eps=0.01, transform=None, seed=0, verbose=True, max_steps=None, on_epoch_end=None):
    """Runs :class:`BilevelSearch` for ``epochs`` passes over ``train`` (validation batches drawn
    alongside from ``val``, cycling). train/val: (images, labels). Returns a history dict with
    per-epoch mean train_loss, val_loss and seconds."""
    transform = transform or to_float
    xt, yt = train
    xv, yv = val
    trainer = BilevelSearch(model, w_optimizer, r_optimizer, loss, order, xi, eps)
    hist = {"epoch": [], "train_loss": [], "val_loss": [], "seconds": []}
    with no_input_grad(model):
        for epoch in range(int(epochs)):
            rng = epoch_generator(model, seed, epoch)
            order_t, order_v = rng.permutation(len(xt)), rng.permutation(len(xv))
            steps = len(xt) // batch_size
            if max_steps is not None:
                steps = min(steps, int(max_steps))
            t0 = time.perf_counter()
            tl = vl = 0.0
            for s in range(steps):
                it = order_t[s * batch_size:(s + 1) * batch_size]
                iv = np.take(order_v, np.arange(s * batch_size, (s + 1) * batch_size), mode="wrap")
                a, b = trainer.step((transform(xt[it]), yt[it]), (transform(xv[iv]), yv[iv]))
                tl += a
                vl += b
            sec = time.perf_counter() - t0
            hist["epoch"].append(epoch + 1)
            hist["train_loss"].append(tl / max(steps, 1))
            hist["val_loss"].append(vl / max(steps, 1))
            hist["seconds"].append(sec)
            if verbose:
                print(f"search epoch {epoch + 1}/{epochs} (order {order}): train_loss {tl / max(steps, 1):.4f} "
                      f"val_loss {vl / max(steps, 1):.4f} | {sec:.1f} s, {steps} steps", file=sys.stderr)
            if on_epoch_end is not None:
                on_epoch_end(epoch, hist)
    return hist
