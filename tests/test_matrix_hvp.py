"""Hessian-vector products of [layers] networks by the R-operator in matrix form
(symprop.matrix_hvp): against central differences of the matrix gradient, against
sympy.hessian of the explicit loss, golden R steps, the JSON and LaTeX outputs."""

import argparse
import io
import json
import re
import shutil

import numpy as np
import pytest
import sympy as sp

from symprop import cli
from symprop.graph import NetworkError
from symprop.matrix import LayeredValues, derive_matrix, text
from symprop.matrix_hvp import derive_hvp, direction_from_names, random_direction
from symprop.spec import SpecError, load

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")


def _shifted(values, direction, eps):
    return LayeredValues([w + eps * v for w, v in zip(values.weights, direction.weights)],
                         [b + eps * v for b, v in zip(values.biases, direction.biases)], values.x, values.y)


def _central_difference(d, values, direction, eps=1e-5):
    plus = d.gradient(_shifted(values, direction, eps)).named()
    minus = d.gradient(_shifted(values, direction, -eps)).named()
    return {k: (plus[k] - minus[k]) / (2 * eps) for k in plus}


NETWORKS = [  # sizes, hidden, output, loss, reduction: every kind of output step
    ([3, 4, 2], "tanh", "softmax", "cross_entropy", "mean"),          # fused softmax + cross-entropy
    ([3, 5, 3], "tanh", "identity", "softmax_cross_entropy", "sum"),  # the same on logits
    ([3, 4, 4, 2], "sigmoid", "sigmoid", "half_sse", "sum"),          # f'' at the output and hidden
    ([3, 4, 2], "relu", "softmax", "half_sse", "sum"),                # softmax without its fused loss
    ([3, 4, 2], "softplus", "identity", "mse", "mean"),               # a constant loss curvature 2/n
    ([3, 5, 2], "tanh", "sigmoid", "binary_cross_entropy", "mean"),   # fused sigmoid + binary cross-entropy
    ([3, 5, 2], "sigmoid", "sigmoid", "cross_entropy", "sum"),        # a log loss of sigmoid outputs
    ([3, 5, 3], "leaky_relu", "softmax", "binary_cross_entropy", "sum"),
    ([2, 3, 3, 3, 2], ["tanh", "softplus", "sigmoid"], "softmax", "cross_entropy", "mean"),
]


@pytest.mark.parametrize("sizes, hidden, output, loss, reduction", NETWORKS)
def test_hvp_equals_central_differences_of_the_gradient(sizes, hidden, output, loss, reduction):
    d = derive_matrix(sizes, hidden=hidden, output=output, loss=loss, reduction=reduction)
    values = d.random_values(batch=4, seed=3)
    direction = random_direction(sizes, seed=5)
    hv = derive_hvp(d).hvp(values, direction).named()
    numeric = _central_difference(d, values, direction)
    scale = max(np.abs(g).max() for g in hv.values())
    for name in hv:
        assert hv[name].shape == numeric[name].shape
        assert np.abs(hv[name] - numeric[name]).max() <= 1e-6 * max(1.0, scale), name


def test_hvp_on_a_medium_network_equals_central_differences():
    sizes = [64, 32, 16, 10]
    d = derive_matrix(sizes, hidden=["tanh", "sigmoid"], output="softmax", loss="cross_entropy", reduction="mean")
    values = d.random_values(batch=16, seed=11)
    direction = random_direction(sizes, seed=12)
    result = derive_hvp(d).hvp(values, direction)
    numeric = _central_difference(d, values, direction)
    for name, block in result.named().items():
        assert np.abs(block - numeric[name]).max() <= 1e-7, name
    # the gradient beside it is grad's own
    for name, g in result.gradient.named().items():
        assert np.array_equal(g, d.gradient(values).named()[name])


def _explicit_loss(weights, biases, x, y):
    """The 2-2-2 tanh / softmax / cross-entropy loss of one sample written out, from scratch."""
    hidden = [sp.tanh(sum(weights[0][j][i] * x[i] for i in range(2)) + biases[0][j]) for j in range(2)]
    logits = [sum(weights[1][k][j] * hidden[j] for j in range(2)) + biases[1][k] for k in range(2)]
    total = sum(sp.exp(z) for z in logits)
    return -sum(y[k] * sp.log(sp.exp(logits[k]) / total) for k in range(2))


def test_hvp_equals_the_hessian_of_the_explicit_loss_times_v():
    sizes = [2, 2, 2]
    d = derive_matrix(sizes, hidden="tanh", output="softmax", loss="cross_entropy", reduction="mean")
    values = d.random_values(batch=2, seed=7)
    direction = random_direction(sizes, seed=8)
    hv = derive_hvp(d).hvp(values, direction)

    W = [[[sp.Symbol(f"w_{l}_{j}_{i}") for i in range(sizes[l - 1])] for j in range(sizes[l])] for l in (1, 2)]
    b = [[sp.Symbol(f"b_{l}_{j}") for j in range(sizes[l])] for l in (1, 2)]
    params = [p for l in range(2) for p in [*(w for row in W[l] for w in row), *b[l]]]
    samples = values.x.shape[1]
    loss = sum(_explicit_loss(W, b, [sp.Float(values.x[i, m]) for i in range(2)],
                              [sp.Float(values.y[k, m]) for k in range(2)]) for m in range(samples)) / samples
    point = {}
    v = []
    for l in range(2):
        point.update({W[l][j][i]: values.weights[l][j, i] for j in range(2) for i in range(2)})
        point.update({b[l][j]: values.biases[l][j, 0] for j in range(2)})
        v += [direction.weights[l][j, i] for j in range(2) for i in range(2)] + [direction.biases[l][j, 0] for j in range(2)]
    H = np.array(sp.hessian(loss, params).subs(point).evalf(30), dtype=float)
    expected = H @ np.array(v)
    ours = np.concatenate([np.concatenate([w.ravel(), bb.ravel()]) for w, bb in zip(hv.hvp_W, hv.hvp_b)])
    assert np.abs(ours - expected).max() <= 1e-9


def test_the_r_steps_are_the_textbook_ones():
    h = derive_hvp(derive_matrix([2, 3, 2], hidden="sigmoid", output="softmax", loss="cross_entropy"))
    lines = [f"{text(s.lhs)} = {text(s.rhs)}  [{s.rule}]" for s in h.forward + h.steps]
    assert lines == [
        "R{z^1} = R{W^1} x + R{b^1}  [R of a product]",
        "R{a^1} = (a^1 ⊙ (1 - a^1)) ⊙ R{z^1}  [R of elementwise f]",
        "R{z^2} = R{W^2} a^1 + W^2 R{a^1} + R{b^2}  [R of a product]",
        "R{ŷ} = (Diag(ŷ) - ŷ ŷ^T) R{z^2}  [R of softmax]",
        "R{δ^2} = R{ŷ}  [R of the output delta]",
        "R{dE/dW^2} = R{δ^2} (a^1)^T + δ^2 (R{a^1})^T  [R of delta^T x]",
        "R{dE/db^2} = R{δ^2}  [R of z = x]",
        "R{δ^1} = (a^1 ⊙ (1 - a^1) ⊙ (1 - 2 a^1)) ⊙ R{z^1} ⊙ ((W^2)^T δ^2) + (a^1 ⊙ (1 - a^1)) ⊙ "
        "((R{W^2})^T δ^2 + (W^2)^T R{δ^2})  [R of the delta recursion]",
        "R{dE/dW^1} = R{δ^1} x^T  [R of delta^T x]",
        "R{dE/db^1} = R{δ^1}  [R of z = x]",
    ]
    assert [(text(q), shape) for q, shape in h.steps[1].shapes][:2] == [
        ("R{dE/dW^2}", (sp.Symbol("n_2", integer=True, positive=True), sp.Symbol("n_1", integer=True, positive=True))),
        ("R{δ^2}", (sp.Symbol("n_2", integer=True, positive=True), 1)),
    ]
    batch = [f"{text(s.lhs)} = {text(s.rhs)}" for s in h.batch_steps]
    assert batch[0] == "R{Δ^2} = R{Ŷ}" and batch[2] == "R{dE/db^2} = R{Δ^2} 1_N"


def test_a_direction_from_names_and_its_errors():
    v = direction_from_names([2, 3, 1], {"w_2_1_3": 2.0, "b_1_2": -1.0})
    assert v.weights[1].tolist() == [[0.0, 0.0, 2.0]] and v.biases[0][:, 0].tolist() == [0.0, -1.0, 0.0]
    with pytest.raises(NetworkError, match="w_3_1_1"):
        direction_from_names([2, 3, 1], {"w_3_1_1": 1.0})
    assert np.array_equal(random_direction([2, 3, 1], seed=4).weights[0], random_direction([2, 3, 1], seed=4).weights[0])


SMALL = """
[layers]
sizes = [2, 3, 2]
hidden = "tanh"
output = "softmax"
loss = "cross_entropy"
reduction = "mean"
seed = 1
batch = 4

[direction]
w_1_1_1 = 1.0
w_2_2_3 = -0.5
b_1_2 = 0.25
"""


def _args(spec, fmt="json", v=None, seed=None, output=None, pdf=False):
    return argparse.Namespace(spec=str(spec), v=v, seed=seed, format=fmt, values=None, bind=None,
                              output=None if output is None else str(output), pdf=pdf, title=None)


def _hvp(path, **options):
    out = io.StringIO()
    cli._run_hvp_matrix(_args(path, **options), load(path), out)
    return out.getvalue()


def test_the_json_contract_and_the_direction_table(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    first = _hvp(path)
    assert first == _hvp(path)  # deterministic
    record = json.loads(first)
    assert {"loss", "gradient", "hvp", "steps"} <= set(record)
    assert set(record["hvp"]) == {"W^1", "b^1", "W^2", "b^2"}
    assert record["steps"][0] == {"rule": "R of a product", "equation": "R{z^1} = R{W^1} x + R{b^1}",
                                  "because": ["R{x} = 0"], "shapes": {"R{z^1}": ["n_1", "1"], "R{W^1}": ["n_1", "n_0"],
                                                                      "x": ["n_0", "1"], "R{b^1}": ["n_1", "1"]}}
    d = derive_matrix([2, 3, 2], hidden="tanh", output="softmax", loss="cross_entropy", reduction="mean")
    values = d.random_values(batch=4, seed=1)
    direction = direction_from_names([2, 3, 2], {"w_1_1_1": 1.0, "w_2_2_3": -0.5, "b_1_2": 0.25})
    expected = _central_difference(d, values, direction)
    for name, rows in record["hvp"].items():
        assert np.abs(np.array(rows) - expected[name]).max() < 1e-8
    # --v as name=value gives the same as the table; a file's [direction] table too
    assert json.loads(_hvp(path, v="w_1_1_1=1.0,w_2_2_3=-0.5,b_1_2=0.25"))["hvp"] == record["hvp"]
    file = tmp_path / "v.toml"
    file.write_text("[direction]\nw_1_1_1 = 1.0\nw_2_2_3 = -0.5\nb_1_2 = 0.25\n")
    assert json.loads(_hvp(path, v=str(file)))["hvp"] == record["hvp"]
    random = json.loads(_hvp(path, v="random", seed=9))
    assert random == json.loads(_hvp(path, v="random", seed=9)) != json.loads(_hvp(path, v="random", seed=10))


def test_bad_directions_are_one_line_errors(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    with pytest.raises(cli.UsageError, match=r"--v w_9_1_1=1: w_9_1_1: no such weight"):
        _hvp(path, v="w_9_1_1=1")
    with pytest.raises(cli.UsageError, match="--v w_1_1_1=abc: not a number"):
        _hvp(path, v="w_1_1_1=abc")
    path.write_text(SMALL.replace("b_1_2 = 0.25", "t_1 = 0.25"))
    with pytest.raises(SpecError, match=r"\[direction\] t_1"):
        _hvp(path)
    path.write_text(SMALL.split("[direction]")[0])
    with pytest.raises(cli.UsageError, match="no direction v"):
        _hvp(path)


def test_the_hvp_verb_runs_the_matrix_form_when_it_exists(tmp_path, capsys):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    assert cli.main(["hvp", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["hvp"] == json.loads(_hvp(path))["hvp"]


@needs_tex
@pytest.mark.parametrize("network", ['sizes = [2, 3, 2]\nhidden = "tanh"\noutput = "softmax"\nloss = "cross_entropy"',
                                     'sizes = [3, 4, 4, 2]\nhidden = ["sigmoid", "relu"]\noutput = "sigmoid"\nloss = "half_sse"',
                                     'sizes = [20, 16, 3]\nhidden = "softplus"\noutput = "softmax"\nloss = "binary_cross_entropy"'])
def test_the_latex_compiles_without_overfull_boxes(network, tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(f"[layers]\n{network}\nreduction = \"mean\"\nseed = 2\nbatch = 3\n")
    tex = tmp_path / "hvp.tex"
    assert cli._run_hvp_matrix(_args(path, fmt="latex", v="random", seed=1, output=tex, pdf=True), load(path),
                               io.StringIO()) == 0
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert [float(x) for x in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)] == []
    body = tex.read_text()
    assert r"\mathcal{R}\{\mathbf{z}^{(1)}\} &= \mathcal{R}\{\mathbf{W}^{(1)}\} \mathbf{x} + \mathcal{R}\{\mathbf{b}^{(1)}\}" in body
    assert "agrees with" in body


def test_second_derivatives_are_written_with_the_layer_output():
    h = derive_hvp(derive_matrix([2, 3, 3, 3, 1], hidden=["sigmoid", "tanh", "softplus"], output="identity",
                                 loss="half_sse"))
    recursions = [text(s.rhs).split(" ⊙ R{z")[0] for s in h.steps if s.rule == "R of the delta recursion"]
    assert recursions == ["(σ(z^3) ⊙ (1 - σ(z^3)))", "(-2 a^2 ⊙ (1 - (a^2)^2))", "(a^1 ⊙ (1 - a^1) ⊙ (1 - 2 a^1))"]
    relu = derive_hvp(derive_matrix([2, 3, 1], hidden="relu", output="identity", loss="half_sse"))
    assert text(relu.steps[-3].rhs) == "step(z^1) ⊙ ((R{W^2})^T δ^2 + (W^2)^T R{δ^2})"  # relu'' = 0: no first term


@pytest.mark.parametrize("example", ["swish_layers.toml", "generic_layers.toml"])
def test_defined_and_bound_activations(example):
    from pathlib import Path

    from symprop.matrix import from_layers

    layers = load(Path(__file__).resolve().parent.parent / "examples" / example)
    symbolic = derive_hvp(derive_matrix(layers.sizes, layers.hidden, layers.output, layers.loss,
                                        reduction=layers.reduction, functions=layers.functions))
    name = layers.hidden if isinstance(layers.hidden, str) else layers.hidden[0]
    assert f"{name}''(z^1)" in text(symbolic.steps[-3].rhs) or "(1 - 2 a^1)" in text(symbolic.steps[-3].rhs)
    d, values = from_layers(layers.bound())
    direction = random_direction(d.sizes, seed=2)
    hv = derive_hvp(d).hvp(values, direction).named()
    numeric = _central_difference(d, values, direction)
    assert max(np.abs(hv[k] - numeric[k]).max() for k in hv) < 1e-7
