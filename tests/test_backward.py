"""The one backward recursion (symprop.derive.backward) and its fast paths: the vectorised
NumPy backprop of symprop.numeric and the matrix form give the deltas and the gradient the
recursion gives, run on the engine's local partials evaluated at the same point."""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from symprop import mlp
from symprop.derive import backward, local_partial
from symprop.matrix import derive_matrix, random_layered, scalar_values
from symprop.numeric import Evaluator, gradient
import dags


def recursion(net, point, bind=None):
    """Deltas and gradient by derive.backward over numbers: the local partials evaluated
    exactly (Evaluator), summed over the consumers on paths to the loss."""
    ev = Evaluator(net, bind)
    values = ev.forward(point)
    uses = {s: tuple(l for l in net.consumers[s] if l in net.ancestors_of_loss) for s in net.symbols}
    below = [k for k in reversed(net.order) if k != net.loss and k in net.ancestors_of_loss]
    below += [s for s in net.params + net.inputs]
    delta, _ = backward(net.loss, below, uses.__getitem__,
                        lambda l, k: ev.value(local_partial(net, l, k).expr, values),
                        seed=1.0, add=lambda *t: math.fsum(t))
    return delta


TANH = {"g": lambda order, arg: sp.diff(sp.tanh(sp.Symbol("u")), sp.Symbol("u"), order).subs(sp.Symbol("u"), arg)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags.dag_networks(max_hidden=4), st.integers(0, 2**16))
def test_numpy_backprop_is_the_recursion(net, seed):
    point = dags.random_point(net, seed)
    bind = {"g": "tanh"} if any(e.has(dags.G) for e in net.nodes.values()) else None
    try:
        fast = gradient(net, {s: float(v) for s, v in point.items()}, bind=bind)
    except ValueError:  # a point where the network is undefined (log of 0, ...): draw another
        reject()
    slow = recursion(net, point, TANH)
    for k in net.order:
        if k in slow:
            assert fast.deltas[k][0] == pytest.approx(slow[k], rel=1e-9, abs=1e-12)
    for s in net.params + net.inputs:
        assert fast.gradient[s] == pytest.approx(slow[s], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("hidden, output, loss", [
    ("sigmoid", "identity", "half_sse"), ("tanh", "softmax", "cross_entropy"),
    ("relu", "sigmoid", "binary_cross_entropy"), ("softplus", "identity", "mse"),
])
def test_the_matrix_form_is_the_recursion(hidden, output, loss):
    sizes = [3, 4, 2] if loss != "binary_cross_entropy" else [3, 4, 1]
    d = derive_matrix(sizes, hidden, output, loss)
    targets = {"cross_entropy": "onehot", "binary_cross_entropy": "binary"}.get(loss, "normal")
    values = random_layered(sizes, batch=1, seed=5, targets=targets)
    fast = d.gradient(values)
    net = mlp(sizes, hidden, output, loss, form="layer")
    named = {net.symbol(k): v[0] if isinstance(v, list) else v for k, v in scalar_values(values).items()}
    slow = recursion(net, named)
    for l, (dW, db) in enumerate(zip(fast.dW, fast.db), 1):
        for j, i in np.ndindex(dW.shape):
            assert dW[j, i] == pytest.approx(slow[net.symbol(f"w_{l}_{j + 1}_{i + 1}")], rel=1e-9, abs=1e-12)
        for j in range(db.shape[0]):
            assert db[j, 0] == pytest.approx(slow[net.symbol(f"b_{l}_{j + 1}")], rel=1e-9, abs=1e-12)
