"""The matrix form's numbers are stable for every output/loss pairing: log losses are
computed from the logits in log space and their output deltas in closed forms that cannot
overflow (sigmoid + cross-entropy, softmax + binary cross-entropy), equal to central
differences, to the scalar form and to sympy at moderate values and to the exact limits
at logits of +-1000; a loss with no finite value is refused with the reason."""

import itertools
import json
import math
import warnings

import mpmath
import numpy as np
import pytest
import sympy as sp

from symprop import mlp
from symprop.cli import main
from symprop.graph import NetworkError
from symprop.matrix import (
    LayeredValues, _compile, _softmax_binary_cross_entropy_delta, derive_matrix, random_layered, scalar_values, text,
    values_from_scalar,
)
from symprop.numeric import gradient as scalar_gradient

OUTPUTS = ["sigmoid", "softmax", "identity", "tanh"]
LOSSES = ["half_sse", "mse", "cross_entropy", "binary_cross_entropy"]


# -- the two reported cases, exactly --------------------------------------------------------

SIGMOID_CE = """
[layers]
sizes = [1, 1]
output = "sigmoid"
loss = "cross_entropy"
[values]
x_1 = 1.0
t_1 = 1.0
w_1_1_1 = -1000.0
b_1_1 = 0.0
"""

SOFTMAX_BCE = """
[layers]
sizes = [1, 2]
output = "softmax"
loss = "binary_cross_entropy"
[values]
x_1 = 1.0
t_1 = 0.0
t_2 = 1.0
w_1_1_1 = 1000.0
w_1_2_1 = -1000.0
b_1_1 = 0.0
b_1_2 = 0.0
"""


def close(ours, expected, rel=1e-12):
    return math.isclose(ours, expected, rel_tol=rel, abs_tol=0.0 if expected else 1e-300)


def test_sigmoid_cross_entropy_at_a_logit_of_minus_1000():
    # z = w x = -1000, t = 1: E = -log σ(z) = softplus(-z) = 1000; δ = -t σ(-z) = -1, so
    # dE/db = δ = -1 and dE/dw = δ x = -1 (x = 1)
    d = derive_matrix([1, 1], output="sigmoid", loss="cross_entropy")
    v = values_from_scalar([1, 1], {"x_1": 1.0, "t_1": 1.0, "w_1_1_1": -1000.0, "b_1_1": 0.0})
    g = d.gradient(v)
    assert close(g.loss, 1000.0) and close(d.loss_value(v), 1000.0)
    assert close(g.dW[0][0, 0], -1.0) and close(g.db[0][0, 0], -1.0)
    assert g.dW[0].shape == (1, 1) and g.db[0].shape == (1, 1)
    # x = -1 and w = 1000 give the same logit: dE/dw = δ x = +1
    g = d.gradient(values_from_scalar([1, 1], {"x_1": -1.0, "t_1": 1.0, "w_1_1_1": 1000.0, "b_1_1": 0.0}))
    assert close(g.loss, 1000.0) and close(g.dW[0][0, 0], 1.0) and close(g.db[0][0, 0], -1.0)


def test_softmax_binary_cross_entropy_at_logits_of_plus_minus_1000():
    # z = (1000, -1000), t = (0, 1): E = -log(1 - ŷ_1) - log ŷ_2 = -2 log ŷ_2 = 4000
    d = derive_matrix([1, 2], output="softmax", loss="binary_cross_entropy")
    v = values_from_scalar([1, 2], {"x_1": 1.0, "t_1": 0.0, "t_2": 1.0, "w_1_1_1": 1000.0, "w_1_2_1": -1000.0,
                                    "b_1_1": 0.0, "b_1_2": 0.0})
    g = d.gradient(v)
    assert close(g.loss, 4000.0) and close(d.loss_value(v), 4000.0)
    assert all(close(a, b) for a, b in zip(g.dW[0].ravel(), [2.0, -2.0]))
    assert all(close(a, b) for a, b in zip(g.db[0].ravel(), [2.0, -2.0]))


@pytest.mark.parametrize("spec,loss,dW", [(SIGMOID_CE, 1000.0, [[-1.0]]), (SOFTMAX_BCE, 4000.0, [[2.0], [-2.0]])])
def test_cli_grad_gives_finite_numbers(tmp_path, capsys, spec, loss, dW):
    path = tmp_path / "net.toml"
    path.write_text(spec)
    status = main(["grad", str(path), "--format", "json"])
    out, err = capsys.readouterr()
    assert status == 0 and err == ""  # no NaN, and no warnings from NumPy
    record = json.loads(out)
    assert record["loss"] == pytest.approx(loss, rel=1e-12) and np.allclose(record["gradient"]["W^1"], dW, rtol=1e-12, atol=0)


# -- every pairing at moderate values: central differences, the scalar form, the step ---------

def moderate_values(d, batch, seed):
    """Random values at which the loss is defined: for cross-entropy of an identity or
    tanh output, the outputs are kept in (0, 1) (small last-layer weights, a bias of 0.5)."""
    output, loss = d.net.activations[-1].name, d.net.loss.name
    v = random_layered(d.sizes, batch, seed)
    rng = np.random.default_rng(seed + 100)
    shape = v.y.shape
    if loss in ("cross_entropy", "binary_cross_entropy") and output not in ("sigmoid", "softmax"):
        v.weights[-1] *= 0.1
        v.biases[-1][:] = 0.5
    if output == "softmax" and loss == "cross_entropy":  # its rule ŷ - y needs targets summing to 1
        y = np.zeros(shape)
        y[rng.integers(0, shape[0], size=shape[1]), np.arange(shape[1])] = 1.0
    elif output == "softmax" and loss == "binary_cross_entropy" and shape[0] == 1:
        y = np.ones(shape)  # ŷ = 1 always: the only finite loss
    elif loss in ("cross_entropy", "binary_cross_entropy"):
        y = rng.uniform(0.0, 1.0, shape)
        y[0, 0] = 0.0  # 0 log 0 = 0: a zero weight drops its term
        y[-1, -1] = 1.0
    else:
        y = rng.standard_normal(shape)
    return LayeredValues(v.weights, v.biases, v.x, y)


def central_differences(d, v, h=1e-6):
    out = []
    for arrays in (v.weights, v.biases):
        grads = []
        for array in arrays:
            grad = np.empty_like(array)
            for index in np.ndindex(*array.shape):
                old = array[index]
                array[index] = old + h
                up = d.loss_value(v)
                array[index] = old - h
                down = d.loss_value(v)
                array[index] = old
                grad[index] = (up - down) / (2 * h)
            grads.append(grad)
        out.append(grads)
    return out


@pytest.mark.parametrize("output,loss", list(itertools.product(OUTPUTS, LOSSES)))
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_every_pairing_equals_central_differences(output, loss, reduction):
    for sizes in ([3, 4, 2], [2, 3, 3]):
        d = derive_matrix(sizes, "tanh", output, loss, reduction=reduction)
        v = moderate_values(d, batch=5, seed=7)
        g = d.gradient(v)
        assert math.isfinite(g.loss) and math.isclose(g.loss, d.loss_value(v), rel_tol=1e-14)
        dW, db = central_differences(d, v)
        for ours, theirs in zip(g.dW + g.db, dW + db):
            assert ours.shape == theirs.shape
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("output,loss", list(itertools.product(OUTPUTS, LOSSES)))
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_every_pairing_equals_the_scalar_form(output, loss, reduction):
    sizes = [3, 4, 1] if loss == "binary_cross_entropy" else [3, 4, 2]  # mlp: one output for BCE
    d = derive_matrix(sizes, "tanh", output, loss, reduction=reduction)
    net = mlp(sizes, "tanh", output, loss, form="layer", reduction=reduction)
    v = moderate_values(d, batch=4, seed=3)
    ours, theirs = d.gradient(v), scalar_gradient(net, scalar_values(v))
    assert math.isclose(ours.loss, theirs.loss, rel_tol=1e-12, abs_tol=1e-15)
    for l in range(1, d.depth + 1):
        W, b = ours.dW[l - 1], ours.db[l - 1]
        for j, i in itertools.product(range(W.shape[0]), range(W.shape[1])):
            assert math.isclose(W[j, i], theirs.gradient[net.symbol(f"w_{l}_{j + 1}_{i + 1}")], rel_tol=1e-9, abs_tol=1e-13)
        for j in range(W.shape[0]):
            assert math.isclose(b[j, 0], theirs.gradient[net.symbol(f"b_{l}_{j + 1}")], rel_tol=1e-9, abs_tol=1e-13)


@pytest.mark.parametrize("output,loss", list(itertools.product(OUTPUTS, LOSSES)))
def test_the_stable_output_delta_equals_the_derived_step(output, loss):
    # only the numbers' form changes: at moderate values Δ^L is the value of the derived step
    d = derive_matrix([3, 4, 3], "tanh", output, loss, reduction="mean")
    v = moderate_values(d, batch=6, seed=5)
    g = d.gradient(v)
    env = d._run_forward(d._environment(v))
    lhs, rhs = d.batch_program[0]
    assert lhs == d.batch.delta[-1]
    np.testing.assert_allclose(g.deltas[-1], _compile(rhs)(env), rtol=1e-12, atol=1e-15)


def test_the_derived_steps_are_unchanged():
    d = derive_matrix([2, 3, 2], "tanh", "sigmoid", "cross_entropy")
    assert [f"{text(s.lhs)} = {text(s.rhs)}" for s in d.steps[:4]] == [
        "δ^2 = (∂a^2/∂z^2)^T dE/da^2", "dE/da^2 = -y/a^2", "∂a^2/∂z^2 = Diag(a^2 ⊙ (1 - a^2))",
        "δ^2 = Diag(a^2 ⊙ (1 - a^2)) (-y/a^2)"]
    assert text(d.batch_steps[0].rhs) == "(A^2 ⊙ (1 - A^2)) ⊙ (-Y/A^2)"
    b = derive_matrix([2, 3, 2], "tanh", "softmax", "binary_cross_entropy")
    assert text(b.batch_steps[0].rhs) == "Ŷ ⊙ ((Ŷ - Y)/(Ŷ ⊙ (1 - Ŷ)) - 1_{n_2} 1_{n_2}^T (((Ŷ - Y)/(Ŷ ⊙ (1 - Ŷ))) ⊙ Ŷ))"


# -- the closed form of softmax + binary cross-entropy, against sympy --------------------------

@pytest.mark.parametrize("n", [2, 3, 5])
def test_softmax_binary_cross_entropy_delta_equals_sympy(n):
    z, y = sp.symbols(f"z1:{n + 1}"), sp.symbols(f"y1:{n + 1}")
    total = sp.Add(*[sp.exp(v) for v in z])
    yhat = [sp.exp(v) / total for v in z]
    E = -sp.Add(*[y[k] * sp.log(yhat[k]) + (1 - y[k]) * sp.log(1 - yhat[k]) for k in range(n)])
    exact = [sp.lambdify(z + y, E.diff(v), "mpmath") for v in z]

    def dE(j):  # at 60 digits: 1 - ŷ_k cancels at a large spread of the logits
        def at(*point):
            with mpmath.workdps(60):
                return exact[j](*[mpmath.mpf(float(p)) for p in point])
        return at
    rng = np.random.default_rng(n)
    for spread in (0.5, 3.0, 20.0):
        zs = rng.normal(0, spread, size=(n, 4))
        ys = rng.uniform(0, 1, size=(n, 4))
        ys[0, 0], ys[-1, 1] = 0.0, 1.0
        ours = _softmax_binary_cross_entropy_delta(zs, ys)
        for col in range(4):
            point = [*zs[:, col], *ys[:, col]]
            for j in range(n):
                assert math.isclose(ours[j, col], float(dE(j)(*point)), rel_tol=1e-9, abs_tol=1e-12)
    # and through the network: with x = 1 (sizes [1, n], W the logits), dE/db = δ
    d = derive_matrix([1, n], output="softmax", loss="binary_cross_entropy")
    W = rng.normal(0, 2, size=(n, 1))
    t = rng.uniform(0, 1, size=(n, 1))
    g = d.gradient(LayeredValues([W], [np.zeros((n, 1))], np.ones((1, 1)), t))
    expected = [float(dE(j)(*W[:, 0], *t[:, 0])) for j in range(n)]
    np.testing.assert_allclose(g.db[0][:, 0], expected, rtol=1e-9, atol=1e-12)


# -- logits of +-1000: finite losses and gradients equal to the exact limits -------------------

def exact_loss(output, loss, z, y):
    """The loss of one sample as a sympy expression of its logits, written without the
    cancellation of 1 - σ(z) or 1 - softmax_k(z) (mathematically the same)."""
    n = len(z)
    if output == "sigmoid":
        a = [1 / (1 + sp.exp(-v)) for v in z]
        rest = [1 / (1 + sp.exp(v)) for v in z]  # 1 - σ(z) = σ(-z)
    else:
        total = sp.Add(*[sp.exp(v) for v in z])
        a = [sp.exp(v) / total for v in z]
        rest = [sp.Add(*[sp.exp(w) for j, w in enumerate(z) if j != k]) / total for k in range(n)]
    if loss == "half_sse":
        return sp.Add(*[(p - t) ** 2 for p, t in zip(a, y)]) / 2
    if loss == "mse":
        return sp.Add(*[(p - t) ** 2 for p, t in zip(a, y)]) / n
    if loss == "cross_entropy":
        return -sp.Add(*[t * sp.log(p) for p, t in zip(a, y)])
    return -sp.Add(*[t * sp.log(p) + (1 - t) * sp.log(q) for p, q, t in zip(a, rest, y)])


HUGE = [
    # (outputs, targets of the two samples), logits z = W x with x = (1, -1): +-1000 both ways
    (2, [[0.0, 1.0], [1.0, 0.0]]),
    (3, [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
]


@pytest.mark.parametrize("output,loss", list(itertools.product(["sigmoid", "softmax"], LOSSES)))
@pytest.mark.parametrize("n,targets", HUGE)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_probability_outputs_at_logits_of_plus_minus_1000(output, loss, n, targets, reduction):
    logits = [1000.0, -1000.0] if n == 2 else [1000.0, 0.0, -1000.0]
    d = derive_matrix([1, n], output=output, loss=loss, reduction=reduction)
    v = LayeredValues([np.array(logits).reshape(n, 1)], [np.zeros((n, 1))], np.array([[1.0, -1.0]]),
                      np.array(targets).T)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no log(0), no 0 * inf on the way
        g = d.gradient(v)
    # the exact limits: sympy on W, b, evaluated by mpmath at 1200 digits
    W, b = sp.symbols(f"w1:{n + 1}"), sp.symbols(f"b1:{n + 1}")
    E = sp.Add(*[exact_loss(output, loss, [s * w + c for w, c in zip(W, b)], [sp.Integer(int(u)) for u in t])
                 for s, t in zip((1, -1), targets)])
    if reduction == "mean":
        E = E / 2
    point = [*logits, *[0] * n]

    def number(e):  # 1200 digits: the terms cancel down to e^-2000 ~ 1e-869
        with mpmath.workdps(1200):
            return float(sp.lambdify([*W, *b], e, "mpmath")(*[mpmath.mpf(p) for p in point]))
    assert math.isfinite(g.loss) and math.isclose(g.loss, number(E), rel_tol=1e-12)
    for ours, params in ((g.dW[0][:, 0], W), (g.db[0][:, 0], b)):
        assert np.all(np.isfinite(ours))
        for value, p in zip(ours, params):
            assert math.isclose(value, number(E.diff(p)), rel_tol=1e-12, abs_tol=1e-300), (p, value)


def test_softmax_cross_entropy_of_logits_at_plus_minus_1000():
    d = derive_matrix([1, 3], output="identity", loss="softmax_cross_entropy", reduction="mean")
    v = LayeredValues([np.array([[1000.0], [0.0], [-1000.0]])], [np.zeros((3, 1))], np.array([[1.0, -1.0]]),
                      np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).T)
    g = d.gradient(v)
    # sample 1: z = (1000, 0, -1000), class 3: E = lse - z_3 = 2000, δ = ŷ - y = (1, 0, -1);
    # sample 2: z = (-1000, 0, 1000), class 2: E = 1000, δ = (0, -1, 1); then the mean
    assert g.loss == 1500.0
    assert g.dW[0][:, 0].tolist() == [0.5, 0.5, -1.0] and g.db[0][:, 0].tolist() == [0.5, -0.5, 0.0]


# -- no finite loss: refused, with the reason ------------------------------------------------

@pytest.mark.parametrize("output,loss,w,t,match", [
    ("identity", "cross_entropy", -0.5, 1.0, r"the loss is not finite: log of a non-positive output in a\^1"),
    ("tanh", "cross_entropy", -0.5, 0.3, r"the loss is not finite: log of a non-positive output in a\^1"),
    ("relu", "cross_entropy", -0.5, 1.0, r"log of a non-positive output in a\^1 \(a\^1_1 = 0 at sample 1, target 1"),
    ("identity", "binary_cross_entropy", 1.5, 0.0, r"the loss is not finite: log\(1 - a\^1\) of an output ≥ 1 in a\^1"),
    ("softmax", "binary_cross_entropy", 0.3, 0.0, r"log\(1 - ŷ\) = -inf where the target is not 1"),
])
def test_a_loss_with_no_finite_value_is_refused(output, loss, w, t, match):
    d = derive_matrix([1, 1], output=output, loss=loss)
    v = values_from_scalar([1, 1], {"x_1": 1.0, "t_1": t, "w_1_1_1": w, "b_1_1": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NetworkError, match=match):
            d.gradient(v)
        assert not math.isfinite(d.loss_value(v))  # the value itself, without the reason


def test_a_zero_output_with_a_zero_target_drops_its_term():
    # relu output, cross-entropy: a_2 = 0 with t_2 = 0 is 0 log 0 = 0, and so is its gradient
    d = derive_matrix([1, 2], output="relu", loss="cross_entropy")
    v = values_from_scalar([1, 2], {"x_1": 1.0, "t_1": 1.0, "t_2": 0.0, "w_1_1_1": 0.5, "w_1_2_1": -1.0,
                                    "b_1_1": 0.0, "b_1_2": 0.0})
    g = d.gradient(v)
    assert g.loss == -math.log(0.5) and g.dW[0][:, 0].tolist() == [-2.0, 0.0]
    d = derive_matrix([1, 1], output="softmax", loss="binary_cross_entropy")
    g = d.gradient(values_from_scalar([1, 1], {"x_1": 1.0, "t_1": 1.0, "w_1_1_1": 0.3, "b_1_1": 0.0}))
    assert g.loss == 0.0 and g.dW[0][0, 0] == 0.0  # one softmax output: ŷ = 1, E = 0 whatever the logit


def test_non_finite_values_are_refused_not_passed_on():
    d = derive_matrix([1, 1, 1], "sigmoid", "identity", "half_sse")
    values = {"x_1": 1.0, "t_1": 1.0, "w_1_1_1": 1.0, "b_1_1": 0.0, "w_2_1_1": 1.0, "b_2_1": 0.0}
    with pytest.raises(NetworkError, match=r"the loss is not finite: x holds NaN at \(1, 1\)"):
        d.gradient(values_from_scalar([1, 1, 1], {**values, "x_1": float("nan")}))
    # an infinite input saturates the sigmoid (a finite loss) but dE/dW^1 = Δ^1 X^T is 0 * inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(NetworkError, match=r"dE/dW\^1 = Δ\^1 X\^T holds NaN at \(1, 1\) \(X holds inf"):
            d.gradient(values_from_scalar([1, 1, 1], {**values, "x_1": float("inf")}))


def test_cli_refuses_a_loss_with_no_finite_value(tmp_path, capsys):
    path = tmp_path / "net.toml"
    path.write_text(SIGMOID_CE.replace('"sigmoid"', '"identity"'))
    status = main(["grad", str(path), "--format", "json"])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.startswith(f"symprop: {path}: the loss is not finite: log of a non-positive output in a^1")
    assert err.count("\n") == 1
