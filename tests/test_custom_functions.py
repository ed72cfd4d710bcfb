"""User-defined activations: a [functions] table in a spec (or define_function in Python)
makes a primitive that works everywhere a built-in does."""

import json
import math
import shutil

import numpy as np
import pytest
import sympy as sp

from symprop import derive, functions as F, mlp
from symprop.cli import main
from symprop.matrix import from_layers
from symprop.numeric import gradient
from symprop.spec import Layers, SpecError, from_text, load, load_spec, parse_expression
from example_files import EXAMPLES_DIR

CUSTOM = EXAMPLES_DIR / "custom_functions.toml"
SWISH_LAYERS = EXAMPLES_DIR / "swish_layers.toml"
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


REAL = {}


def real(s):
    """The real symbol of a leaf: |u|' is sign(u) for real u only, in sympy.diff."""
    return REAL.setdefault(s, sp.Symbol(s.name, real=True))


def explicit_loss(spec):
    """The loss in (real) leaves only, every function in elementary SymPy: sympy.diff's input."""
    net = spec.network
    full = {}
    for k in net.order:
        full[k] = net.nodes[k].xreplace({s: full[s] for s in net.producers[k] if s in full})
    return F.explicit(full[net.loss]).xreplace({s: real(s) for s in net.leaves})


def test_the_example_gradient_is_sympy_diff_and_central_differences():
    spec = load_spec(CUSTOM)
    loss = explicit_loss(spec)
    point = {real(s): sp.Float(v, 30) for s, v in spec.values.items()}
    engine = gradient(spec.network, spec.values)
    f = sp.lambdify(list(point), loss, "mpmath")
    for p in spec.network.params:
        reference = float(sp.diff(loss, real(p)).xreplace(point).evalf(30))
        assert engine.gradient[p] == pytest.approx(reference, rel=1e-12, abs=1e-15)
        h = 1e-6
        args = {s.name: float(v) for s, v in point.items()}
        up, down = dict(args), dict(args)
        up[p.name] += h
        down[p.name] -= h
        central = float((f(**up) - f(**down)) / (2 * h))
        assert engine.gradient[p] == pytest.approx(central, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("method", ["top-down", "bottom-up", "paths"])
def test_every_method_derives_the_shared_weight(method, capsys):
    status, out, _ = run(["derive", CUSTOM, "--wrt", "w", "--method", method, "--format", "json"], capsys)
    assert status == 0
    record = json.loads(out)["derivations"][0]
    spec = load_spec(CUSTOM)
    result = parse_expression(record["result"], spec.symbols, spec.functions)
    expected = sp.diff(explicit_loss(spec), real(spec.symbols["w"]))
    point = {s: sp.Float(v, 30) for s, v in spec.values.items()}
    point.update({real(s): v for s, v in list(point.items())})
    assert float(F.explicit(result).xreplace(point).evalf(30)) == pytest.approx(float(expected.xreplace(point).evalf(30)), rel=1e-15)
    assert record["path_count"] == 2  # through h_1 and through h_2


def test_the_derivation_states_each_rule(capsys):
    status, out, _ = run(["derive", CUSTOM, "--wrt", "w", "--method", "bottom-up"], capsys)
    assert status == 0
    assert "∂h_1/∂w = swish'(b + w*x_1)*x_1    [local partial: swish'(u) = u*σ(u)*(1 - σ(u)) + σ(u); multiply" in out
    assert "softsign'(w*x_2 - b)*x_2" in out
    assert "gelu_tanh'(u) = " in out and "0.7978845608*u" in out  # decimals as written, not 997355701/1250000000


@pytest.mark.parametrize("verb", ["grad", "check", "flow"])
def test_the_numeric_verbs_work(verb, capsys):
    status, out, _ = run([verb, CUSTOM, "--format", "json"], capsys)
    assert status == 0
    record = json.loads(out)
    if verb == "check":
        assert record["passed"] and all(r["verdict"] == "good" for r in record["parameters"].values())


def test_descent_lowers_the_loss(capsys):
    status, out, _ = run(["step", CUSTOM, "--lr", 0.5, "--steps", 20, "--format", "json"], capsys)
    record = json.loads(out)
    assert status == 0 and record["loss_after"] < record["loss_before"]


def test_grade_knows_the_mistakes_of_a_defined_function(capsys):
    status, out, _ = run(["grade", CUSTOM, "--wrt", "v_1", "--answer", "(y - t)*h_1"], capsys)
    assert status == 1 and "missing activation derivative at y: gelu_tanh' left out" in out
    status, out, _ = run(["grade", CUSTOM, "--wrt", "v_1", "--answer", "(y - t)*gelu_tanh_prime(c + v_1*h_1 + v_2*h_2)*h_1"], capsys)
    assert status == 0


@needs_tex
@pytest.mark.parametrize("verb", ["solve", "exam"])
def test_the_documents_compile(verb, tmp_path, capsys):
    tex = tmp_path / f"{verb}.tex"
    status, _, err = run([verb, CUSTOM, "-o", tex, "--pdf"] + (["--answers"] if verb == "exam" else []), capsys)
    assert status == 0, err
    text = tex.read_text()
    # each defined function listed once with its derivative, each local partial citing it
    assert r"\operatorname{softsign}'(u) &=" in text
    assert r"$\operatorname{swish}'$ from the definition of $\operatorname{swish}$ (above)" in text
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log  # nothing runs into the margin (page breaks: issue 12)


def test_the_layered_example_is_the_matrix_form_with_swish(capsys):
    status, out, _ = run(["derive", SWISH_LAYERS], capsys)
    assert status == 0
    assert "∂a^1/∂z^1 = Diag(swish'(z^1))    [elementwise f: swish]" in out
    assert "δ^1 = Diag(swish'(z^1)) (W^2)^T δ^2" in out


def test_the_layered_gradient_is_central_differences_and_the_scalar_form(capsys):
    layers = load(SWISH_LAYERS)
    assert isinstance(layers, Layers)
    d, values = from_layers(layers)
    g = d.gradient(values)
    h = 1e-6
    for l, W in enumerate(values.weights):
        for (j, i) in [(0, 0), (W.shape[0] - 1, W.shape[1] - 1)]:
            W[j, i] += h
            up = d.loss_value(values)
            W[j, i] -= 2 * h
            down = d.loss_value(values)
            W[j, i] += h
            assert g.dW[l][j, i] == pytest.approx((up - down) / (2 * h), rel=1e-7, abs=1e-10)
    # the scalar form of the same network (mlp with the defined function) agrees entry by entry
    spec = layers.scalar_spec()
    from symprop.matrix import scalar_values

    scalar = gradient(spec.network, {spec.symbols[k]: v for k, v in scalar_values(values).items()})
    assert scalar.loss == pytest.approx(g.loss, rel=1e-12)
    assert scalar.gradient[spec.symbols["w_1_2_1"]] == pytest.approx(g.dW[0][1, 0], rel=1e-10)
    status, out, _ = run(["grad", SWISH_LAYERS, "--format", "json"], capsys)
    assert status == 0 and json.loads(out)["loss"] == pytest.approx(g.loss)


@needs_tex
def test_the_layered_solution_compiles(tmp_path, capsys):
    tex = tmp_path / "layers.tex"
    status, _, err = run(["solve", SWISH_LAYERS, "-o", tex, "--pdf"], capsys)
    assert status == 0, err
    text = tex.read_text()
    assert r"\operatorname{swish}'(u) &=" in text
    assert r"\operatorname{Diag}\left(\operatorname{swish}'\left(\mathbf{z}^{(1)}\right)\right)" in text


def test_define_function_in_python_works_in_mlp_and_numbers():
    x = sp.Symbol("x")
    mish = F.define_function("mish", x * sp.tanh(F.softplus(x)), x)
    net = mlp([2, 2, 1], hidden=mish, output="identity", loss="half_sse")
    values = {s.name: 0.3 * (i % 5 - 2) + 0.1 for i, s in enumerate(net.leaves)}
    g = gradient(net, values)
    w = net.symbol("w_1_1_1")
    full = {}
    for k in net.order:
        full[k] = net.nodes[k].xreplace({s: full[s] for s in net.producers[k] if s in full})
    loss = F.explicit(full[net.loss])
    point = {net.symbol(k): sp.Float(v, 30) for k, v in values.items()}
    assert g.gradient[w] == pytest.approx(float(sp.diff(loss, w).xreplace(point).evalf(30)), rel=1e-12)
    assert "mish'(" in str(derive(net, w, method="bottom-up"))


FUNCTIONS_SPEC = """
[functions]
{functions}
[network]
inputs = ["x"]
params = ["w"]
loss = "E"
[nodes]
E = "{node}"
"""


@pytest.mark.parametrize("functions, node, key, problem", [
    ('f = "g(u)"\ng = "f(u)"', "f(w*x)", "[functions] f", "a cycle: f -> g -> f"),
    ('f = "f(u) + 1"', "f(w*x)", "[functions] f", "a cycle: f -> f"),
    ('f = "nosuch(u)"', "f(w*x)", "[functions] f", "unknown function 'nosuch'"),
    ('f = "u*y"', "f(w*x)", "[functions] f", "unknown symbol 'y'"),
    ('sigmoid = "u"', "sigmoid(w*x)", "[functions] sigmoid", "built-in function and cannot be redefined"),
    ('f = 3', "f(w*x)", "[functions] f", "must be a formula in u"),
    ('f = "u.__class__"', "f(w*x)", "[functions] f", "attribute access is not allowed"),
    ('f_prime = "u"', "w*x", "[functions] f_prime", "names ending in _prime are the derivatives"),
])
def test_a_bad_functions_table_is_one_line_naming_the_key(functions, node, key, problem):
    with pytest.raises(SpecError) as err:
        from_text(FUNCTIONS_SPEC.format(functions=functions, node=node), "f.toml")
    assert err.value.key == key and problem in err.value.problem
    assert "\n" not in str(err.value)


def test_functions_may_use_each_other_in_any_order():
    spec = from_text(FUNCTIONS_SPEC.format(functions='outer = "inner(u)**2"\ninner = "u*sigmoid(u)"', node="outer(w*x)"), "f.toml")
    g = gradient(spec.network, {"x": 0.7, "w": -0.4})
    u = -0.28
    inner = u / (1 + math.exp(-u))
    dinner = 1 / (1 + math.exp(-u)) + u * math.exp(-u) / (1 + math.exp(-u)) ** 2
    assert g.gradient[spec.symbols["w"]] == pytest.approx(2 * inner * dinner * 0.7, rel=1e-12)


def test_a_display_name_for_a_defined_function(tmp_path, capsys):
    spec = tmp_path / "d.toml"
    spec.write_text(FUNCTIONS_SPEC.format(functions='f = "u**3"', node="f(w*x)") + '[display]\nf = "\\\\phi"\n')
    status, out, _ = run(["solve", spec], capsys)
    assert status == 0 and r"\phi'\left(w x\right)" in out


def test_bind_a_generic_function_to_a_defined_one(capsys, tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text(
        '[functions]\nswish = "u*sigmoid(u)"\n[network]\ninputs = ["x"]\nparams = ["w"]\nfunctions = ["g"]\nloss = "E"\n'
        '[nodes]\nE = "g(w*x)"\n[values]\nx = 2.0\nw = 0.5\n[bind]\ng = "swish"\n')
    status, out, _ = run(["grad", spec, "--format", "json"], capsys)
    assert status == 0
    s = 1 / (1 + math.exp(-1.0))
    assert json.loads(out)["gradient"]["w"] == pytest.approx((s + s * (1 - s)) * 2.0, rel=1e-12)
    status, _, err = run(["grad", spec, "--bind", "g=nosuch"], capsys)
    assert status == 2 and "unknown activation 'nosuch'" in err and "swish" in err
    assert np.isfinite(s)


GREEK = """
[network]
inputs = ["x"]
targets = ["t"]
params = ["w"]
functions = ["φ"]
loss = "E"
[functions]
"ψ" = "u*sigmoid(u)"
[nodes]
h = "ψ(w*x)"
y = "φ(h)"
E = "(y - t)**2/2"
[values]
x = 1.0
t = 1.0
w = 0.5
"""


@needs_tex
def test_greek_function_names_print_as_greek_letters(tmp_path, capsys):
    spec = tmp_path / "greek.toml"
    spec.write_text(GREEK, encoding="utf-8")
    tex = tmp_path / "greek.tex"
    status, _, err = run(["solve", spec, "--bind", "φ=tanh", "-o", tex, "--pdf"], capsys)
    assert status == 0 and "warning" not in err, err
    text = tex.read_text()
    assert r"\psi'(u) &=" in text and r"\varphi'\left(h\right)" in text
    assert r"the activation's derivative $\varphi'$ at the node's input" in text
    assert not any(ord(c) > 127 for c in text)
