"""Fusions of multi-node patterns back into one layer, before the op-by-op conversion.

GELU: both torch exporters below opset 20 expand ``F.gelu`` into elementwise nodes:

* exact: ``Div(x, sqrt 2)`` (or ``Mul(x, 1/sqrt 2)``) -> ``Erf`` -> ``Add(., 1)`` -> two ``Mul``
  with ``x`` and ``0.5`` in either order;
* tanh:  ``Mul(sqrt(2/pi), Add(x, Mul(0.044715, Pow(x, 3) or x*x*x)))`` -> ``Tanh`` -> ``Add(., 1)``
  -> the same two ``Mul``.

A match becomes one synthetic ``Gelu`` node (the ONNX 20 op) reading ``x`` and writing the
last ``Mul``'s output, so the import runs the one-pass C++ kernel instead of five NumPy
passes. The intermediate values must have no other consumer (else nothing is fused and
the pieces are converted one by one: Erf, Tanh and the arithmetic are supported alone too).
"""
from __future__ import annotations

import math

__all__ = ["fuse_gelu"]


class _Ctx:
    def __init__(self, nodes, consts, outputs):
        self.nodes, self.consts, self.outputs = nodes, consts, set(outputs)
        self.producer = {o: n for n in nodes for o in n.outputs if o}
        self.consumers = {}
        for n in nodes:
            for i in n.inputs:
                if i:
                    self.consumers.setdefault(i, []).append(n)

    def scalar(self, name):
        """The value of a one-element constant, or None."""
        c = self.consts(name)
        if c is None or c.size != 1 or c.dtype.kind != "f":
            return None
        return float(c.reshape(-1)[0])

    def private(self, value):
        """Whether ``value`` feeds exactly one node and is not a graph output."""
        return value not in self.outputs and len(self.consumers.get(value, ())) == 1

    def terms(self, value, used, depth=0):
        """Flattens a product: the factors of ``value`` (value names and float scalars), following
        private Mul / Div-by-constant / Pow(., 3) nodes; ``used`` collects the nodes followed."""
        node = self.producer.get(value)
        if depth > 8 or node is None or (depth and not self.private(value)):
            return [value]
        if node.op == "Mul" and len(node.inputs) == 2:
            out = []
            for i in node.inputs:
                s = self.scalar(i)
                out += [s] if s is not None else self.terms(i, used, depth + 1)
            used.append(node)
            return out
        if node.op == "Div" and len(node.inputs) == 2 and self.scalar(node.inputs[1]) not in (None, 0.0):
            used.append(node)
            return self.terms(node.inputs[0], used, depth + 1) + [1.0 / self.scalar(node.inputs[1])]
        if node.op == "Pow" and self.scalar(node.inputs[1]) == 3.0:
            used.append(node)
            return [node.inputs[0]] * 3
        return [value]


def _split(terms):
    """(product of the scalar factors, sorted list of the value factors)."""
    scale, names = 1.0, []
    for t in terms:
        if isinstance(t, float):
            scale *= t
        else:
            names.append(t)
    return scale, sorted(names)


def _close(a, b):
    return abs(a - b) <= 1e-5 * abs(b)


def _one_plus(ctx, value, used):
    """If ``value`` = Add(v, 1) with v private, returns v."""
    node = ctx.producer.get(value)
    if node is None or node.op != "Add" or len(node.inputs) != 2:
        return None
    for a, b in (node.inputs, node.inputs[::-1]):
        if ctx.scalar(b) == 1.0 and ctx.private(a):
            used.append(node)
            return a
    return None


def _match(ctx, top):
    """A GELU ending at node ``top`` (a Mul): (x, approximate, nodes) or None."""
    used = [top]
    # the outer product x * 0.5 * (1 + f): gather its factors without descending into the Add
    factors = []
    for i in top.inputs:
        s = ctx.scalar(i)
        if s is not None:
            factors.append(s)
            continue
        node = ctx.producer.get(i)
        if node is not None and node.op == "Mul" and ctx.private(i):
            used.append(node)
            for j in node.inputs:
                s2 = ctx.scalar(j)
                factors.append(s2 if s2 is not None else j)
        else:
            factors.append(i)
    scale, names = _split(factors)
    if len(names) != 2 or not _close(scale, 0.5):
        return None
    for x, s in (names, names[::-1]):
        inner = _one_plus(ctx, s, used)
        if inner is None:
            continue
        f = ctx.producer.get(inner)
        if f is None or f.op not in ("Erf", "Tanh"):
            continue
        arg_used = []
        scale2, args = _split(ctx.terms(f.inputs[0], arg_used))
        if f.op == "Erf" and args == [x] and _close(scale2, 1 / math.sqrt(2)):
            return x, "none", used + [f] + arg_used
        if f.op == "Tanh" and len(args) == 1 and _close(scale2, math.sqrt(2 / math.pi)):
            add = ctx.producer.get(args[0])
            if add is None or add.op != "Add" or not ctx.private(args[0]):
                continue
            for a, b in (add.inputs, add.inputs[::-1]):
                cube_used = []
                c3, cube = _split(ctx.terms(b, cube_used))
                if a == x and cube == [x, x, x] and _close(c3, 0.044715):
                    return x, "tanh", used + [f, add] + arg_used + cube_used
    return None


def fuse_gelu(nodes, consts, outputs, make_node):
    """Replaces every GELU expansion in ``nodes`` (a topologically sorted list) by one Gelu node
    (``make_node(name, x, y, approximate)``); returns the new list."""
    ctx = _Ctx(nodes, consts, outputs)
    drop, insert = set(), {}
    for node in nodes:
        if node.op != "Mul" or id(node) in drop:
            continue
        m = _match(ctx, node)
        if m is None:
            continue
        x, approximate, used = m
        if any(id(n) in drop for n in used):
            continue
        # every intermediate (all outputs but the top's) must stay inside the pattern
        inside = {id(n) for n in used}
        ok = all(all(id(c) in inside for c in ctx.consumers.get(o, ())) and o not in ctx.outputs
                 for n in used if n is not node for o in n.outputs)
        if not ok:
            continue
        drop.update(inside)
        insert[id(node)] = make_node(node.name, x, node.outputs[0], approximate)
    out = []
    for node in nodes:
        if id(node) in insert:
            out.append(insert[id(node)])
        elif id(node) not in drop:
            out.append(node)
    return out

