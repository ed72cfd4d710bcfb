"""Layered networks (multilayer perceptrons) built as scalar graphs.

Two granularities, as in the texts:

- ``form="neuron"`` (seed 002): one node per neuron, ``a_l_j = f(sum_i w_l_j_i a_(l-1)_i + b_l_j)``;
- ``form="layer"`` (seed 003): a pre-activation node ``z_l_j`` and an activation node
  ``a_l_j = f(z_l_j)`` for every neuron.

>>> net = mlp([2, 3, 1], hidden="tanh", output="sigmoid", loss="half_sse")
>>> [str(p) for p in net.params[:4]]
['w_1_1_1', 'w_1_1_2', 'b_1_1', 'w_1_2_1']
>>> net.nodes[net.symbol("a_1_1")]
tanh(b_1_1 + w_1_1_1*x_1 + w_1_1_2*x_2)
>>> net.display_name(net.symbol("w_1_1_2"))
'w^{(1)}_{1,2}'
"""

from __future__ import annotations

from functools import cmp_to_key

import sympy as sp

from .functions import ACTIVATIONS, LOSSES, softmax, softmax_cross_entropy_of
from .graph import Network, NetworkError

__all__ = ["mlp"]

_canonical = cmp_to_key(sp.Basic.compare)


def _product(a: sp.Symbol, b: sp.Symbol) -> sp.Expr:
    """``a*b`` for two distinct symbols, in SymPy's canonical order, without the ~50 µs of
    ``Mul``'s general flattening (it dominates building a 784-128-10 net otherwise)."""
    return sp.Mul._from_args(tuple(sorted((a, b), key=_canonical)))


def _activation(name_or_function):
    if callable(name_or_function):
        return name_or_function
    try:
        return ACTIVATIONS[name_or_function]
    except KeyError:
        raise NetworkError(
            f"unknown activation {name_or_function!r}; known: {', '.join(sorted(ACTIVATIONS))}, softmax"
        ) from None


def mlp(
    sizes,
    hidden="sigmoid",
    output="identity",
    loss="half_sse",
    *,
    form: str = "neuron",
    reduction: str = "sum",
) -> Network:
    """A fully connected layered network as a :class:`~symprop.graph.Network`.

    ``sizes`` lists the layer widths from the inputs to the outputs. ``hidden`` and
    ``output`` name activations (see :data:`symprop.functions.ACTIVATIONS`) or are
    callables; ``output="softmax"`` with ``loss="cross_entropy"`` becomes one
    softmax-cross-entropy loss on the logits (seed 000's rule ``y_hat - y``). ``loss`` is a
    name in :data:`symprop.functions.LOSSES`. Names: inputs ``x_i``, targets ``t_j``,
    weights ``w_l_j_i`` (layer l, into neuron j from neuron i), biases ``b_l_j``,
    pre-activations ``z_l_j`` (layer form), activations ``a_l_j``, loss ``E``.
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(n, int) or n < 1 for n in sizes):
        raise NetworkError(f"sizes must be at least two positive integers, got {sizes}")
    if form not in ("neuron", "layer"):
        raise NetworkError(f"form must be 'neuron' or 'layer', not {form!r}")
    if loss not in LOSSES:
        raise NetworkError(f"unknown loss {loss!r}; known: {', '.join(sorted(LOSSES))}")
    fused = output == "softmax" and loss in ("cross_entropy", "softmax_cross_entropy")
    if loss == "softmax_cross_entropy" and output not in ("softmax", "identity", "linear"):
        raise NetworkError("softmax_cross_entropy takes logits: use output='identity' or 'softmax'")
    if loss == "softmax_cross_entropy":
        fused = True

    inputs = [sp.Symbol(f"x_{i}") for i in range(1, sizes[0] + 1)]
    targets = [sp.Symbol(f"t_{j}") for j in range(1, sizes[-1] + 1)]
    display = {}
    nodes: dict[sp.Symbol, sp.Expr] = {}
    params: list[sp.Symbol] = []
    previous = inputs
    depth = len(sizes) - 1
    for l in range(1, depth + 1):
        last = l == depth
        if last:
            f = ACTIVATIONS["identity"] if fused or output == "softmax" else _activation(output)
        else:
            f = _activation(hidden)
        layer = []
        for j in range(1, sizes[l] + 1):
            weights = [sp.Symbol(f"w_{l}_{j}_{i}") for i in range(1, len(previous) + 1)]
            bias = sp.Symbol(f"b_{l}_{j}")
            params += weights + [bias]
            for i, w in enumerate(weights, 1):
                display[w] = f"w^{{({l})}}_{{{j},{i}}}"
            display[bias] = f"b^{{({l})}}_{{{j}}}"
            pre = sp.Add(*[_product(w, a) for w, a in zip(weights, previous)], bias)
            a = sp.Symbol(f"a_{l}_{j}")
            display[a] = f"a^{{({l})}}_{{{j}}}"
            if form == "layer":
                z = sp.Symbol(f"z_{l}_{j}")
                display[z] = f"z^{{({l})}}_{{{j}}}"
                nodes[z] = pre
                pre = z
            nodes[a] = f(pre)
            layer.append(a)
        previous = layer

    E = sp.Symbol("E")
    if fused:
        nodes[E] = softmax_cross_entropy_of(previous, targets)
    else:
        outputs = previous
        if output == "softmax":
            outputs = []
            for k in range(1, len(previous) + 1):
                y = sp.Symbol(f"y_{k}")
                display[y] = f"\\hat{{y}}_{{{k}}}"
                nodes[y] = softmax(k, *previous)
                outputs.append(y)
        if loss == "binary_cross_entropy":
            if len(outputs) != 1:
                raise NetworkError("binary_cross_entropy needs exactly one output")
            nodes[E] = LOSSES[loss](outputs[0], targets[0])
        else:
            nodes[E] = LOSSES[loss](outputs, targets)
    return Network(nodes, loss=E, params=params, inputs=inputs, targets=targets, reduction=reduction, display=display)
