"""Optimizers (Kyoto Univ. exercise §5.4) updating parameters in place, plus learning-rate schedules.

Interface
---------
An optimizer is built from (name, param, grad) triples, which every Layer yields::

    opt = Adam(model.parameters(), lr=1e-3, scheduler=StepLR(10, 0.5))   # or Adam(model, ...)
    for epoch in range(epochs):
        opt.set_epoch(epoch)                     # lr = scheduler(epoch, base_lr); no scheduler: unchanged
        for x, y in batches:
            loss.forward(model.forward(x, training=True), y)
            model.backward(loss.backward())      # overwrites the grads the optimizer holds
            opt.step()                           # updates the params in place

The optimizer keeps references to the param and grad arrays, so they must stay
the same objects (Layers guarantee this; ``Layer.astype`` replaces them: build
the optimizer afterwards). ``step()`` works in place with ``out=`` arguments and
one reusable scratch buffer; per-parameter state ("slots": velocity, h, m, v...)
is allocated once, at construction.

SGD, MomentumSGD, AdaDelta and Adam update contiguous float parameters in one C++
pass with the same arithmetic as the NumPy rules here (the same bits), except that
denormals are flushed to zero there: state decaying below the smallest normal
number (1.2e-38 in float32) becomes 0 rather than slowing every step ~20x.

weight_decay=wd adds the L2 term to the gradient before the update rule
(g <- g + wd * W, torch's convention; the grad arrays themselves are not changed).

``state_dict()`` returns arrays only -- ``"step"`` (int64), ``"lr"`` (float64) and
``"<slot>.<param name>"`` for every slot -- so it fits an .npz next to the model's
``state_dict()``; ``load_state_dict`` restores it exactly (training then continues
bit for bit as if never interrupted).

Schedules are callables ``(epoch, base_lr) -> lr`` (StepLR, MultiStepLR, ExponentialLR,
CosineAnnealing); a plain function ``lr(epoch) -> lr`` is accepted too. With a
scheduler, ``lr`` starts at the schedule's epoch-0 value; ``set_epoch(e)`` (at the
start of epoch e) or ``on_epoch_end(e)`` (= ``set_epoch(e + 1)``) moves it on.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from . import _core


def _fusable(p, g):
    """Arrays the fused C++ steps update in place: same float dtype, C-contiguous, p writeable."""
    return (p.dtype == g.dtype and p.dtype in (np.float32, np.float64) and p.flags.c_contiguous
            and g.flags.c_contiguous and p.flags.writeable and p.shape == g.shape)

__all__ = [
    "Optimizer", "SGD", "MomentumSGD", "AdaGrad", "RMSProp", "AdaDelta", "Adam", "NesterovSGD", "Lookahead",
    "optimizer_from_config",
    "Scheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealing", "LambdaLR", "OPTIMIZERS",
]


def _float(v, name, lo=None, hi=None, lo_open=False, hi_open=False):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {v!r}")
    v = float(v)
    bad = not math.isfinite(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}" \
              f"{')' if hi_open or hi is None else ']'}"
        raise ValueError(f"{name}: expected a finite value in {rng}, got {v}")
    return v


# ------------------------------------------------------------------ schedules
class Scheduler:
    """A learning-rate schedule: ``sched(epoch, base_lr) -> lr`` (epochs count from 0)."""

    def __call__(self, epoch, base_lr):
        raise NotImplementedError

    def _args(self):
        return {}

    def config(self):
        return {"class": type(self).__name__, "args": self._args()}


class StepLR(Scheduler):
    """base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, step_size, gamma=0.1):
        self.step_size = operator.index(step_size)
        if self.step_size < 1:
            raise ValueError(f"step_size: expected a positive int, got {step_size}")
        self.gamma = _float(gamma, "gamma", 0.0)

    def __call__(self, epoch, base_lr):
        return base_lr * self.gamma ** (epoch // self.step_size)

    def _args(self):
        return dict(step_size=self.step_size, gamma=self.gamma)


class MultiStepLR(Scheduler):
    """base_lr * gamma ** (number of milestones <= epoch)."""

    def __init__(self, milestones, gamma=0.1):
        self.milestones = sorted(operator.index(m) for m in milestones)
        self.gamma = _float(gamma, "gamma", 0.0)

    def __call__(self, epoch, base_lr):
        return base_lr * self.gamma ** sum(1 for m in self.milestones if m <= epoch)

    def _args(self):
        return dict(milestones=list(self.milestones), gamma=self.gamma)


class ExponentialLR(Scheduler):
    """base_lr * gamma ** epoch."""

    def __init__(self, gamma):
        self.gamma = _float(gamma, "gamma", 0.0)

    def __call__(self, epoch, base_lr):
        return base_lr * self.gamma ** epoch

    def _args(self):
        return dict(gamma=self.gamma)


class CosineAnnealing(Scheduler):
    """eta_min + (base_lr - eta_min) * (1 + cos(pi * min(epoch, T_max) / T_max)) / 2."""

    def __init__(self, T_max, eta_min=0.0):
        self.T_max = operator.index(T_max)
        if self.T_max < 1:
            raise ValueError(f"T_max: expected a positive int, got {T_max}")
        self.eta_min = _float(eta_min, "eta_min", 0.0)

    def __call__(self, epoch, base_lr):
        e = min(epoch, self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * e / self.T_max)) / 2.0

    def _args(self):
        return dict(T_max=self.T_max, eta_min=self.eta_min)


class LambdaLR(Scheduler):
    """Wraps a plain function ``fn(epoch) -> lr`` (the absolute learning rate)."""

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable epoch -> lr, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, epoch, base_lr):
        return self.fn(epoch)

    def config(self):
        return None  # a Python function is not serialisable


_SCHEDULERS = {c.__name__: c for c in (StepLR, MultiStepLR, ExponentialLR, CosineAnnealing)}


# ------------------------------------------------------------------ optimizers
class Optimizer:
    """Base class. Subclasses set ``slots`` (state names) and implement ``_update``."""

    slots: tuple = ()
    n_scratch = 1

    def __init__(self, params, lr, weight_decay=0.0, scheduler=None):
        if hasattr(params, "parameters") and callable(params.parameters):
            params = params.parameters()
        entries, names, seen = [], set(), set()
        for i, item in enumerate(params):
            if not isinstance(item, tuple) or len(item) != 3:
                raise TypeError(f"params[{i}]: expected a (name, param, grad) triple as Layer.parameters() yields, "
                                f"got {type(item).__name__}")
            name, p, g = item
            if not isinstance(name, str):
                raise TypeError(f"params[{i}]: the name must be a str, got {name!r}")
            if name in names:
                raise ValueError(f"params: duplicate name {name!r}")
            for what, a in (("param", p), ("grad", g)):
                if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                    raise TypeError(f"params[{name!r}]: the {what} must be a float ndarray, got {type(a).__name__}"
                                    f"{'' if not isinstance(a, np.ndarray) else ' of dtype ' + str(a.dtype)}")
            if not p.flags.writeable:
                raise ValueError(f"params[{name!r}]: the param array is read-only (it is updated in place)")
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError(f"params[{name!r}]: grad {g.shape} {g.dtype} does not match param {p.shape} {p.dtype}")
            if id(p) in seen:
                raise ValueError(f"params[{name!r}]: the same array is given twice")
            seen.add(id(p))
            names.add(name)
            entries.append((name, p, g))
        if not entries:
            raise ValueError("params: no parameters to optimize")
        self._entries = entries
        self.lr = _float(lr, "lr", 0.0)
        self.base_lr = self.lr
        self.weight_decay = _float(weight_decay, "weight_decay", 0.0)
        if scheduler is not None and not isinstance(scheduler, Scheduler):
            scheduler = LambdaLR(scheduler)
        self.scheduler = scheduler
        self.step_count = 0
        if scheduler is not None:
            self.set_epoch(0)
        self.state = {slot: {name: self._init_slot(slot, p) for name, p, _ in entries} for slot in self.slots}
        self._scratch = {}

    # -- subclasses
    # _fused(name, p, g, wd): the whole update (weight decay included) in one C++
    # pass, same arithmetic as _update; None: _update only.
    _fused = None

    def _init_slot(self, slot, p):
        return np.zeros_like(p)

    def _update(self, name, p, g, tmp):
        raise NotImplementedError

    def _args(self):
        return {}

    # -- public
    def _tmp(self, p):
        """Reusable scratch views shaped like p (one flat buffer per dtype, grown once)."""
        need = p.size * (self.n_scratch + (1 if self.weight_decay else 0))
        buf = self._scratch.get(p.dtype)
        if buf is None or buf.size < need:
            buf = self._scratch[p.dtype] = np.empty(need, p.dtype)
        return [buf[i * p.size:(i + 1) * p.size].reshape(p.shape) for i in range(need // p.size)] if p.size else \
            [np.empty(p.shape, p.dtype) for _ in range(self.n_scratch + 1)]

    def step(self):
        """Applies one update to every parameter, in place."""
        self.step_count += 1
        wd = self.weight_decay
        for name, p, g in self._entries:
            if self._fused is not None and _fusable(p, g):
                self._fused(name, p, g, wd)
                continue
            tmp = self._tmp(p)
            if wd:
                gd = tmp.pop()
                np.multiply(p, wd, out=gd)
                gd += g
                g = gd
            self._update(name, p, g, tmp)

    def zero_grad(self):
        for _, _, g in self._entries:
            g.fill(0)

    def set_epoch(self, epoch):
        """Sets ``lr`` from the scheduler for ``epoch`` (no scheduler: unchanged); returns lr."""
        epoch = operator.index(epoch)
        if self.scheduler is not None:
            self.lr = _float(self.scheduler(epoch, self.base_lr), "scheduler(epoch)", 0.0)
        return self.lr

    def on_epoch_end(self, epoch):
        """Training-loop hook: epoch ``epoch`` (from 0) is done, so sets the lr of epoch + 1."""
        return self.set_epoch(operator.index(epoch) + 1)

    def parameter_names(self):
        return [n for n, _, _ in self._entries]

    def state_dict(self):
        out = {"step": np.array(self.step_count, np.int64), "lr": np.array(self.lr, np.float64)}
        for slot, arrays in self.state.items():
            for name, a in arrays.items():
                out[f"{slot}.{name}"] = a.copy()
        return out

    def load_state_dict(self, state):
        """Restores step, lr and every slot (copied in place); all keys must match."""
        if not hasattr(state, "keys"):
            raise TypeError(f"state: expected a mapping name -> array, got {type(state).__name__}")
        want = {"step": None, "lr": None}
        for slot, arrays in self.state.items():
            for name, a in arrays.items():
                want[f"{slot}.{name}"] = a
        keys = list(state.keys())
        missing = [k for k in want if k not in state]
        unexpected = [k for k in keys if k not in want]
        if missing or unexpected:
            raise ValueError(f"state: missing keys {missing}, unexpected keys {unexpected} for {type(self).__name__}")
        todo = []
        for k, dst in want.items():
            if dst is None:
                continue
            src = np.asarray(state[k])
            if src.shape != dst.shape:
                raise ValueError(f"state[{k!r}]: expected shape {dst.shape}, got {src.shape}")
            todo.append((dst, src))
        step = np.asarray(state["step"])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise ValueError(f"state['step']: expected a non-negative integer scalar, got {step!r}")
        lr = _float(float(np.asarray(state["lr"])), "state['lr']", 0.0)
        for dst, src in todo:
            np.copyto(dst, src, casting="same_kind")
        self.step_count = int(step)
        self.lr = lr

    def config(self):
        """{"class", "args"} with the hyper-parameters (and a serialisable scheduler)."""
        args = dict(lr=self.base_lr, weight_decay=self.weight_decay, **self._args())
        sched = self.scheduler.config() if self.scheduler is not None else None
        args["scheduler"] = sched
        return {"class": type(self).__name__, "args": args}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in dict(lr=self.lr, weight_decay=self.weight_decay,
                                                         **self._args()).items())
        return f"{type(self).__name__}({len(self._entries)} params, {args})"


class SGD(Optimizer):
    """Plain SGD (Kyoto Univ. exercise, eq. 39): W <- W - lr * dE/dW. (The LeNet-5 translation report trains with lr 0.05;
    the Kyoto Univ. exercise suggests 0.01 -- there is no default.)"""

    def __init__(self, params, lr, weight_decay=0.0, scheduler=None):
        super().__init__(params, lr, weight_decay, scheduler)

    def _update(self, name, p, g, tmp):
        t = tmp[0]
        np.multiply(g, self.lr, out=t)
        p -= t

    def _fused(self, name, p, g, wd):
        _core.sgd_step(p, g, self.lr, wd)


class MomentumSGD(Optimizer):
    """SGD with momentum (Kyoto Univ. exercise, eqs. 40-41):
    dW <- momentum * dW - lr * dE/dW;  W <- W + dW  (dW starts at 0).
    Recommended (Kyoto Univ. exercise): lr = 0.01, momentum = 0.9 (the defaults). Slot: "velocity".
    (torch's SGD(momentum) scales differently: it keeps v <- m v + g and steps -lr v.)"""

    slots = ("velocity",)

    def __init__(self, params, lr=0.01, momentum=0.9, weight_decay=0.0, scheduler=None):
        self.momentum = _float(momentum, "momentum", 0.0, 1.0, hi_open=True)
        super().__init__(params, lr, weight_decay, scheduler)

    def _args(self):
        return dict(momentum=self.momentum)

    def _update(self, name, p, g, tmp):
        v, t = self.state["velocity"][name], tmp[0]
        v *= self.momentum
        np.multiply(g, self.lr, out=t)
        v -= t
        p += v

    def _fused(self, name, p, g, wd):
        v = self.state["velocity"][name]
        if not _fusable(v, g):
            raise ValueError(f"state['velocity'][{name!r}]: expected a contiguous {p.dtype} array like the parameter")
        _core.momentum_step(p, g, v, self.lr, self.momentum, wd)


class AdaGrad(Optimizer):
    """AdaGrad (Kyoto Univ. exercise, eqs. 42-43):
    h <- h + g o g;  W <- W - lr * g / sqrt(h)   (h starts at h0).
    Recommended (Kyoto Univ. exercise): lr = 0.001, h0 = 1e-8 (the defaults). Slot: "h"."""

    slots = ("h",)

    def __init__(self, params, lr=0.001, h0=1e-8, weight_decay=0.0, scheduler=None):
        self.h0 = _float(h0, "h0", 0.0, lo_open=True)
        super().__init__(params, lr, weight_decay, scheduler)

    def _init_slot(self, slot, p):
        return np.full_like(p, self.h0)

    def _args(self):
        return dict(h0=self.h0)

    def _update(self, name, p, g, tmp):
        h, t = self.state["h"][name], tmp[0]
        np.multiply(g, g, out=t)
        h += t
        np.sqrt(h, out=t)
        np.divide(g, t, out=t)
        t *= self.lr
        p -= t


class RMSProp(Optimizer):
    """RMSProp (Kyoto Univ. exercise, eqs. 44-45):
    h <- rho h + (1 - rho) g o g;  W <- W - lr * g / (sqrt(h) + eps)   (h starts at 0).
    Recommended (Kyoto Univ. exercise): lr = 0.001, rho = 0.9, eps = 1e-8 (the defaults). Slot: "h"."""

    slots = ("h",)

    def __init__(self, params, lr=0.001, rho=0.9, eps=1e-8, weight_decay=0.0, scheduler=None):
        self.rho = _float(rho, "rho", 0.0, 1.0, hi_open=True)
        self.eps = _float(eps, "eps", 0.0, lo_open=True)
        super().__init__(params, lr, weight_decay, scheduler)

    def _args(self):
        return dict(rho=self.rho, eps=self.eps)

    def _update(self, name, p, g, tmp):
        h, t = self.state["h"][name], tmp[0]
        h *= self.rho
        np.multiply(g, g, out=t)
        t *= 1.0 - self.rho
        h += t
        np.sqrt(h, out=t)
        t += self.eps
        np.divide(g, t, out=t)
        t *= self.lr
        p -= t


class AdaDelta(Optimizer):
    """AdaDelta (Kyoto Univ. exercise, eqs. 46-49):
    h <- rho h + (1 - rho) g o g;  dW <- -sqrt(s + eps) / sqrt(h + eps) o g;
    s <- rho s + (1 - rho) dW o dW;  W <- W + lr * dW   (h, s start at 0).
    Recommended (Kyoto Univ. exercise, from the AdaDelta paper): rho = 0.95, eps = 1e-6 (the
    defaults). AdaDelta needs no learning rate: lr = 1.0 (default) is exactly the
    seed's rule; other values scale the step (for schedules). Slots: "h", "s"."""

    slots = ("h", "s")
    n_scratch = 2

    def __init__(self, params, lr=1.0, rho=0.95, eps=1e-6, weight_decay=0.0, scheduler=None):
        self.rho = _float(rho, "rho", 0.0, 1.0, hi_open=True)
        self.eps = _float(eps, "eps", 0.0, lo_open=True)
        super().__init__(params, lr, weight_decay, scheduler)

    def _args(self):
        return dict(rho=self.rho, eps=self.eps)

    def _update(self, name, p, g, tmp):
        h, s = self.state["h"][name], self.state["s"][name]
        t, d = tmp[0], tmp[1]
        h *= self.rho
        np.multiply(g, g, out=t)
        t *= 1.0 - self.rho
        h += t
        np.add(h, self.eps, out=t)
        np.add(s, self.eps, out=d)
        np.divide(d, t, out=d)
        np.sqrt(d, out=d)
        d *= g                      # d = -dW
        s *= self.rho
        np.multiply(d, d, out=t)
        t *= 1.0 - self.rho
        s += t
        if self.lr != 1.0:
            d *= self.lr
        p -= d

    def _fused(self, name, p, g, wd):
        h, s = self.state["h"][name], self.state["s"][name]
        if not (_fusable(h, g) and _fusable(s, g)):
            raise ValueError(f"state['h'/'s'][{name!r}]: expected contiguous {p.dtype} arrays like the parameter")
        _core.adadelta_step(p, g, h, s, self.lr, self.rho, self.eps, wd)


class Adam(Optimizer):
    """Adam (Kyoto Univ. exercise, eqs. 50-55):
    t <- t + 1;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g o g;
    m^ = m / (1 - b1^t);  v^ = v / (1 - b2^t);  W <- W - lr * m^ / (sqrt(v^) + eps).
    Recommended (Kyoto Univ. exercise, from the Adam paper): lr (alpha) = 0.001, beta1 = 0.9,
    beta2 = 0.999, eps = 1e-8 (the defaults). Slots: "m", "v"; t is ``step_count``."""

    slots = ("m", "v")

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, scheduler=None):
        self.beta1 = _float(beta1, "beta1", 0.0, 1.0, hi_open=True)
        self.beta2 = _float(beta2, "beta2", 0.0, 1.0, hi_open=True)
        self.eps = _float(eps, "eps", 0.0, lo_open=True)
        super().__init__(params, lr, weight_decay, scheduler)

    def _args(self):
        return dict(beta1=self.beta1, beta2=self.beta2, eps=self.eps)

    def _update(self, name, p, g, tmp):
        m, v, t = self.state["m"][name], self.state["v"][name], tmp[0]
        b1, b2, step = self.beta1, self.beta2, self.step_count
        m *= b1
        np.multiply(g, 1.0 - b1, out=t)
        m += t
        v *= b2
        np.multiply(g, g, out=t)
        t *= 1.0 - b2
        v += t
        np.divide(v, 1.0 - b2 ** step, out=t)      # v^
        np.sqrt(t, out=t)
        t += self.eps
        np.divide(m, t, out=t)
        t *= self.lr / (1.0 - b1 ** step)            # lr * m^ / (sqrt(v^) + eps)
        p -= t

    def _fused(self, name, p, g, wd):
        m, v = self.state["m"][name], self.state["v"][name]
        if not (_fusable(m, g) and _fusable(v, g)):
            raise ValueError(f"state['m'/'v'][{name!r}]: expected contiguous {p.dtype} arrays like the parameter")
        b1, b2, step = self.beta1, self.beta2, self.step_count
        _core.adam_step(p, g, m, v, b1, b2, self.eps, 1.0 - b2 ** step, self.lr / (1.0 - b1 ** step), wd)


class NesterovSGD(Optimizer):
    """SGD with (Nesterov) momentum exactly as torch.optim.SGD(momentum, nesterov=True) computes it:
    d = g + wd * p;  b = momentum * b + d (b starts at 0);  p -= lr * (d + momentum * b)
    (nesterov=False: p -= lr * b). Slot: "momentum_buffer".

    params: (name, param, grad) triples (a Layer), or torch-style parameter groups: a list of
    dicts {"params": triples, "lr": lr, "weight_decay": wd} (missing keys: this optimizer's).
    A group's lr follows the schedule in proportion: lr_group * (lr_now / lr). ``freeze(name)``
    leaves a parameter untouched from then on (no step, no momentum, no decay), as torch does
    for a parameter whose grad is None (``unfreeze`` takes it back)."""

    slots = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, scheduler=None, nesterov=True,
                 group_factors=None):
        self.momentum = _float(momentum, "momentum", 0.0, 1.0, hi_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected a bool, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        lr = _float(lr, "lr", 0.0, lo_open=True)
        wd = _float(weight_decay, "weight_decay", 0.0)
        if hasattr(params, "parameters") and callable(params.parameters):
            params = params.parameters()
        params = list(params)
        triples, self._group = [], {}
        if params and isinstance(params[0], dict):
            for i, grp in enumerate(params):
                if not isinstance(grp, dict) or "params" not in grp or set(grp) - {"params", "lr", "weight_decay"}:
                    raise ValueError(f"params[{i}]: expected a dict with 'params' and optionally 'lr', "
                                     f"'weight_decay', got {grp!r:.120}")
                g_lr = _float(grp.get("lr", lr), f"params[{i}]['lr']", 0.0)
                g_wd = _float(grp.get("weight_decay", wd), f"params[{i}]['weight_decay']", 0.0)
                members = grp["params"]
                members = list(members.parameters() if hasattr(members, "parameters") else members)
                for t in members:
                    triples.append(t)
                    if isinstance(t, tuple) and len(t) == 3:
                        self._group[t[0]] = (g_lr / lr, g_wd)
        else:
            triples = params
        super().__init__(triples, lr, wd, scheduler)
        for name, (scale, g_wd) in (group_factors or {}).items():  # a config's groups (optimizer_from_config)
            if name not in {n for n, _, _ in self._entries}:
                raise ValueError(f"group_factors: unknown parameter {name!r}")
            self._group[name] = (_float(scale, f"group_factors[{name!r}]", 0.0), _float(g_wd, "weight_decay", 0.0))
        for name, _, _ in self._entries:
            self._group.setdefault(name, (1.0, wd))
        self._frozen = set()

    def _args(self):
        return dict(momentum=self.momentum, nesterov=self.nesterov,
                    group_factors={n: list(v) for n, v in self._group.items()})

    def group_of(self, name):
        """(lr factor relative to lr, weight decay) of parameter ``name``."""
        return self._group[name]

    def freeze(self, *names):
        unknown = [n for n in names if n not in self._group]
        if unknown:
            raise ValueError(f"names: unknown parameters {unknown}; known: {self.parameter_names()}")
        self._frozen.update(names)

    def unfreeze(self, *names):
        self._frozen.difference_update(names)

    def step(self):
        self.step_count += 1
        mu = self.momentum
        for name, p, g in self._entries:
            if name in self._frozen:
                continue
            scale, wd = self._group[name]
            b, d = self.state["momentum_buffer"][name], self._tmp(p)[0]
            if wd:
                np.multiply(p, p.dtype.type(wd), out=d)
                d += g
            else:
                np.copyto(d, g)
            b *= p.dtype.type(mu)
            b += d
            if self.nesterov:
                d += p.dtype.type(mu) * b
            else:
                np.copyto(d, b)
            d *= p.dtype.type(self.lr * scale)
            p -= d


class Lookahead:
    """A slow copy of a model's weights pulled towards the fast ones: ``update(decay)`` sets
    slow = decay * slow + (1 - decay) * fast, then fast = slow, over every float parameter and
    buffer (BatchNorm's running statistics included; integer buffers are left alone). With
    decay 1 it restores the slow copy. (The lookahead of the airbench CIFAR-10 recipe: every
    5 steps, decay 0.95^5 (t / T)^3.)"""

    def __init__(self, model):
        self._live = [a for a in list(model.params.values()) + list(model.buffers.values()) if a.dtype.kind == "f"]
        self._slow = [a.copy() for a in self._live]

    def update(self, decay):
        decay = _float(decay, "decay", 0.0, 1.0)
        for slow, live in zip(self._slow, self._live):
            slow *= slow.dtype.type(decay)
            slow += slow.dtype.type(1.0 - decay) * live
            np.copyto(live, slow)


OPTIMIZERS = {c.__name__: c for c in (SGD, MomentumSGD, AdaGrad, RMSProp, AdaDelta, Adam, NesterovSGD)}


def optimizer_from_config(cfg, params):
    """Rebuilds an optimizer from ``Optimizer.config()`` over ``params`` (a Layer or triples)."""
    if not isinstance(cfg, dict) or cfg.get("class") not in OPTIMIZERS:
        raise ValueError(f"cfg: expected {{'class': one of {sorted(OPTIMIZERS)}, 'args': ...}}, got {cfg!r:.200}")
    args = dict(cfg.get("args", {}))
    sched = args.pop("scheduler", None)
    if sched is not None:
        if not isinstance(sched, dict) or sched.get("class") not in _SCHEDULERS:
            raise ValueError(f"cfg['args']['scheduler']: unknown scheduler {sched!r:.200}")
        sched = _SCHEDULERS[sched["class"]](**sched.get("args", {}))
    return OPTIMIZERS[cfg["class"]](params, scheduler=sched, **args)
