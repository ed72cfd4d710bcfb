"""The numeric layer against independent references.

References: ``sympy.diff`` of ``functions.explicit`` of the fully substituted loss (and of
the loss with one node kept as a symbol, for deltas), evaluated with 30-digit floats;
central differences; closed forms at pre-activations of +-1000. Every test runs with NumPy
raising on overflow, division by zero and invalid values, and with warnings as errors.
"""

import math
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symprop import Network, functions as F, mlp
from symprop import numeric as N, report
from symprop.spec import FUNCTIONS, parse_expression
from symprop.graph import NetworkError
from symprop.numeric import NumericError
import seeds
from example_files import NETWORKS


@pytest.fixture(autouse=True)
def strict_numpy():
    """Overflow, 0/0 and x/0 raise; any warning fails the test (underflow to 0 is fine)."""
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# -- an independent reference ----------------------------------------------------------------

def bound(expr, bind):
    """Replace generic functions (and their derivatives) by the bound activation."""
    u = sp.Dummy("u")
    for a in expr.atoms(F.GenericFunction):
        cls = type(a)
        f = sp.diff(F.explicit(F.activation(bind[cls.base_name])(u)), u, cls.order)
        expr = expr.replace(cls, sp.Lambda(u, f))
    return expr


def evaluate(expr, point, bind):
    point = {s: sp.Float(v, 30) for s, v in point.items()}
    value = bound(F.explicit(expr), bind).xreplace(point)
    return float(sp.re(sp.N(value, 30)))


def substituted(net, keep=None):
    """The loss in leaves only, except the node ``keep``, which stays a symbol."""
    full = net.nodes[net.loss]
    for k in reversed(net.order):
        if k != keep:
            full = full.xreplace({k: net.nodes[k]})
    return full


def diff(expr, s):
    """sympy.diff in real symbols: |u|' is then sign(u), not re/im derivatives (defined
    functions such as softsign use abs)."""
    real = {x: sp.Dummy(x.name, real=True) for x in expr.free_symbols}
    return sp.diff(expr.xreplace(real), real.get(s, s)).xreplace({r: x for x, r in real.items()})


def reference_forward(net, point, bind):
    values = dict(point)
    for k in net.order:
        values[k] = evaluate(net.nodes[k], values, bind)
    return values


def reference(net, point, bind, deltas=True):
    """(loss, {node: value}, {node: delta}, {param or input: dE/d}) for one sample."""
    values = reference_forward(net, point, bind)
    loss_full = bound(F.explicit(substituted(net)), bind)
    grads = {s: evaluate(diff(loss_full, s), point, bind) for s in net.params + net.inputs}
    if not deltas:
        return values[net.loss], values, None, grads
    deltas = {net.loss: 1.0}
    for k in net.order[:-1] if net.order[-1] == net.loss else net.order:
        kept = bound(F.explicit(substituted(net, keep=k)), bind)
        deltas[k] = evaluate(diff(kept, k), {**point, k: values[k]}, bind)
    return values[net.loss], values, deltas, grads


def close(a, b, rel=1e-12, floor=1e-2):
    """Relative agreement; near zero, where cancelling terms of order 1 leave rounding
    noise of order 1e-16, an absolute ``rel * floor``."""
    return abs(a - b) <= rel * max(abs(a), abs(b), floor)


# -- random DAG networks ---------------------------------------------------------------------

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "softplus", "identity", "g", "max", "min", "product", "exp"]
LOSSES = ["half_sse", "mse", "softmax_cross_entropy", "cross_entropy_softmax_nodes", "cross_entropy_sigmoids",
          "binary_cross_entropy_node", "binary_cross_entropy_inline"]
BINDINGS = ["sigmoid", "tanh", "relu", "leaky_relu", "softplus", "identity"]


@st.composite
def networks(draw, max_hidden=5):
    """A random DAG: fan-out, skip connections (to later nodes and to the loss), shared
    weights, biases, every activation and loss, both reductions, a binding for g."""
    inputs = [sp.Symbol(f"x_{i}") for i in range(1, draw(st.integers(1, 3)) + 1)]
    weights = [sp.Symbol(f"w_{i}") for i in range(1, draw(st.integers(2, 5)) + 1)]  # few: shared
    biases = []
    nodes, available = {}, list(inputs)
    g = F.generic("g")
    for k in range(1, draw(st.integers(min(2, max_hidden), max_hidden)) + 1):
        reads = draw(st.lists(st.sampled_from(available), min_size=1, max_size=3, unique=True))
        u = sp.Add(*[draw(st.sampled_from(weights)) * r for r in reads])
        if draw(st.booleans()):
            biases.append(sp.Symbol(f"b_{k}"))
            u += biases[-1]
        other = draw(st.sampled_from(weights)) * draw(st.sampled_from(available))
        act = draw(st.sampled_from(ACTIVATIONS))
        expr = {
            "sigmoid": lambda: F.sigmoid(u), "tanh": lambda: sp.tanh(u), "relu": lambda: F.relu(u),
            "leaky_relu": lambda: F.leaky_relu(u, sp.Rational(1, 10)), "softplus": lambda: F.softplus(u),
            "identity": lambda: u, "g": lambda: g(u), "max": lambda: F.maximum(u, other),
            "min": lambda: F.minimum(u, other), "product": lambda: u * draw(st.sampled_from(available)),
            "exp": lambda: sp.exp(u / 4),
        }[act]()
        z = sp.Symbol(f"z_{k}")
        nodes[z] = expr
        available.append(z)
    hidden = [s for s in available if s not in inputs]
    outs = [hidden[-1]] + draw(st.lists(st.sampled_from(hidden[:-1]), max_size=2, unique=True)) if len(hidden) > 1 else [hidden[-1]]
    loss = draw(st.sampled_from(LOSSES))
    targets = [sp.Symbol(f"t_{j}") for j in range(1, len(outs) + 1)]
    E = sp.Symbol("E")
    if loss == "softmax_cross_entropy":
        nodes[E] = F.softmax_cross_entropy_of(outs, targets)
    elif loss == "cross_entropy_softmax_nodes":
        probs = [sp.Symbol(f"p_{j}") for j in range(1, len(outs) + 1)]
        nodes.update({p: F.softmax(j, *outs) for j, p in enumerate(probs, 1)})
        nodes[E] = F.cross_entropy(probs, targets)
    elif loss == "cross_entropy_sigmoids":
        nodes[E] = F.cross_entropy([F.sigmoid(o) for o in outs], targets)
    elif loss == "binary_cross_entropy_node":
        p = sp.Symbol("p")
        nodes[p] = F.sigmoid(outs[0])
        nodes[E] = F.binary_cross_entropy(p, targets[0])
        targets = targets[:1]
    elif loss == "binary_cross_entropy_inline":
        nodes[E] = F.binary_cross_entropy(F.sigmoid(outs[0]), targets[0])
        targets = targets[:1]
    else:
        nodes[E] = getattr(F, loss)(outs, targets)
    if draw(st.booleans()):  # a weight-decay term: a parameter read by the loss itself
        nodes[E] = nodes[E] + sp.Rational(1, 100) * weights[0] ** 2
    used = set().union(*[e.free_symbols for e in nodes.values()])
    params = [p for p in weights + biases if p in used]
    reduction = draw(st.sampled_from(["sum", "mean"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a weight used only off the loss's paths is fine here
        net = Network(nodes, loss=E, params=params, inputs=inputs, targets=targets, reduction=reduction)
    return net, {"g": draw(st.sampled_from(BINDINGS))}, draw(st.integers(0, 2**32 - 1))


def kink_arguments(net):
    """The expressions whose sign switches a branch: relu, leaky_relu, step, max, min."""
    found = []
    for expr in net.nodes.values():
        for a in expr.atoms(F.relu, F.leaky_relu, F.step):
            found.append(a.args[0])
        for a in expr.atoms(F.maximum, F.minimum):
            found.append(a.args[0] - a.args[1])
    return found


def random_points(net, bind, seed, m=1):
    """``m`` samples of inputs and targets and one set of parameters, each sample away
    from every kink (|switching argument| > 1e-3) so central differences are fair."""
    rng = np.random.default_rng(seed)
    kinks = kink_arguments(net)
    if any(isinstance(a, F.GenericFunction) for e in net.nodes.values() for a in e.atoms(F.GenericFunction)) and bind["g"] in ("relu", "leaky_relu"):
        kinks += [a.args[0] for e in net.nodes.values() for a in e.atoms(F.GenericFunction)]
    params = {p: float(rng.uniform(-1, 1)) for p in net.params}
    samples = []
    for _ in range(50 * m):
        point = {**params, **{x: float(rng.uniform(-1, 1)) for x in net.inputs}}
        raw = rng.uniform(0.1, 1, len(net.targets))
        point.update({t: float(r / raw.sum()) for t, r in zip(net.targets, raw)})
        values = reference_forward(net, point, bind)
        if all(abs(evaluate(a, values, bind)) > 1e-3 for a in kinks):
            samples.append(point)
            if len(samples) == m:
                return samples
    return None


def as_batch(samples):
    keys = samples[0]
    return {s: (samples[0][s] if s.name[0] in "wb" else [p[s] for p in samples]) for s in keys}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(networks(max_hidden=5))
def test_random_dags_match_sympy_diff_and_central_differences(case):
    net, bind, seed = case
    points = random_points(net, bind, seed)
    if points is None:
        return
    point = points[0]
    result = N.gradient(net, point, bind=bind)
    loss, values, deltas, grads = reference(net, point, bind)
    assert close(result.loss, loss)
    for k in net.order:
        if k not in N._probability_nodes(net):  # clipped only where it underflows; not here
            assert close(float(result.values[k][0]), values[k]), k
        assert close(float(result.deltas[k][0]), deltas[k]), k
    for s in net.params + net.inputs:
        assert close(result.gradient[s], grads[s]), (s, result.gradient[s], grads[s])
    checked = N.check(net, point, bind=bind)
    assert checked.passed
    for row in checked.rows:
        assert row.rel_error <= N.GOOD, row
        assert row.engine == result.gradient[row.name]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(networks(max_hidden=4))
def test_batch_is_the_sum_or_mean_of_samples(case):
    net, bind, seed = case
    samples = random_points(net, bind, seed, m=3)
    if samples is None:
        return
    batch = N.gradient(net, as_batch(samples), bind=bind)
    singles = [N.gradient(net, p, bind=bind) for p in samples]
    scale = 1 / 3 if net.reduction == "mean" else 1
    assert batch.batched and not singles[0].batched
    assert close(batch.loss, scale * sum(r.loss for r in singles))
    for s in net.params + net.inputs:
        assert close(batch.gradient[s], scale * sum(r.gradient[s] for r in singles)), s
    for k in net.order:
        assert np.allclose(batch.values[k], [float(r.values[k][0]) for r in singles], rtol=1e-13, atol=0)
        assert np.allclose(batch.deltas[k], [float(r.deltas[k][0]) for r in singles], rtol=1e-13, atol=1e-300)
    assert N.check(net, as_batch(samples), bind=bind).passed


# -- the examples of the texts ---------------------------------------------------------------

def seed002_at_a_point():
    net, g, z, w, E = seeds.seed002()
    y = net.targets
    rng = np.random.default_rng(2)
    point = {p: float(rng.uniform(-1, 1)) for p in net.params}
    point.update({z[6]: 0.7, z[7]: -0.4, y[0]: 0.0, y[1]: 1.0, y[2]: 0.0})
    return net, point


@pytest.mark.parametrize("bind", ["sigmoid", "tanh"])
def test_seed002_seven_neurons(bind):
    net, point = seed002_at_a_point()
    result = N.gradient(net, point, bind={"g": bind})
    loss, _, _, grads = reference(net, point, {"g": bind}, deltas=False)
    assert close(result.loss, loss)
    for s in net.params:
        assert close(result.gradient[s], grads[s])
    # dE/dz_2 = y_hat_2 - y_2 (seed 000's rule, per sample)
    z = [net.symbol(f"z_{i}") for i in (1, 2, 3)]
    logits = [float(result.values[k][0]) for k in z]
    y_hat = np.exp(logits) / np.exp(logits).sum()
    assert close(float(result.deltas[z[1]][0]), y_hat[1] - 1)
    assert N.check(net, point, bind={"g": bind}).passed


def test_generic_needs_a_binding():
    net, point = seed002_at_a_point()
    with pytest.raises(NumericError, match=r"generic function g .*--bind g=tanh.*\[bind\] g"):
        N.gradient(net, point)
    with pytest.raises(NumericError, match="cannot bind g.*'cosh'"):
        N.gradient(net, point, bind={"g": "cosh"})


@pytest.mark.parametrize("form, reduction", [("neuron", "sum"), ("layer", "mean")])
def test_seed004_mlp_softmax_cross_entropy_over_a_batch(form, reduction):
    net = mlp([3, 4, 3], hidden="tanh", output="softmax", loss="cross_entropy", form=form, reduction=reduction)
    rng = np.random.default_rng(4)
    params = {p: float(rng.normal(0, 0.5)) for p in net.params}
    labels = [0, 2]
    samples = [
        {**params, **{x: float(rng.normal()) for x in net.inputs},
         **{t: float(j == c) for j, t in enumerate(net.targets)}}
        for c in labels
    ]
    batch = N.gradient(net, as_batch(samples))
    scale = 1 / 2 if reduction == "mean" else 1
    refs = [reference(net, p, {}, deltas=False) for p in samples]
    assert close(batch.loss, scale * sum(r[0] for r in refs))
    for s in net.params:
        assert close(batch.gradient[s], scale * sum(r[3][s] for r in refs)), s
    assert N.check(net, as_batch(samples)).passed


EXAMPLES = NETWORKS  # the [nodes] spec files among the examples


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_specs_pass_the_gradient_check(path):
    from symprop.spec import load_spec

    spec = load_spec(path)
    net = spec.network
    if any(s not in spec.values for s in net.leaves):
        pytest.skip("the example gives no values for every leaf")
    bind = dict(spec.bind)
    bind.update({g: "tanh" for g in spec.generics if g not in bind})
    point = {s: v for s, v in spec.values.items()}
    result = N.gradient(net, point, bind=bind)
    samples = [point] if not result.batched else [
        {s: (v[i] if isinstance(v, tuple) else v) for s, v in point.items()} for i in range(len(result.values[net.loss]))
    ]
    if any(abs(evaluate(a, reference_forward(net, p, bind), bind)) < 1e-3 for p in samples for a in kink_arguments(net)):
        pytest.skip("the example's values sit at a kink")
    scale = 1 / len(samples) if net.reduction == "mean" else 1
    refs = [reference(net, p, bind, deltas=False) for p in samples]
    for s in net.params:
        assert close(result.gradient[s], scale * sum(r[3][s] for r in refs)), s
    assert N.check(net, point, bind=bind).passed


# -- +-1000: stable forms --------------------------------------------------------------------

def test_numpy_functions_at_1000():
    f = {**F.numpy_namespace(), "log_softmax": N._log_softmax}  # log_softmax: the compiled programs' own
    x = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0])
    assert f["sigmoid"](x).tolist() == [0.0, 1 / (1 + math.e), 0.5, 1 / (1 + math.exp(-1)), 1.0]
    assert np.allclose(f["softplus"](x), [0.0, math.log1p(math.exp(-1)), math.log(2), 1 + math.log1p(math.exp(-1)), 1000.0], rtol=1e-15)
    assert f["softmax"](1, (1000.0, 0.0, -1000.0)) == 1.0 and f["softmax"](3, (1000.0, 0.0, -1000.0)) == 0.0
    assert f["softmax_cross_entropy"](2, 1000.0, -1000.0, 0.0, 1.0) == 2000.0
    assert f["log_softmax"](2, (1000.0, -1000.0)) == -2000.0
    assert f["step"](x).tolist() == [0, 0, 0, 1, 1] and f["relu"](x).tolist() == [0, 0, 0, 1, 1000]
    assert f["leaky_relu"](x, 0.1).tolist() == [-100, -0.1, 0, 1, 1000]
    # the tie rule of functions.py: max(a, b) is a when a >= b
    assert f["maximum"](1.0, 1.0) == 1.0 and f["minimum"](np.array([1.0, 2.0]), 2.0).tolist() == [1.0, 2.0]


def softplus(u):
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


@pytest.mark.parametrize("u", [-1000.0, -40.0, 40.0, 1000.0])
@pytest.mark.parametrize("t", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("as_node", [True, False])
def test_binary_cross_entropy_of_a_sigmoid_at_1000(u, t, as_node):
    x, w, tt, p, E = sp.symbols("x w t p E")
    if as_node:
        nodes = {p: F.sigmoid(w * x), E: F.binary_cross_entropy(p, tt)}
    else:
        nodes = {E: F.binary_cross_entropy(F.sigmoid(w * x), tt)}
    net = Network(nodes, loss=E, params=[w], inputs=[x], targets=[tt])
    result = N.gradient(net, {x: 1.0, w: u, tt: t})
    # exact: E = t softplus(-u) + (1 - t) softplus(u) and dE/du = sigmoid(u) - t
    assert close(result.loss, t * softplus(-u) + (1 - t) * softplus(u), rel=1e-15, floor=1e-300)
    expected = (1 / (1 + math.exp(-u)) if u > -700 else 0.0) - t
    assert abs(result.gradient[w] - expected) <= 2e-16
    assert abs(result.gradient[x] - expected * u) <= 2e-16 * abs(u)


@pytest.mark.parametrize("as_nodes", [True, False])
def test_softmax_cross_entropy_at_1000(as_nodes):
    z = sp.symbols("z_1:4")
    t = sp.symbols("t_1:4")
    a, E = sp.Symbol("a"), sp.Symbol("E")
    logits = {sp.Symbol(f"l_{i}"): a * zi for i, zi in enumerate(z, 1)}
    ls = list(logits)
    if as_nodes:
        probs = {sp.Symbol(f"p_{j}"): F.softmax(j, *ls) for j in (1, 2, 3)}
        nodes = {**logits, **probs, E: F.cross_entropy(list(probs), t)}
    else:
        nodes = {**logits, E: F.softmax_cross_entropy_of(ls, t)}
    net = Network(nodes, loss=E, params=[a], inputs=list(z), targets=list(t))
    point = {a: 1000.0, z[0]: 1.0, z[1]: -1.0, z[2]: 0.0, t[0]: 0.0, t[1]: 1.0, t[2]: 0.0}
    result = N.gradient(net, point)
    assert result.loss == 2000.0  # -log softmax_2 = 1000 - (-1000), exactly
    # dE/dl_j = y_hat_j - t_j: (1, 0, 0) - (0, 1, 0); dE/da = sum_j (y_hat_j - t_j) z_j = 1 + 1
    assert abs(result.gradient[a] - 2.0) <= 1e-15
    assert [abs(result.gradient[zi] - g) <= 1e-12 for zi, g in zip(z, (1000.0, -1000.0, 0.0))] == [True] * 3


@pytest.mark.parametrize("act", [F.sigmoid, sp.tanh, F.softplus])
@pytest.mark.parametrize("u", [-1000.0, 1000.0])
def test_saturated_hidden_units_are_finite(act, u):
    x, w, v, h, E = sp.symbols("x w v h E")
    net = Network({h: act(w * x), E: (v * h) ** 2 / 2}, loss=E, params=[w, v], inputs=[x])
    result = N.gradient(net, {x: 1.0, w: u, v: 1.0})
    value = {F.sigmoid: float(u > 0), sp.tanh: math.copysign(1, u), F.softplus: max(u, 0.0)}[act]
    assert float(result.values[h][0]) == value
    slope = {F.sigmoid: 0.0, sp.tanh: 0.0, F.softplus: float(u > 0)}[act]
    assert result.gradient[w] == value * slope and result.gradient[v] == value**2


def test_softmax_cross_entropy_targets_must_sum_to_one():
    net = mlp([2, 2], output="identity", loss="softmax_cross_entropy")
    point = {s: 0.5 for s in net.inputs + net.params}
    with pytest.raises(NumericError, match=r"targets t_1 \+ t_2 sum to 0.8 \(sample 2\), not 1; .*y_hat - t"):
        N.gradient(net, {**point, "t_1": [1.0, 0.3], "t_2": [0.0, 0.5]})


# -- values ----------------------------------------------------------------------------------

def small_net():
    x, t, w, b, h, E = sp.symbols("x t w b h E")
    return Network({h: F.sigmoid(w * x + b), E: (t - h) ** 2 / 2}, loss=E, params=[w, b], inputs=[x], targets=[t])


@pytest.mark.parametrize("values, message", [
    ({"x": 1.0, "t": 0.0, "w": 1.0}, "no value for param b"),
    ({"x": 1.0, "t": 0.0, "w": [1.0, 2.0], "b": 0.0}, "parameter w has a list of values"),
    ({"x": [1.0, 2.0], "t": [0.0, 1.0, 1.0], "w": 1.0, "b": 0.0}, "t has 3 samples but x has 2"),
    ({"x": 1.0, "t": 0.0, "w": 1.0, "b": 0.0, "h": 1.0}, "h is a node"),
    ({"x": float("nan"), "t": 0.0, "w": 1.0, "b": 0.0}, "the value of x is not finite"),
    ({"x": "1", "t": 0.0, "w": 1.0, "b": 0.0, "q": 1}, "no symbol named 'q'"),
])
def test_bad_values_name_the_symbol(values, message):
    with pytest.raises(Exception, match=message):
        N.gradient(small_net(), values)


def test_non_finite_node_is_named():
    x, w, h, E = sp.symbols("x w h E")
    net = Network({h: sp.log(w * x), E: h}, loss=E, params=[w], inputs=[x])
    with np.errstate(divide="ignore"), pytest.raises(NumericError, match="the value of node h is -inf"):
        N.gradient(net, {x: 0.0, w: 1.0})


def test_json_shapes():
    net = small_net()
    one = report.json(N.gradient(net, {"x": 1.0, "t": 0.0, "w": 0.5, "b": 0.0}))
    assert list(one) == ["loss", "values", "deltas", "gradient"]
    assert list(one["values"]) == ["h", "E"] and list(one["gradient"]) == ["w", "b", "x"]
    assert isinstance(one["values"]["h"], float)
    many = report.json(N.gradient(net, {"x": [1.0, 2.0], "t": [0.0, 1.0], "w": 0.5, "b": 0.0}))
    assert len(many["values"]["h"]) == 2 and len(many["deltas"]["E"]) == 2 and isinstance(many["loss"], float)


# -- gradient check --------------------------------------------------------------------------

def test_check_names_a_wrong_user_gradient_and_shows_its_paths():
    net = small_net()
    point = {"x": 0.8, "t": 1.0, "w": 0.5, "b": -0.2}
    symbols = {s.name: s for s in net.symbols}
    right = parse_expression("(h - t)*h*(1 - h)*x", symbols, FUNCTIONS)
    c = N.check(net, point, against={"w": right, "b": parse_expression("(h - t)*h*x", symbols, FUNCTIONS)})
    assert [r.verdict for r in c.rows] == ["good", "good"]
    assert [(str(r.name), r.failed) for r in c.against] == [("w", False), ("b", True)]
    assert c.failures == ["b"] and not c.passed
    (term,) = c.against[1].paths
    assert [str(s) for s in term.path] == ["b", "h", "E"]
    h = float(N.gradient(net, point).values[net.symbol("h")][0])
    assert close(term.value, (h - 1) * h * (1 - h))  # the engine's single path term
    text = report.text(c)
    assert "∂E/∂h·∂h/∂b" in text and "FAILED: b" in text
    assert report.json(c)["against"]["b"]["verdict"] in ("suspicious", "wrong")


def test_check_catches_a_wrong_backward_pass():
    """Break the compiled backward pass on purpose: the check must fail and say where."""
    x, w, v, h, E = sp.symbols("x w v h E")
    net = Network({h: sp.tanh(w * x), E: (v * h - 1) ** 2}, loss=E, params=[w, v], inputs=[x])
    point = {x: 0.7, w: 0.3, v: 2.0}
    program = N._program(net)
    broken = next(p for p in program.backward if p.node == h)
    args, fn = broken.common
    broken.common = (args, lambda *a: 2 * fn(*a))  # ∂h/∂w off by a factor 2
    try:
        c = N.check(net, point)
    finally:
        broken.common = (args, fn)
    assert c.failures == ["w"]
    (term,) = c.rows[0].paths
    assert [str(s) for s in term.path] == ["w", "h", "E"]
    assert close(term.value, c.rows[0].engine)  # the path the user should look at


# -- gradient descent ------------------------------------------------------------------------

def regression(m=8, seed=0):
    x, t, w, b, E = sp.symbols("x t w b E")
    net = Network({E: (w * x + b - t) ** 2 / 2}, loss=E, params=[w, b], inputs=[x], targets=[t], reduction="mean")
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-1, 1, m)
    return net, {x: xs.tolist(), t: (3 * xs - 1).tolist(), w: 0.0, b: 0.0}


def test_one_step_is_w_minus_lr_gradient():
    net, values = regression()
    g = N.gradient(net, values)
    d = N.step(net, values, lr=0.1)
    for p in net.params:
        assert d.params[p] == values[p] - 0.1 * g.gradient[p]
        assert d.gradient[p] == g.gradient[p]
    assert d.loss_before == g.loss and d.loss_after < d.loss_before
    after = N.gradient(net, {**values, **d.params})
    assert d.loss_after == after.loss


def test_steps_and_only():
    net, values = regression()
    w, b = net.params
    many = N.step(net, values, lr=0.5, steps=3)
    point = dict(values)
    for _ in range(3):
        point.update(N.step(net, point, lr=0.5).params)
    assert many.params == {p: point[p] for p in net.params}
    assert list(many.history) == sorted(many.history, reverse=True)
    only = N.step(net, values, lr=0.5, only="w*")
    assert only.params[b] == values[b] and only.params[w] != values[w] and only.updated == (w,)
    with pytest.raises(NumericError, match="'v_\\*' matches no parameter"):
        N.step(net, values, lr=0.5, only=["w", "v_*"])
    with pytest.raises(NumericError, match="learning rate"):
        N.step(net, values, lr=-1)


def test_minibatch_sgd_is_seeded_and_converges():
    net, values = regression(m=16)
    a = N.step(net, values, lr=0.5, steps=200, batch_size=4, seed=1)
    b = N.step(net, values, lr=0.5, steps=200, batch_size=4, seed=1)
    c = N.step(net, values, lr=0.5, steps=3, batch_size=4, seed=2)
    d = N.step(net, values, lr=0.5, steps=3, batch_size=4, seed=1)
    assert a.params == b.params and c.params != d.params
    w, bias = net.params
    assert abs(a.params[w] - 3) < 1e-6 and abs(a.params[bias] + 1) < 1e-6  # noiseless data: exact fit
    full = N.step(net, values, lr=0.5, steps=3, batch_size=16)
    assert full.params == N.step(net, values, lr=0.5, steps=3).params
    seen = []
    N.step(net, values, lr=0.5, steps=5, batch_size=4, progress=lambda i, n, loss: seen.append((i, n)))
    assert seen == [(i, 5) for i in range(1, 6)]


# -- gradient flow ---------------------------------------------------------------------------

def chain(act, weight, bias, depth=4):
    """x -> h_1 -> ... -> h_depth -> E, one unit a layer."""
    x, t, E = sp.symbols("x t E")
    nodes, prev, params, values = {}, x, [], {x: [0.5, -0.5, 1.0], t: [0.1, 0.2, 0.3]}
    for i in range(1, depth + 1):
        w, b, h = sp.symbols(f"w_{i} b_{i} h_{i}")
        nodes[h] = act(w * prev + b)
        params += [w, b]
        values.update({w: weight, b: bias})
        prev = h
    nodes[E] = (prev - t) ** 2 / 2
    return Network(nodes, loss=E, params=params, inputs=[x], targets=[t]), values


def test_flow_flags_saturated_sigmoids():
    net, values = chain(F.sigmoid, weight=1.0, bias=0.0)
    values[net.symbol("b_2")] = 20.0  # h_2 = sigmoid(20 + ...): f' about 2e-9 in every sample
    f = N.flow(net, values)
    assert [str(k) for k in f.saturated] == ["h_2"] and f.dead == ()
    assert f.depth == {net.symbol(f"h_{i}"): i for i in range(1, 5)} | {net.loss: 5}
    g = N.gradient(net, values)
    first = math.hypot(g.gradient[net.symbol("w_1")], g.gradient[net.symbol("b_1")])
    last = math.hypot(g.gradient[net.symbol("w_4")], g.gradient[net.symbol("b_4")])
    assert close(f.ratio, first / last) and f.ratio < 1e-7  # vanished below the saturated unit
    h1 = net.symbol("h_1")
    assert close(f.delta[h1], float(np.sqrt(np.mean(g.deltas[h1] ** 2))))
    assert "saturated sigmoid/tanh units: h_2" in report.text(f)
    healthy = N.flow(net, {**values, net.symbol("b_2"): 0.0})
    assert healthy.saturated == () and 0.01 < healthy.ratio


def test_flow_flags_a_dead_relu_only_when_off_in_every_sample():
    net, values = chain(F.relu, weight=1.0, bias=0.5)
    values[net.symbol("b_3")] = -5.0  # h_3 = relu(h_2 - 5) with h_2 < 3: off for the whole batch
    f = N.flow(net, values)
    assert [str(k) for k in f.dead] == ["h_3"] and f.saturated == ()
    g = N.gradient(net, values)
    assert g.gradient[net.symbol("w_1")] == 0.0 and g.gradient[net.symbol("w_3")] == 0.0
    assert report.json(f)["dead"] == ["h_3"]
    values[net.symbol("b_3")] = -1.9  # on for the sample x = 1 only
    f = N.flow(net, values)
    assert f.dead == () and f.fraction[net.symbol("h_3")] == pytest.approx(2 / 3)


def test_flow_with_a_bound_generic():
    g = F.generic("g")
    x, w, h, E = sp.symbols("x w h E")
    net = Network({h: g(w * x), E: h ** 2}, loss=E, params=[w], inputs=[x])
    assert N.flow(net, {x: 1.0, w: 10.0}, bind={"g": "tanh"}).saturated == (h,)
    assert N.flow(net, {x: 1.0, w: -10.0}, bind={"g": "relu"}).dead == (h,)
    assert N.flow(net, {x: 1.0, w: 10.0}, bind={"g": "softplus"}).saturated == ()


def test_nodes_off_the_loss_paths_have_values_and_zero_deltas():
    x, w, h, q, E = sp.symbols("x w h q E")
    net = Network({h: sp.tanh(w * x), q: h * 3, E: h ** 2}, loss=E, params=[w], inputs=[x])
    result = N.gradient(net, {x: 0.5, w: 2.0})
    assert float(result.values[q][0]) == 3 * math.tanh(1.0) and float(result.deltas[q][0]) == 0.0
    assert close(result.gradient[w], 2 * math.tanh(1.0) * (1 - math.tanh(1.0) ** 2) * 0.5)


def test_a_function_without_a_derivative_rule_is_named():
    """SymPy's own sign of a non-real argument differentiates to an unevaluated Derivative:
    the engine names it instead of compiling it (symprop's sign has derivative 0)."""
    x, w, E = sp.symbols("x w E")
    net = Network({E: sp.sign(w * x) * w}, loss=E, params=[w], inputs=[x])
    with pytest.raises(NetworkError, match=r"no derivative rule for sign in sign\(w\*x\)"):
        N.gradient(net, {x: 1.0, w: 1.0})
    fixed = Network({E: F.sign(w * x) * w}, loss=E, params=[w], inputs=[x])
    assert N.gradient(fixed, {x: 1.0, w: 2.0}).gradient[w] == 1.0
