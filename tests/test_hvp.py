"""Hessian-vector products by the R-operator (symprop.hvp, `symprop hvp`, `symprop hessian`).

The references are independent of symprop's rules: sympy.hessian of the fully substituted,
explicit loss (every symprop function rewritten in elementary SymPy), and central differences
of symprop's gradient along v.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symprop import Network, functions as F, gradient, sigmoid
from symprop.cli import main
from symprop.documents.hvp import hvp_context, render_hvp_solution, shown_steps
from symprop.hvp import SecondPartial, derive_hvp, hessian, hvp, second_partial
from symprop.printing import latex, latex_chain, spec_chain, spec_string, text, text_chain

from dags import LOSSES, evaluate

SWISH = F.define_function("swish", F.U * sigmoid(F.U), F.U)
SMOOTH = ["sigmoid", "tanh", "softplus", "exp", "log", "swish", "product"]


def _activation(rng, name, u, available):
    if name == "sigmoid":
        return sigmoid(u)
    if name == "tanh":
        return sp.tanh(u)
    if name == "softplus":
        return F.softplus(u)
    if name == "exp":
        return sp.exp(u / 4)
    if name == "log":
        return sp.log(1 + u**2)  # defined everywhere, twice differentiable
    if name == "swish":
        return SWISH(u)
    return u * rng.choice(available)  # a product of two values


@st.composite
def smooth_dags(draw, max_hidden=4):
    """A random DAG of twice-differentiable nodes (fan-out, skips, shared weights), every loss."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    inputs = [sp.Symbol(f"x_{i}") for i in range(1, draw(st.integers(1, 2)) + 1)]
    pool = [sp.Symbol(f"w_{i}") for i in range(1, draw(st.integers(2, 4)) + 1)]
    nodes, available = {}, list(inputs)
    for k in range(1, draw(st.integers(1, max_hidden)) + 1):
        reads = rng.sample(available, rng.randint(1, min(2, len(available))))
        u = sp.Add(*[rng.choice(pool) * r for r in reads])
        z = sp.Symbol(f"z_{k}")
        nodes[z] = _activation(rng, draw(st.sampled_from(SMOOTH)), u, available)
        available.append(z)
    hidden = [s for s in available if s not in inputs]
    outs = [hidden[-1]] + [h for h in hidden[:-1] if rng.random() < 0.4]
    loss = draw(st.sampled_from(LOSSES))
    targets = [sp.Symbol(f"t_{j}") for j in range(1, len(outs) + 1)]
    E = sp.Symbol("E")
    if loss == "cross_entropy":
        nodes[E] = F.cross_entropy([sigmoid(o) for o in outs], targets)
    elif loss == "binary_cross_entropy":
        nodes[E] = F.binary_cross_entropy(sigmoid(outs[0]), targets[0])
        targets = targets[:1]
    elif loss == "softmax_cross_entropy":
        nodes[E] = F.softmax_cross_entropy_of(outs, targets)
    else:
        nodes[E] = getattr(F, loss)(outs, targets)
    used = set().union(*[e.free_symbols for e in nodes.values()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Network(nodes, loss=E, params=[p for p in pool if p in used], inputs=inputs,
                       targets=[t for t in targets if t in used])


def _point(net, seed):
    rng = random.Random(seed)
    point = {s: rng.randint(-80, 80) / 100 for s in net.inputs + net.params}
    raw = [rng.randint(1, 9) for _ in net.targets]
    point.update({t: r / sum(raw) for t, r in zip(net.targets, raw)})
    return point


def _explicit_loss(net):
    full = net.nodes[net.loss]
    for k in reversed(net.order):
        full = full.xreplace({k: net.nodes[k]})
    return F.explicit(full)


def _reference_hessian(net, point):
    """sympy.hessian of the explicit loss, evaluated at the point in 30 digits."""
    full = _explicit_loss(net)
    real = {s: sp.Dummy(s.name, real=True) for s in full.free_symbols}
    H = sp.hessian(full.xreplace(real), [real.get(p, p) for p in net.params])
    at = {real[s]: sp.Float(v, 30) for s, v in point.items() if s in real}
    return np.array([[float(sp.N(H[i, j].xreplace(at), 30)) for j in range(H.cols)] for i in range(H.rows)])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(smooth_dags(), st.integers(0, 10**6))
def test_hvp_equals_sympy_hessian_times_v_on_random_dags(net, seed):
    point = _point(net, seed)
    rng = random.Random(seed + 1)
    v = {p: rng.uniform(-1, 1) for p in net.params}
    result = hvp(net, {s.name: x for s, x in point.items()}, {p.name: x for p, x in v.items()})
    H = _reference_hessian(net, point)
    expected = H @ np.array([v[p] for p in net.params])
    got = np.array([result.hvp[p] for p in net.params])
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-9), (net.nodes, got, expected)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(smooth_dags(), st.integers(0, 10**6))
def test_hvp_equals_central_differences_of_the_gradient_along_v(net, seed):
    point = {s.name: x for s, x in _point(net, seed).items()}
    rng = random.Random(seed + 2)
    v = {p.name: rng.uniform(-1, 1) for p in net.params}
    h = 1e-5

    def grad_at(sign):
        shifted = {k: x + sign * h * v.get(k, 0.0) for k, x in point.items()}
        return np.array([gradient(net, shifted).gradient[p] for p in net.params])

    differences = (grad_at(+1) - grad_at(-1)) / (2 * h)
    got = np.array([hvp(net, point, v).hvp[p] for p in net.params])
    assert np.allclose(got, differences, rtol=1e-6, atol=1e-7), (got, differences)


def test_a_batch_reduces_hv_as_the_gradient_is_reduced():
    x, t, w, b, h, E = sp.symbols("x t w b h E")
    for reduction in ("sum", "mean"):
        net = Network({h: sp.tanh(w * x + b), E: (t - h) ** 2 / 2}, loss=E, params=[w, b], inputs=[x], targets=[t],
                      reduction=reduction)
        batch = hvp(net, {"x": [0.5, -1.0, 2.0], "t": [1.0, 0.0, 0.5], "w": 0.3, "b": -0.2}, {"w": 1.0, "b": 2.0})
        singles = [hvp(net, {"x": xs, "t": ts, "w": 0.3, "b": -0.2}, {"w": 1.0, "b": 2.0}).hvp
                   for xs, ts in [(0.5, 1.0), (-1.0, 0.0), (2.0, 0.5)]]
        for p in (w, b):
            total = sum(s[p] for s in singles)
            assert batch.hvp[p] == pytest.approx(total / 3 if reduction == "mean" else total, rel=1e-12)


# -- second derivatives of every primitive ----------------------------------------------------

KINKED = {"relu", "leaky_relu", "step", "sign", "max", "min", "abs"}


def _calls():
    """A call of every built-in primitive that takes scalars, in a symbol u (and a second)."""
    u, a = sp.Symbol("u", real=True), sp.Symbol("a", real=True)
    for name, record in sorted(F.BUILTINS.items()):
        if record.build is None or any("L" in s or "k" in s for s in record.shapes):
            continue
        shape = record.shapes[0]
        args = [u, a][:len(shape.rstrip("+"))] if shape else [u]
        try:
            yield name, record.build(*args), u
        except TypeError:
            continue


@pytest.mark.parametrize("name,call,u", list(_calls()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_primitive_derivative_can_be_differentiated_again(name, call, u):
    x, w, E, a = sp.Symbol("x"), sp.Symbol("w"), sp.Symbol("E"), sp.Symbol("a", real=True)
    expr = call.xreplace({u: w * x})
    net = Network({E: expr}, loss=E, params=[w], inputs=[x] + ([a] if a in expr.free_symbols else []))
    second = second_partial(net, E, w, w)
    assert not second.has(sp.Derivative, sp.Subs), (name, second)
    if name in KINKED:
        assert second == 0, (name, second)  # 0 almost everywhere: step' = sign' = 0
    else:  # against sympy.diff of the explicit form, twice, at a point off any kink
        point = {x: sp.Rational(3, 5), w: sp.Rational(7, 10), a: sp.Rational(1, 3)}  # u = 0.42: inside every domain
        xr, wr = sp.Symbol("x", real=True), sp.Symbol("w", real=True)
        explicit = F.explicit(net.nodes[E]).xreplace({x: xr, w: wr})
        reference = sp.diff(explicit, wr, 2).xreplace({xr: point[x], wr: point[w]}).xreplace(point)
        assert float(sp.N(second.xreplace(point))) == pytest.approx(float(sp.N(reference)), rel=1e-12, abs=1e-14)


def test_generic_and_defined_functions_have_second_derivatives():
    g = F.generic("g")
    x, w, E = sp.symbols("x w E")
    net = Network({E: g(w * x) + SWISH(w * x)}, loss=E, params=[w], inputs=[x])
    assert text(second_partial(net, E, w, w)) == "x**2*g''(w*x) + x**2*swish''(w*x)"
    # numbers with g bound to tanh: tanh'' = -2 tanh (1 - tanh²)
    r = hvp(net, {"x": 0.5, "w": 0.4}, {"w": 1.0}, bind={"g": "tanh"})
    u = 0.2
    swish2 = sp.diff(sp.Symbol("u") / (1 + sp.exp(-sp.Symbol("u"))), sp.Symbol("u"), 2).subs(sp.Symbol("u"), u)
    expected = 0.25 * (-2 * np.tanh(u) * (1 - np.tanh(u) ** 2) + float(swish2))
    assert r.hvp[w] == pytest.approx(expected, rel=1e-12)


def test_a_relu_network_has_the_gauss_newton_hessian():
    """relu'' = 0 almost everywhere: the Hessian of a least-squares relu net is the Gauss-Newton
    matrix J^T J plus the residual times the output's cross partials (∂²o/∂w_2∂w_1 = x, ∂²o/∂w_2∂b
    = 1), and no term from the relu's second derivative."""
    x, t, w1, w2, b, h, o, E = sp.symbols("x t w_1 w_2 b h o E")
    net = Network({h: F.relu(w1 * x + b), o: w2 * h, E: (o - t) ** 2 / 2}, loss=E, params=[w1, w2, b],
                  inputs=[x], targets=[t])
    values = {"x": 0.7, "t": 0.2, "w_1": 0.9, "w_2": -1.3, "b": 0.1}
    H = hessian(net, values)
    J = np.array([[-1.3 * 0.7, 0.9 * 0.7 + 0.1, -1.3]])  # do/d(w_1, w_2, b), h = 0.73 > 0
    assert np.allclose(H.gauss_newton, J.T @ J, rtol=1e-12)
    o_value = -1.3 * (0.9 * 0.7 + 0.1)
    expected = J.T @ J
    expected[0, 1] += (o_value - 0.2) * 0.7  # δ_o ∂²o/∂w_2∂w_1 = (o - t) x
    expected[1, 0] += (o_value - 0.2) * 0.7
    expected[1, 2] += (o_value - 0.2)
    expected[2, 1] += (o_value - 0.2)
    assert np.allclose(H.matrix, expected, rtol=1e-12)


# -- the full Hessian -------------------------------------------------------------------------

@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(smooth_dags(max_hidden=3), st.integers(0, 10**6))
def test_hessian_and_its_eigenvalues_against_sympy_and_numpy(net, seed):
    point = _point(net, seed)
    H = hessian(net, {s.name: x for s, x in point.items()})
    reference = _reference_hessian(net, point)
    assert np.allclose(H.matrix, reference, rtol=1e-9, atol=1e-9)
    assert np.allclose(H.eigenvalues, np.linalg.eigvalsh(reference), rtol=1e-8, atol=1e-9)
    # each symbolic entry H_ij, evaluated at the forward values (symprop's functions rewritten in
    # elementary SymPy by tests/dags.py), is the number
    numbers = hvp(net, {s.name: x for s, x in point.items()}, {}).numbers
    at = {s: float(v[0]) for s, v in numbers.items() if not isinstance(s, sp.Dummy)}
    for i, row in enumerate(H.entries):
        for j, e in enumerate(row):
            assert evaluate(e, {s: at[s] for s in e.free_symbols}) == pytest.approx(reference[i, j], rel=1e-8, abs=1e-9)


def test_gauss_newton_matrix_is_j_transpose_hl_j_from_sympy():
    x1, x2, t1, t2, w1, w2, w3, w4, o1, o2, E = sp.symbols("x_1 x_2 t_1 t_2 w_1 w_2 w_3 w_4 o_1 o_2 E")
    net = Network({o1: sp.tanh(w1 * x1 + w2 * x2), o2: sigmoid(w3 * x1 * w4), E: F.softmax_cross_entropy_of([o1, o2], [t1, t2])},
                  loss=E, params=[w1, w2, w3, w4], inputs=[x1, x2], targets=[t1, t2])
    point = {x1: 0.4, x2: -0.6, t1: 0.25, t2: 0.75, w1: 0.3, w2: 0.8, w3: -0.5, w4: 1.1}
    H = hessian(net, {s.name: v for s, v in point.items()})
    outs = [F.explicit(net.nodes[o1]), F.explicit(net.nodes[o2])]
    J = sp.Matrix(outs).jacobian([w1, w2, w3, w4]).xreplace(point)
    a, b = sp.symbols("a b")
    loss = F.explicit(net.nodes[E].xreplace({o1: a, o2: b}))
    HL = sp.hessian(loss, [a, b]).xreplace({a: outs[0].xreplace(point), b: outs[1].xreplace(point), **point})
    expected = np.array((J.T * HL * J).evalf(30).tolist(), dtype=float)
    assert H.outputs == (o1, o2)
    assert np.allclose(H.gauss_newton, expected, rtol=1e-10)
    assert np.allclose(H.matrix, _reference_hessian(net, point), rtol=1e-9)


def test_a_loss_that_reads_a_parameter_has_no_gauss_newton_split():
    x, w, o, E = sp.symbols("x w o E")
    net = Network({o: sp.tanh(w * x), E: o**2 + w**2 / 10}, loss=E, params=[w], inputs=[x])
    H = hessian(net, {"x": 1.0, "w": 0.5})
    assert H.gauss_newton is None and H.note.startswith("no Gauss-Newton matrix: the loss E reads w itself")


def test_the_hessian_refuses_a_big_network(monkeypatch):
    from symprop import limits

    monkeypatch.setattr(limits, "MAX_HESSIAN_PARAMS", 3)
    with pytest.raises(Exception, match="MAX_HESSIAN_PARAMS = 3"):
        hessian(_small()[0], _small()[1])


# -- golden steps ----------------------------------------------------------------------------

def _small():
    from symprop.spec import load_spec

    spec = load_spec(EXAMPLE)
    return spec.network, {s.name: v for s, v in spec.values.items()}


from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hvp_small.toml"


def test_golden_r_operator_steps_of_a_small_network():
    net, _ = _small()
    d = derive_hvp(net)
    lines = [f"{text(s.lhs)} = {text_chain(s.rhs)}  [{s.rule}]" for s in d.steps]
    assert lines[:2] == ["R{h_1} = ∂h_1/∂w_1*v_w_1 + ∂h_1/∂w_2*v_w_2 + ∂h_1/∂b_1*v_b_1  [R forward]",
                         "∂h_1/∂w_1 = (1 - h_1**2)*x_1  [local partial]"]
    assert "R{o_1} = ∂o_1/∂w_3*v_w_3 + ∂o_1/∂h_1*R{h_1}  [R forward]" in lines
    assert "R{dE/do_1} = R{∂E/∂o_1}  [R backward]" in lines
    assert "R{∂E/∂o_1} = ∂²E/∂o_1²*R{o_1}  [R of a local partial]" in lines
    assert "R{dE/dh_1} = R{dE/do_1}*∂o_1/∂h_1 + dE/do_1*R{∂o_1/∂h_1}  [R backward]" in lines
    assert "R{∂o_1/∂h_1} = ∂²o_1/∂h_1∂w_3*v_w_3 + ∂²o_1/∂h_1²*R{h_1}  [R of a local partial]" in lines
    assert "∂²h_1/∂w_1² = (-2)*(1 - h_1**2)*x_1**2*h_1  [second local partial]" in lines
    assert "(Hv)_w_3 = R{dE/do_1}*∂o_1/∂w_3 + dE/do_1*R{∂o_1/∂w_3}  [Hessian-vector product]" in lines
    # the spec spellings of JSON, and LaTeX
    step = next(s for s in d.steps if s.lhs.name == "Hv_w_3")
    assert f"{spec_string(step.lhs)} = {spec_chain(step.rhs)}" == "Hv_w_3 = R_dE_do_1*po_1_pw_3 + dE_do_1*R_po_1_pw_3"
    assert latex(step.lhs) + " = " + latex_chain(step.rhs) == (
        r"(\mathbf{H}\mathbf{v})_{w_{3}} = \mathcal{R}\left\{\frac{d E}{d o_{1}}\right\} \frac{\partial o_{1}}{\partial w_{3}}"
        r" + \frac{d E}{d o_{1}} \mathcal{R}\left\{\frac{\partial o_{1}}{\partial w_{3}}\right\}")
    second = next(s for s in d.steps if s.rule == "second local partial" and s.lhs.name == "p2o_1_ph_1_pw_3")
    assert latex(second.lhs) == r"\frac{\partial^{2} o_{1}}{\partial h_{1} \partial w_{3}}"
    square = next(s for s in d.steps if s.rule == "second local partial" and s.lhs.name == "p2E_po_1_po_1")
    assert latex(square.lhs) == r"\frac{\partial^{2} E}{\partial {o_{1}}^{2}}"  # braced: a^{2}_{1} squared compiles


# -- the command line ----------------------------------------------------------------------------

def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_hvp_json_is_strict_and_deterministic(capsys):
    status, out, err = _run(["hvp", str(EXAMPLE), "--format", "json"], capsys)
    assert status == 0, err
    record = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert set(record) == {"loss", "gradient", "direction", "hvp", "steps"}
    net, values = _small()
    expected = hvp(net, values, {"w_1": 1.0, "w_3": -0.5})
    assert record["hvp"] == {str(p): expected.hvp[p] for p in net.params}
    assert record["direction"] == {"w_1": 1.0, "w_2": 0.0, "b_1": 0.0, "w_3": -0.5}
    assert record["steps"][0] == {"rule": "R forward", "equation": "R_h_1 = ph_1_pw_1*v_w_1 + ph_1_pw_2*v_w_2 + ph_1_pb_1*v_b_1",
                                  "value": pytest.approx(0.41100061468452, rel=1e-12)}
    assert _run(["hvp", str(EXAMPLE), "--format", "json"], capsys)[1] == out


def test_cli_hvp_takes_v_as_pairs_a_file_or_random(tmp_path, capsys):
    pairs = json.loads(_run(["hvp", str(EXAMPLE), "--v", "w_2=2,b_1=-1", "--format", "json"], capsys)[1])
    net, values = _small()
    assert pairs["hvp"] == {str(p): x for p, x in hvp(net, values, {"w_2": 2, "b_1": -1}).hvp.items()}
    f = tmp_path / "v.toml"
    f.write_text("[direction]\nw_2 = 2\nb_1 = -1\n")
    assert json.loads(_run(["hvp", str(EXAMPLE), "--v", str(f), "--format", "json"], capsys)[1])["hvp"] == pairs["hvp"]
    a = _run(["hvp", str(EXAMPLE), "--v", "random", "--seed", "3", "--format", "json"], capsys)[1]
    assert a == _run(["hvp", str(EXAMPLE), "--v", "random", "--seed", "3", "--format", "json"], capsys)[1]


@pytest.mark.parametrize("argv,message", [
    (["--v", "w_9=1"], "--v w_9=1: 'w_9' is not a parameter; the direction v has one number per parameter"),
    (["--v", "w_1=abc"], "--v w_1=abc: not a number"),
    (["--v", "w_1=inf"], "--v w_1=inf: not a finite number"),
    (["--v", "w_1=1,w_1=2"], "--v w_1: given twice"),
    (["--v", "w_1"], "no such file"),
    (["--pdf"], "--pdf needs --format latex and -o FILE.tex"),
])
def test_cli_hvp_errors_are_one_line(argv, message, capsys):
    status, out, err = _run(["hvp", str(EXAMPLE), *argv], capsys)
    assert status == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("table,message", [
    ("[direction]\nw_9 = 1\n", "[direction] w_9: 'w_9' is not a parameter"),
    ("[direction]\nx_1 = 1\n", "[direction] x_1: 'x_1' is not a parameter"),
    ("[direction]\nw_1 = [1, 2]\n", "[direction] w_1: one number: the direction v is not a batch"),
    ("[direction]\nw_1 = \"a\"\n", "[direction] w_1: must be a number"),
    ("", "no direction v: give --v FILE"),
])
def test_a_bad_direction_table_names_the_key(table, message, tmp_path, capsys):
    text_ = EXAMPLE.read_text().split("\n[direction]\n")[0] + "\n" + table
    spec = tmp_path / "d.toml"
    spec.write_text(text_)
    status, out, err = _run(["hvp", str(spec)], capsys)
    assert status == 2 and message in err and err.count("\n") == 1, err


def test_cli_hessian_text_and_json(capsys):
    status, out, err = _run(["hessian", str(EXAMPLE), "--format", "json"], capsys)
    assert status == 0, err
    record = json.loads(out)
    net, values = _small()
    H = hessian(net, values)
    assert record["hessian"] == H.matrix.tolist() and record["params"] == ["w_1", "w_2", "b_1", "w_3"]
    assert record["eigenvalues"] == pytest.approx(np.linalg.eigvalsh(np.array(record["hessian"])).tolist(), abs=1e-15)
    assert record["outputs"] == ["o_1"] and len(record["gauss_newton"]) == 4
    status, out, err = _run(["hessian", str(EXAMPLE)], capsys)
    assert status == 0 and "eigenvalues:" in out and "Gauss-Newton J^T H_L J" in out


def test_cli_hessian_refuses_past_its_limit(monkeypatch, capsys):
    from symprop import limits

    monkeypatch.setattr(limits, "MAX_HESSIAN_PARAMS", 2)
    status, out, err = _run(["hessian", str(EXAMPLE)], capsys)
    assert status == 2 and "MAX_HESSIAN_PARAMS = 2; set SYMPROP_MAX_HESSIAN_PARAMS" in err and "symprop hvp" in err


# -- the worked solution ------------------------------------------------------------------------

pdflatex = pytest.mark.skipif(subprocess.run(["which", "pdflatex"], capture_output=True).returncode != 0,
                              reason="pdflatex is not installed")


@pdflatex
@pytest.mark.parametrize("verb", [["solve", "--hvp"], ["hvp", "--format", "latex"]])
def test_the_worked_solution_compiles_without_overfull_boxes(verb, tmp_path, capsys):
    import re

    out = tmp_path / "hvp.tex"
    status, _, err = _run([verb[0], str(EXAMPLE), *verb[1:], "-o", str(out), "--pdf"], capsys)
    assert status == 0, err
    log = out.with_suffix(".log").read_text(errors="replace")
    widths = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide", log)]
    assert max(widths, default=0) <= 1, widths
    tex = out.read_text()
    net, values = _small()
    r = hvp(net, values, {"w_1": 1.0, "w_3": -0.5})
    for p in net.params:  # every Hv entry boxed with the number hvp gives
        assert rf"\boxed{{{float(f'{r.hvp[p]:.4g}'):.4g}}}" in tex
    pdf_text = subprocess.run(["pdftotext", str(out.with_suffix(".pdf")), "-"], capture_output=True, text=True).stdout
    assert "R-forward pass" in pdf_text and "central differences" in pdf_text


@pdflatex
def test_the_worked_solution_of_the_small_network_fits_three_pages(tmp_path, capsys):
    out = tmp_path / "hvp.tex"
    status, _, err = _run(["solve", str(EXAMPLE), "--hvp", "-o", str(out), "--pdf"], capsys)
    assert status == 0, err
    info = subprocess.run(["pdfinfo", str(out.with_suffix(".pdf"))], capture_output=True, text=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages <= 3, pages  # it was 8 before the rules were stated once and zero terms left out
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import read_documents

    assert read_documents.overlapping_words(out.with_suffix(".pdf")) == []  # the rule tags beside the rows


@pdflatex
def test_the_worked_solution_of_defined_functions_compiles_without_overfull_boxes(tmp_path, capsys):
    out = tmp_path / "cf.tex"
    spec = ROOT / "examples" / "custom_functions.toml"
    status, _, err = _run(["hvp", str(spec), "--v", "random", "--seed", "1", "--format", "latex", "-o", str(out),
                           "--pdf"], capsys)
    assert status == 0, err
    log = out.with_suffix(".log").read_text(errors="replace")
    assert max([float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide", log)], default=0) <= 1
    tex = out.read_text()
    # swish'' is "from the definition of swish' (above)": the definitions are listed with the network
    assert r"\operatorname{swish}'(u) &=" in tex and r"\operatorname{swish}''" in tex


def _small_document(v=None):
    net, values = _small()
    result = hvp(net, values, v or {"w_1": 1.0, "w_3": -0.5})
    return result, render_hvp_solution(result), hvp_context(result)


def _derived_rows(tex):
    """The left-hand sides of the displayed rows, one entry per row: ``a = b &= ...`` gives (a, b)."""
    return [tuple(line.split(" &= ")[0].split(" = ")) for line in tex.splitlines()
            if " &= " in line and not line.startswith(" ")]  # a row's continuation lines are indented


def test_each_second_partial_is_derived_once_and_a_symmetric_pair_once():
    result, tex, _ = _small_document()
    rows = _derived_rows(tex)
    seconds = [names for names in rows if r"\partial^{2}" in names[0]]
    quantities = [frozenset((s.of, frozenset((s.wrt, s.by)))) for s in shown_steps(result.derivation, result.direction)
                  if isinstance(s, SecondPartial)]
    assert len(seconds) == len(set(quantities))  # one row per distinct second partial
    names = [n for row in seconds for n in row]
    assert len(names) == len(set(names))  # no name derived twice
    # ∂²o_1/∂w_3∂h_1 and ∂²o_1/∂h_1∂w_3 are one quantity: one row under both names
    assert (r"\frac{\partial^{2} o_{1}}{\partial w_{3} \partial h_{1}}",
            r"\frac{\partial^{2} o_{1}}{\partial h_{1} \partial w_{3}}") in seconds
    # every row's left-hand side is derived once in the whole document (first partials, R-values too)
    flat = [n for row in rows for n in row]
    assert len(flat) == len(set(flat)), [n for n in flat if flat.count(n) > 1]


def test_terms_with_a_zero_direction_entry_are_left_out():
    result, tex, context = _small_document()
    passes = "\n".join(line for p in context["passes"] for r in p["rows"] for line in [r["lhs"], *r["lines"]])
    assert "v_{w_{2}}" not in passes and "v_{b_{1}}" not in passes  # v_w2 = v_b1 = 0
    assert r"\mathcal{R}\left\{h_{1}\right\} &= \frac{\partial h_{1}}{\partial w_{1}} v_{w_{1}} = 0.411 \cdot 1 = 0.411" in tex
    assert tex.count("terms with $v = 0$ are left out") == 1
    shown = shown_steps(result.derivation, result.direction)
    zero = [sp.Symbol("w_2"), sp.Symbol("b_1")]  # ∂²h_1/∂w_1∂w_2 etc. multiply v_w2 or v_b1 only
    assert not [s for s in shown if isinstance(s, SecondPartial) and s.by in zero]
    # with every entry of v nonzero, nothing is left out and the sentence is not there
    _, full, _ = _small_document({"w_1": 1.0, "w_2": 0.5, "b_1": -2.0, "w_3": -0.5})
    assert "left out}" not in full and r"\frac{\partial h_{1}}{\partial w_{2}} v_{w_{2}}" in full


def test_the_formulas_left_after_dropping_zero_terms_give_the_same_numbers():
    """Each shown sum, with the numbers of the first sample put in, equals the value hvp computed."""
    for v in ({"w_1": 1.0, "w_3": -0.5}, {"w_2": 2.0}, {"b_1": 0.0}):
        result, _, _ = _small_document(v)
        first = {s: float(x[0]) for s, x in result.numbers.items()}
        steps = {s.lhs: s for s in result.derivation.steps}
        for symbol, rhs in shown_steps(result.derivation, result.direction).items():
            if steps[symbol].rule in ("local partial", "second local partial"):
                continue
            got = float(rhs.xreplace(first))
            assert got == pytest.approx(first[symbol], rel=1e-12, abs=1e-15), (symbol, rhs)


def test_rules_are_stated_once_and_rows_carry_their_letters():
    _, tex, context = _small_document()
    sentences = [r["sentence"] for b in context["partials"] for r in b["rules"]]
    assert len(sentences) == len(set(sentences))
    assert tex.count(r"$\tanh'(u) = 1 - \tanh^2(u)$") == 1  # once, though four rows use it
    assert "differentiated once more)" not in tex  # the old per-step sentence
    blocks = {b["node"]: b for b in context["partials"]}
    assert [r["tag"] for r in blocks["h_{1}"]["rows"][:3]] == ["a, b", "a, b", "a"]


def test_solve_hvp_output_is_byte_identical(capsys):
    a = _run(["solve", str(EXAMPLE), "--hvp"], capsys)[1]
    assert a == _run(["solve", str(EXAMPLE), "--hvp"], capsys)[1] and a.startswith(r"\#") is False


def test_a_loss_with_a_weight_penalty_and_a_softmax_node_against_sympy():
    """The loss reads a parameter itself (δ_E R{∂E/∂w} terms) and a hidden softmax node."""
    x1, x2, t1, t2, w1, w2, w3, p1, p2, E = sp.symbols("x_1 x_2 t_1 t_2 w_1 w_2 w_3 p_1 p_2 E")
    u = [w1 * x1 + w3 * x2, w2 * x2 * x1]
    net = Network({p1: F.softmax(1, *u), p2: F.softmax(2, *u),
                   E: F.cross_entropy([p1, p2], [t1, t2]) + w1**2 * w2 / 10}, loss=E, params=[w1, w2, w3],
                  inputs=[x1, x2], targets=[t1, t2])
    point = {x1: 0.4, x2: -0.9, t1: 0.3, t2: 0.7, w1: 0.5, w2: -1.2, w3: 0.8}
    v = {w1: 0.3, w2: -0.7, w3: 1.1}
    got = hvp(net, {s.name: x for s, x in point.items()}, {p.name: x for p, x in v.items()}).hvp
    expected = _reference_hessian(net, point) @ np.array([v[p] for p in net.params])
    assert np.allclose([got[p] for p in net.params], expected, rtol=1e-9, atol=1e-12)


def test_kinked_gates_add_no_second_derivative_away_from_their_kinks():
    x, t, w1, w2, h, m, E = sp.symbols("x t w_1 w_2 h m E")
    net = Network({h: F.relu(w1 * x), m: F.maximum(h * w2, w1 * x * x), E: (m - t) ** 2 / 2},
                  loss=E, params=[w1, w2], inputs=[x], targets=[t])
    point = {"x": 0.8, "t": -0.3, "w_1": 0.6, "w_2": 1.7}
    v = {"w_1": 0.4, "w_2": -1.0}
    h_ = 1e-6
    shifted = [{**point, **{k: point[k] + s * h_ * v[k] for k in v}} for s in (+1, -1)]
    differences = [(gradient(net, shifted[0]).gradient[p] - gradient(net, shifted[1]).gradient[p]) / (2 * h_)
                   for p in net.params]
    got = hvp(net, point, v).hvp
    assert np.allclose([got[p] for p in net.params], differences, rtol=1e-6)


def test_a_second_derivative_that_overflows_is_one_line(tmp_path, capsys):
    spec = tmp_path / "log.toml"
    spec.write_text('[network]\nparams = ["w"]\nloss = "E"\n[nodes]\nE = "log(w)"\n[values]\nw = 1e-200\n'
                    '[direction]\nw = 1\n')
    for verb in (["hvp", "--format", "json"], ["hessian", "--format", "json"]):
        status, out, err = _run([verb[0], str(spec), *verb[1:]], capsys)
        assert status == 2 and out == "" and "∂²E/∂w² is not finite" in err and err.count("\n") == 1


def test_a_title_is_escaped_in_the_worked_solution(capsys):
    status, out, _ = _run(["hvp", str(EXAMPLE), "--format", "latex", "--title", r"50% & \input{/etc/passwd}"], capsys)
    assert status == 0 and r"\input{/etc/passwd}" not in out and r"50\% \&" in out


def test_solve_hvp_without_a_direction_table_is_one_line(tmp_path, capsys):
    spec = tmp_path / "d.toml"
    spec.write_text(EXAMPLE.read_text().split("\n[direction]\n")[0] + "\n")
    status, out, err = _run(["solve", str(spec), "--hvp"], capsys)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "no direction v: solve --hvp takes the spec's [direction] table" in err
