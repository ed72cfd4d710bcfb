"""The matrix form: equal to the scalar form entry by entry, to sympy.diff of explicit
forms, to central differences and to symprop.numeric; its steps, shapes, printing, LaTeX,
the [layers] spec shorthand and the CLI."""

import itertools
import json
import math
import shutil

import numpy as np
import pytest
import sympy as sp

from symprop import functions as fn
from symprop import derive, mlp, report
from symprop.cli import main
from symprop.derive import Step
from symprop.matrix import (
    GATES, Gradient, Jacobian, MatrixStep, derive_matrix, latex, mlp_bindings, random_layered,
    scalar_values, text, values_from_scalar,
)
from symprop.documents.matrix import render_matrix_solution
from symprop.matrix import E as LOSS
from symprop.matrix import _explicit
from symprop.numeric import gradient as scalar_gradient
from symprop.spec import Layers, SpecError, load, spec_from_text

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")

RULES = set(GATES) | {"chain rule", "substitute", "loss gradient", "softmax", "sigmoid + binary cross-entropy"}


# -- matrix form = scalar form, entry by entry (symbolically) -----------------------------

def assert_matrix_equals_scalar(sizes, hidden, output, loss, form):
    d = derive_matrix(sizes, hidden, output, loss)
    net = mlp(sizes, hidden, output, loss, form=form)
    grads = derive(net)
    entries = d.explicit(mlp_bindings(d, form))
    # mlp writes an identity output layer as nodes a_L_j = z_L_j: read them as one symbol
    same = {k: v for k, v in net.nodes.items() if v.is_Symbol}
    nonzero = 0
    for l in range(1, d.depth + 1):
        dW, db = entries[Gradient(LOSS, d.one.W[l - 1])], entries[Gradient(LOSS, d.one.b[l - 1])]
        assert dW.shape == (sizes[l], sizes[l - 1]) and db.shape == (sizes[l], 1)
        for j, i in itertools.product(range(sizes[l]), range(sizes[l - 1] + 1)):
            name, ours = (f"w_{l}_{j + 1}_{i + 1}", dW[j, i]) if i < sizes[l - 1] else (f"b_{l}_{j + 1}", db[j, 0])
            theirs = grads[net.symbol(name)].expr
            difference = sp.expand((ours - theirs).xreplace(same))
            assert difference == 0 or sp.cancel(sp.together(difference)) == 0, (name, ours, theirs)
            nonzero += ours != 0
    assert nonzero > 0


SMALL = [
    ("sigmoid", "identity", "half_sse"),
    ("tanh", "softmax", "cross_entropy"),
    ("sigmoid", "softmax", "half_sse"),
    ("softplus", "tanh", "mse"),
    ("leaky_relu", "sigmoid", "cross_entropy"),
    ("relu", "identity", "softmax_cross_entropy"),
]


@pytest.mark.parametrize("hidden,output,loss", SMALL)
def test_2_3_2_every_entry_equals_the_scalar_derivation(hidden, output, loss):
    assert_matrix_equals_scalar([2, 3, 2], hidden, output, loss, "layer")


def test_2_3_1_binary_cross_entropy_equals_the_scalar_derivation():
    assert_matrix_equals_scalar([2, 3, 1], "relu", "sigmoid", "binary_cross_entropy", "layer")
    assert_matrix_equals_scalar([2, 3, 1], "tanh", "tanh", "binary_cross_entropy", "layer")


@pytest.mark.parametrize("hidden,output,loss,form", [
    ("sigmoid", "softmax", "cross_entropy", "layer"),
    ("tanh", "sigmoid", "half_sse", "layer"),
    ("sigmoid", "softmax", "cross_entropy", "neuron"),
])
def test_3_4_4_2_every_entry_equals_the_scalar_derivation(hidden, output, loss, form):
    assert_matrix_equals_scalar([3, 4, 4, 2], hidden, output, loss, form)


def test_the_entry_check_can_fail():
    # dE/dW^1 read transposed (entry (i, j) for w_1_j_i) is not the scalar gradient
    d = derive_matrix([2, 3, 2], "sigmoid", "identity", "half_sse")
    net = mlp([2, 3, 2], "sigmoid", "identity", "half_sse", form="layer")
    dW = d.explicit(mlp_bindings(d))[Gradient(LOSS, d.one.W[0])]
    assert sp.expand(dW[1, 0] - derive(net, "w_1_1_2").expr) != 0
    assert sp.expand(dW[0, 1] - derive(net, "w_1_1_2").expr) == 0


# -- every local step = sympy.diff of explicit forms ----------------------------------------

def explicit_bindings(d):
    """Leaves and pre-activations as symbols, activations as explicit functions of them."""
    b = mlp_bindings(d, "layer")
    for l in range(1, d.depth + 1):
        z = b[d.one.z[l - 1]]
        name = d.net.names[l - 1]
        if name == "softmax":
            b[d.one.a[l]] = sp.ImmutableMatrix([fn.explicit(fn.softmax(k, *z)) for k in range(1, len(z) + 1)])
        else:
            f = fn.ACTIVATIONS["identity" if name == "linear" else name]
            b[d.one.a[l]] = z.applyfunc(lambda u: fn.explicit(f(u)))
    return b


def numbers(expr, rng):
    positive = ("t", "o")  # targets and probabilities
    point = {s: sp.Float(rng.uniform(0.1, 0.9) * (1 if s.name[0] in positive else rng.choice([-1, 1])))
             for s in sorted(expr.free_symbols, key=str)}
    return np.array(sp.N(expr.xreplace(point)).tolist(), dtype=float)


@pytest.mark.parametrize("hidden,output,loss", SMALL + [("tanh", "sigmoid", "binary_cross_entropy")])
def test_every_jacobian_and_loss_gradient_step_equals_sympy_diff(hidden, output, loss):
    sizes = [2, 3, 2] if loss != "binary_cross_entropy" else [2, 3, 1]
    d = derive_matrix(sizes, hidden, output, loss)
    b = explicit_bindings(d)
    dims = d.dimension_values()
    known = {k.xreplace(dims): v for k, v in b.items()}
    checked = 0
    for step in d.steps:
        bound = known
        if isinstance(step.lhs, Jacobian):
            of, wrt = step.lhs.args
            if of in d.one.z:  # z^l = W^l a^(l-1) + b^l, with a^(l-1) a column of symbols
                a_prev = sp.ImmutableMatrix(sp.symbols(f"u1:{wrt.shape[0].xreplace(dims) + 1}"))
                layer = d.one.z.index(of)
                reference = (b[d.one.W[layer]] * a_prev + b[d.one.b[layer]]).jacobian(a_prev)
            else:  # a^l = f(z^l)
                reference = b[of].jacobian(b[wrt])
        elif isinstance(step.lhs, Gradient) and step.rule == "loss gradient":
            out = step.lhs.args[1]  # the output, as a column of probabilities o_j
            a, y = sp.ImmutableMatrix(sp.symbols(f"o1:{sizes[-1] + 1}")), b[d.one.y]
            bound = {**known, out.xreplace(dims): a}
            e = fn.LOSSES[loss](a[0], y[0]) if loss == "binary_cross_entropy" else fn.LOSSES[loss](list(a), list(y))
            reference = sp.ImmutableMatrix([fn.explicit(e).diff(s) for s in a])
        else:
            continue
        ours = _explicit(step.rhs.xreplace(dims).xreplace(bound))
        rng = np.random.default_rng(7)
        for _ in range(3):
            seed = int(rng.integers(1 << 30))
            np.testing.assert_allclose(numbers(ours, np.random.default_rng(seed)),
                                       numbers(reference, np.random.default_rng(seed)), rtol=1e-12, atol=1e-12)
        checked += 1
    assert checked >= 2


# -- numbers --------------------------------------------------------------------------

@pytest.mark.parametrize("sizes,hidden,output,loss,reduction", [
    ([5, 8, 6, 3], "tanh", "softmax", "cross_entropy", "mean"),
    ([6, 7, 4], "relu", "identity", "mse", "sum"),
    ([4, 9, 5, 1], "sigmoid", "sigmoid", "binary_cross_entropy", "mean"),
    ([5, 6, 3], "softplus", "softmax", "half_sse", "sum"),
])
def test_numbers_equal_the_scalar_form_at_random_points(sizes, hidden, output, loss, reduction):
    d = derive_matrix(sizes, hidden, output, loss, reduction=reduction)
    net = mlp(sizes, hidden, output, loss, form="layer", reduction=reduction)
    for seed in (1, 2):
        v = d.random_values(batch=5, seed=seed)
        ours, theirs = d.gradient(v), scalar_gradient(net, scalar_values(v))
        assert math.isclose(ours.loss, theirs.loss, rel_tol=1e-12)
        for l in range(1, d.depth + 1):
            W, b = ours.dW[l - 1], ours.db[l - 1]
            for j, i in itertools.product(range(W.shape[0]), range(W.shape[1])):
                assert math.isclose(W[j, i], theirs.gradient[net.symbol(f"w_{l}_{j + 1}_{i + 1}")], rel_tol=1e-9, abs_tol=1e-13)
            for j in range(W.shape[0]):
                assert math.isclose(b[j, 0], theirs.gradient[net.symbol(f"b_{l}_{j + 1}")], rel_tol=1e-9, abs_tol=1e-13)


ALL = [
    ([4, 6, 3], "sigmoid", "softmax", "cross_entropy"),
    ([3, 5, 4, 2], "tanh", "sigmoid", "half_sse"),
    ([4, 5, 3], "relu", "softmax", "half_sse"),
    ([4, 5, 1], "tanh", "sigmoid", "binary_cross_entropy"),
    ([4, 5, 2], "softplus", "identity", "mse"),
    ([3, 4, 2], "leaky_relu", "sigmoid", "cross_entropy"),
    ([3, 4, 2], "sigmoid", "linear", "softmax_cross_entropy"),
    ([3, 4, 5, 2], ["relu", "tanh"], "softmax", "cross_entropy"),  # one activation per hidden layer
]


@pytest.mark.parametrize("sizes,hidden,output,loss", ALL)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradient_equals_central_differences(sizes, hidden, output, loss, reduction):
    d = derive_matrix(sizes, hidden, output, loss, reduction=reduction)
    v = d.random_values(batch=6, seed=11)
    g = d.gradient(v)
    assert math.isclose(g.loss, d.loss_value(v))
    h = 1e-6
    for arrays, grads in ((v.weights, g.dW), (v.biases, g.db)):
        for array, grad in zip(arrays, grads):
            assert grad.shape == array.shape
            for index in np.ndindex(*array.shape):
                old = array[index]
                array[index] = old + h
                up = d.loss_value(v)
                array[index] = old - h
                down = d.loss_value(v)
                array[index] = old
                assert math.isclose(grad[index], (up - down) / (2 * h), rel_tol=1e-5, abs_tol=1e-8), index


def test_batch_gradient_is_the_sum_or_mean_of_one_sample_gradients():
    d_sum = derive_matrix([3, 5, 4], "tanh", "softmax", "cross_entropy")
    d_mean = derive_matrix([3, 5, 4], "tanh", "softmax", "cross_entropy", reduction="mean")
    v = d_sum.random_values(batch=4, seed=3)
    total = d_sum.gradient(v)
    singles = []
    for k in range(4):
        one = type(v)(v.weights, v.biases, v.x[:, k:k + 1], v.y[:, k:k + 1])
        singles.append(d_sum.gradient(one))
    for l in range(2):
        np.testing.assert_allclose(total.dW[l], sum(s.dW[l] for s in singles), rtol=1e-12)
        np.testing.assert_allclose(total.db[l], sum(s.db[l] for s in singles), rtol=1e-12)
        np.testing.assert_allclose(d_mean.gradient(v).dW[l], total.dW[l] / 4, rtol=1e-12)
    assert math.isclose(total.loss, sum(s.loss for s in singles))


def test_numbers_are_stable_at_huge_logits():
    d = derive_matrix([2, 2], output="softmax", loss="cross_entropy")
    v = values_from_scalar([2, 2], {"x_1": 1.0, "x_2": 0.0, "t_1": 0.0, "t_2": 1.0,
                                    "w_1_1_1": 1000.0, "w_1_1_2": 0.0, "w_1_2_1": 0.0, "w_1_2_2": 0.0,
                                    "b_1_1": 0.0, "b_1_2": 0.0})
    g = d.gradient(v)
    assert g.loss == 1000.0  # -log softmax_2 = logsumexp(1000, 0) - 0
    assert g.dW[0].tolist() == [[1.0, 0.0], [-1.0, 0.0]]
    b = derive_matrix([1, 1], output="sigmoid", loss="binary_cross_entropy")
    g = b.gradient(values_from_scalar([1, 1], {"x_1": -800.0, "t_1": 1.0, "w_1_1_1": 1.0, "b_1_1": 0.0}))
    assert g.loss == 800.0 and g.dW[0][0, 0] == 800.0
    s = derive_matrix([1, 1, 1], "sigmoid", "identity", "half_sse")
    g = s.gradient(values_from_scalar([1, 1, 1], {"x_1": 1.0, "t_1": 0.0, "w_1_1_1": -1000.0, "b_1_1": 0.0,
                                                   "w_2_1_1": 1.0, "b_2_1": 0.0}))
    assert np.isfinite(g.loss) and g.dW[0][0, 0] == 0.0  # a saturated sigmoid passes nothing back


def test_random_values_are_reproducible_and_fit_the_loss():
    a, b = random_layered([4, 3, 5], batch=7, seed=5, targets="onehot"), random_layered([4, 3, 5], batch=7, seed=5, targets="onehot")
    assert all(np.array_equal(p, q) for p, q in zip(a.weights + a.biases + [a.x, a.y], b.weights + b.biases + [b.x, b.y]))
    assert not np.array_equal(a.weights[0], random_layered([4, 3, 5], batch=7, seed=6).weights[0])
    assert [w.shape for w in a.weights] == [(3, 4), (5, 3)] and a.x.shape == (4, 7)
    assert a.y.sum(axis=0).tolist() == [1.0] * 7
    assert random_layered([2, 3], 2, 0, dtype=np.float32).weights[0].dtype == np.float32
    bce = derive_matrix([3, 2], output="sigmoid", loss="binary_cross_entropy").random_values(9, 1)
    assert set(np.unique(bce.y)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="targets"):
        random_layered([2, 2], targets="fuzzy")


def test_values_are_checked():
    d = derive_matrix([2, 3, 1])
    v = d.random_values(batch=2)
    v.weights[1] = v.weights[1].T
    with pytest.raises(ValueError, match=r"W\^2 has shape \(3, 1\), expected \(1, 3\)"):
        d.gradient(v)
    with pytest.raises(ValueError, match="no value for w_1_1_2"):
        values_from_scalar([2, 3, 1], {"x_1": 1.0, "x_2": 1.0, "t_1": 0.0, "w_1_1_1": 0.0})


# -- steps, shapes, printing --------------------------------------------------------------

def test_steps_are_step_records_with_gate_rules_and_consistent_shapes():
    d = derive_matrix([784, 128, 64, 10], "relu", "softmax", "cross_entropy", reduction="mean")
    for step in d.forward + d.steps + d.batch_forward + d.batch_steps:
        assert isinstance(step, Step) and isinstance(step, MatrixStep)
        assert step.rule in RULES
        assert step.lhs.shape == step.rhs.shape  # SymPy checks every product's inner dimensions
        assert step.shapes[0] == (step.lhs, step.lhs.shape)
        assert all(tuple(q.shape) == shape for q, shape in step.shapes)
    assert [s.rule for s in d.steps[:3]] == ["softmax + cross-entropy", "delta^T x", "z = x"]
    assert {s.rule for s in d.steps} >= {"z = Wx", "elementwise f", "chain rule", "substitute"}
    # dE/dW^l has the shape of W^l (denominator layout)
    for l in range(d.depth):
        assert d.gradients[d.one.W[l]].shape == d.one.W[l].shape


def test_the_derivation_does_not_depend_on_the_widths():
    small = derive_matrix([2, 3, 2], "sigmoid", "softmax", "cross_entropy")
    seed004 = derive_matrix([150528, 100, 10], "sigmoid", "softmax", "cross_entropy")
    assert small.steps == seed004.steps and small.batch_steps == seed004.batch_steps
    assert seed004.dimension_values() == dict(zip(seed004.dims, (150528, 100, 10)))


def test_terminal_text_golden():
    d = derive_matrix([784, 128, 10], "sigmoid", "softmax", "cross_entropy")
    lines = [f"{text(s.lhs)} = {text(s.rhs)}" for s in d.steps]
    assert lines == [
        "δ^2 = ŷ - y",
        "dE/dW^2 = δ^2 (a^1)^T",
        "dE/db^2 = δ^2",
        "δ^1 = (∂a^1/∂z^1)^T (∂z^2/∂a^1)^T δ^2",
        "∂z^2/∂a^1 = W^2",
        "∂a^1/∂z^1 = Diag(a^1 ⊙ (1 - a^1))",
        "δ^1 = Diag(a^1 ⊙ (1 - a^1)) (W^2)^T δ^2",
        "dE/dW^1 = δ^1 x^T",
        "dE/db^1 = δ^1",
    ]
    batch = [f"{text(s.lhs)} = {text(s.rhs)}" for s in d.batch_forward + d.batch_steps]
    assert batch[0] == "Z^1 = W^1 X + b^1 1_N^T"
    assert "Δ^1 = (A^1 ⊙ (1 - A^1)) ⊙ ((W^2)^T Δ^2)" in batch
    assert "dE/db^1 = Δ^1 1_N" in batch
    out = report.text(d)
    assert "Layout: denominator layout" in out and "n_0 = 784" in out
    assert "dE/dW^2 = δ^2 (a^1)^T    [delta^T x]    (dE/dW^2: n_2×n_1, δ^2: n_2×1, a^1: n_1×1)" in out
    half = derive_matrix([3, 2], output="tanh", loss="half_sse", reduction="mean")
    assert text(half.batch_steps[0].rhs) == "1/N ((1 - (A^1)^2) ⊙ (A^1 - Y))"


def test_latex_golden():
    d = derive_matrix([784, 128, 10], "sigmoid", "softmax", "cross_entropy")
    assert latex(d.program[3][1], d.names) == (
        r"\operatorname{Diag}\left(\mathbf{a}^{(1)} \odot \left(1 - \mathbf{a}^{(1)}\right)\right) "
        r"\left(\mathbf{W}^{(2)}\right)^{T} \boldsymbol{\delta}^{(2)}"
    )
    assert latex(d.steps[0].rhs, d.names) == r"\hat{\mathbf{y}} - \mathbf{y}"
    assert latex(d.steps[1].lhs, d.names) == r"\frac{\partial E}{\partial \mathbf{W}^{(2)}}"
    bce = derive_matrix([3, 2], output="tanh", loss="binary_cross_entropy")
    assert latex(bce.steps[1].rhs, bce.names) == (
        r"\frac{\mathbf{a}^{(1)} - \mathbf{y}}{\mathbf{a}^{(1)} \odot \left(1 - \mathbf{a}^{(1)}\right)}"
    )


@needs_tex
def test_latex_solution_compiles_and_is_deterministic(tmp_path):
    from symprop.output import compile_pdf, write_atomic

    d = derive_matrix([784, 128, 10], "relu", "softmax", "half_sse", reduction="mean")
    tex = render_matrix_solution(d, title="Matrix form: 50% & more")
    assert tex == render_matrix_solution(derive_matrix([784, 128, 10], "relu", "softmax", "half_sse", reduction="mean"),
                                         title="Matrix form: 50% & more")
    assert r"Matrix form: 50\% \& more" in tex and r"$n_{0} = 784$" in tex
    assert r"$\in \mathbb{R}^{128 \times 784}$" in tex  # each step's shape beside it (issue 12), no table
    pdf = compile_pdf(write_atomic(tmp_path / "matrix.tex", tex))
    assert pdf.stat().st_size > 10_000
    fragment = render_matrix_solution(d, standalone=False)
    assert r"\documentclass" not in fragment and r"\begin{align*}" in fragment


# -- the [layers] spec and the CLI -------------------------------------------------------

SMALL_SPEC = """
[layers]
sizes = [2, 3, 2]
hidden = "tanh"
output = "softmax"
loss = "cross_entropy"
reduction = "mean"

[values]
x_1 = [0.5, -0.3, 0.8]
x_2 = [0.1, 0.2, -0.9]
t_1 = [1.0, 0.0, 0.0]
t_2 = [0.0, 1.0, 1.0]
w_1_1_1 = 0.1
w_1_1_2 = -0.2
w_1_2_1 = 0.3
w_1_2_2 = 0.4
w_1_3_1 = -0.5
w_1_3_2 = 0.6
b_1_1 = 0.0
b_1_2 = 0.1
b_1_3 = -0.1
w_2_1_1 = 0.7
w_2_1_2 = -0.8
w_2_1_3 = 0.9
w_2_2_1 = 0.2
w_2_2_2 = 0.3
w_2_2_3 = -0.4
b_2_1 = 0.05
b_2_2 = -0.05
"""

BIG_SPEC = """
[layers]
sizes = [150528, 100, 10]
output = "softmax"
loss = "cross_entropy"
"""


def run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_layers_spec_builds_the_scalar_network_with_mlp():
    spec = spec_from_text(SMALL_SPEC, "small.toml")
    reference = mlp([2, 3, 2], "tanh", "softmax", "cross_entropy", form="layer", reduction="mean")
    assert spec.network.nodes == reference.nodes and spec.network.params == reference.params
    assert spec.layers.sizes == (2, 3, 2) and spec.values[spec.symbols["x_1"]] == (0.5, -0.3, 0.8)


@pytest.mark.parametrize("text,key", [
    ("[layers]\nsizes = [3]", "[layers] sizes"),
    ("[layers]\nsizes = [2, 3]\nhidden = 'swish'", "[layers] hidden"),
    ("[layers]\nsizes = [2, 3]\nloss = 'hinge'", "[layers] loss"),
    ("[layers]\nsizes = [2, 3]\nseed = -1", "[layers] seed"),
    ("[layers]\nsizes = [2, 3]\nwidth = 3", "[layers] width"),
    ("[layers]\nsizes = [2, 3]\n[nodes]\nE = 'x'", "[nodes]"),
    ("[layers]\nsizes = [2, 3]\n[values]\nw_2_1_1 = 1.0", "[values] w_2_1_1"),
    ("[layers]\nsizes = [2, 3]\n[values]\nw_1_1_1 = [1.0, 2.0]", "[values] w_1_1_1"),
    (BIG_SPEC, "[layers] sizes"),  # the scalar form only: too many parameters
])
def test_layers_spec_errors_name_the_key(text, key):
    with pytest.raises(SpecError) as err:
        spec_from_text(text, "bad.toml")
    assert err.value.key == key and str(err.value).startswith(f"bad.toml: {key}: ")


def test_cli_derive_matrix_and_scalar(tmp_path, capsys):
    small, big = tmp_path / "small.toml", tmp_path / "big.toml"
    small.write_text(SMALL_SPEC)
    big.write_text(BIG_SPEC)
    layers = load(big)
    assert isinstance(layers, Layers) and layers.sizes == (150528, 100, 10)
    status, out, _ = run(["derive", str(big)], capsys)  # matrix form by default: nothing is built
    assert status == 0 and "δ^1 = Diag(a^1 ⊙ (1 - a^1)) (W^2)^T δ^2" in out
    assert run(["derive", str(big)], capsys)[1] == out  # deterministic
    status, out, _ = run(["derive", str(big), "--format", "json"], capsys)
    record = json.loads(out)
    assert record["form"] == "matrix" and record["sizes"]["n_0"] == 150528
    assert record["steps"][1] == {"rule": "delta^T x", "equation": "dE/dW^2 = δ^2 (a^1)^T", "because": [],
                                  "shapes": {"dE/dW^2": ["n_2", "n_1"], "δ^2": ["n_2", "1"], "a^1": ["n_1", "1"]}}
    status, out, _ = run(["derive", str(small), "--form", "scalar", "--wrt", "w_1_2_1", "--format", "json"], capsys)
    assert status == 0 and json.loads(out)["derivations"][0]["wrt"] == "w_1_2_1"
    status, _, err = run(["derive", str(big), "--form", "scalar"], capsys)
    assert status == 2 and "too many for the scalar form" in err and err.count("\n") == 1


def test_cli_matrix_form_needs_layers(tmp_path, capsys):
    spec = tmp_path / "net.toml"
    spec.write_text('[network]\nparams = ["w"]\ninputs = ["x"]\nloss = "E"\n[nodes]\nE = "w*x"\n')
    status, _, err = run(["derive", str(spec), "--form", "matrix"], capsys)
    assert status == 2 and "needs a [layers] spec" in err and err.count("\n") == 1


def test_cli_grad_uses_the_matrix_form_and_equals_the_scalar_numbers(tmp_path, capsys):
    small = tmp_path / "small.toml"
    small.write_text(SMALL_SPEC)
    status, out, _ = run(["grad", str(small), "--format", "json"], capsys)
    assert status == 0
    record = json.loads(out)
    assert record["form"] == "matrix" and record["batch"] == 3
    spec = spec_from_text(SMALL_SPEC, "small.toml")
    reference = scalar_gradient(spec.network, spec.values)
    assert math.isclose(record["loss"], reference.loss, rel_tol=1e-12)
    for l, rows in ((1, record["gradient"]["W^1"]), (2, record["gradient"]["W^2"])):
        for j, i in itertools.product(range(len(rows)), range(len(rows[0]))):
            assert math.isclose(rows[j][i], reference.gradient[spec.symbols[f"w_{l}_{j + 1}_{i + 1}"]], rel_tol=1e-9)
    assert record["gradient"]["b^2"] == [[pytest.approx(reference.gradient[spec.symbols[f"b_2_{j}"]], rel=1e-9)] for j in (1, 2)]


def test_cli_grad_random_values_from_seed_and_batch(tmp_path, capsys):
    spec = tmp_path / "seeded.toml"
    spec.write_text("[layers]\nsizes = [30, 20, 4]\noutput = 'softmax'\nloss = 'cross_entropy'\nseed = 3\nbatch = 5\n")
    first = json.loads(run(["grad", str(spec), "--format", "json"], capsys)[1])
    again = json.loads(run(["grad", str(spec), "--format", "json"], capsys)[1])
    assert first == again and first["batch"] == 5
    d = derive_matrix([30, 20, 4], output="softmax", loss="cross_entropy")
    assert first["loss"] == d.gradient(d.random_values(5, 3)).loss
    status, out, _ = run(["grad", str(spec)], capsys)
    assert status == 0 and out.startswith("loss E = ") and "dE/dW^1  20×30" in out


def test_cli_solve_on_layers_writes_the_matrix_solution(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text(BIG_SPEC)  # 15 million weights: only the matrix form can do this
    status, out, _ = run(["solve", str(big), "--fragment"], capsys)
    d = derive_matrix((150528, 100, 10), output="softmax", loss="cross_entropy")
    assert status == 0 and out == render_matrix_solution(d, standalone=False)
    for argv in (["--wrt", "w_1_1_1"], ["--method", "bottom-up"]):
        status, _, err = run(["solve", str(big), *argv], capsys)
        assert status == 2 and "leave out --wrt and --method" in err
    status, _, err = run(["exam", str(big)], capsys)
    assert status == 2 and "symprop solve" in err and err.count("\n") == 1


def test_cli_check_step_flow_on_layers_use_the_seeded_values(tmp_path, capsys):
    small = tmp_path / "seeded.toml"
    small.write_text("[layers]\nsizes = [3, 4, 2]\nhidden = 'tanh'\noutput = 'softmax'\nloss = 'cross_entropy'\n"
                     "seed = 3\nbatch = 5\n")
    grad = json.loads(run(["grad", str(small), "--format", "json"], capsys)[1])
    status, out, _ = run(["check", str(small), "--format", "json"], capsys)
    record = json.loads(out)
    assert status == 0 and record["passed"] and len(record["parameters"]) == 3 * 4 + 4 + 4 * 2 + 2
    assert math.isclose(record["loss"], grad["loss"], rel_tol=1e-12)  # the same seeded batch
    step = json.loads(run(["step", str(small), "--lr", "0.1", "--format", "json"], capsys)[1])
    assert step["loss_after"] < step["loss_before"] == pytest.approx(grad["loss"], rel=1e-12)
    assert run(["flow", str(small)], capsys)[0] == 0
    big = tmp_path / "big.toml"
    big.write_text(BIG_SPEC)
    status, _, err = run(["check", str(big)], capsys)
    assert status == 2 and "`symprop grad` uses the matrix form" in err
