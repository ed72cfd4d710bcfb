"""Jacobians of vector-valued specs (issue 14, item 4; seed 000): `derive` and `grad` give the
Jacobian equal to sympy's `Matrix.jacobian` of the composition, its factorisation into layer
Jacobians multiplies back to it, bad specs are one line with exit status 2, the worked
solution compiles."""

import json
import math
import re
import shutil
import warnings
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings

from symprop import VectorNetwork, functions as F, jacobian
from symprop.cli import main
from symprop.graph import NetworkError
from symprop.jacobian import jacobian_at
from symprop.spec import SpecError, load, load_spec, parse_expression

from dags import bind_generic, dag_networks, evaluate, random_point
from example_files import EXAMPLES_DIR, NETWORKS, VECTORS

SEED000 = EXAMPLES_DIR / "seed000_jacobian.toml"
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")

SKIP = """
[network]
inputs = ["x_1", "x_2"]
params = ["w_1", "w_2", "b"]
outputs = ["y_1", "y_2", "h_1"]

[nodes]
h_1 = "tanh(w_1*x_1 + w_2*x_2)"
h_2 = "sigmoid(h_1*x_2 + b)"
y_1 = "h_2*x_1 + h_1"
y_2 = "exp(h_2) - x_2"

[values]
x_1 = 0.3
x_2 = -0.7
w_1 = 0.5
w_2 = 1.5
b = 0.1
"""


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def strict_json(text):
    """JSON as a strict parser reads it: Infinity and NaN are refused."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def composition(function):
    """Each output with every node substituted, in elementary SymPy (the reference)."""
    full = {}
    for k in function.order:
        full[k] = function.nodes[k].xreplace(full)
    return sp.Matrix([bind_generic(F.explicit(full[o])) for o in function.outputs])


def reference_jacobian(function, wrt):
    """sympy's Matrix.jacobian of the composition, in real symbols (|u|' is sign(u) then)."""
    outputs = composition(function)
    real = {s: sp.Dummy(s.name, real=True) for s in outputs.free_symbols}
    back = {r: s for s, r in real.items()}
    return outputs.xreplace(real).jacobian([real.get(w, w) for w in wrt]).xreplace(back)


@pytest.fixture
def skip_spec(tmp_path):
    path = tmp_path / "skip.toml"
    path.write_text(SKIP)
    return path


# -- the example: issue 14's "done when" ---------------------------------------------------

def test_the_example_is_a_vector_spec_and_not_a_scalar_network():
    assert SEED000 in VECTORS and SEED000 not in NETWORKS
    spec = load(SEED000)
    assert [o.name for o in spec.function.outputs] == ["g_1", "g_2"]
    with pytest.raises(SpecError, match=r"\[network\] outputs: this spec is a vector-valued function"):
        load_spec(SEED000)


def test_derive_gives_sympys_jacobian_of_the_composition(capsys):
    status, out, err = run(["derive", SEED000, "--format", "json"], capsys)
    assert status == 0, err
    record = strict_json(out)
    spec = load(SEED000)
    x = spec.symbols["x"]
    expected = reference_jacobian(spec.function, [x])
    result = record["jacobian"]["result"]
    assert record["jacobian"]["of"] == ["g_1", "g_2"] and record["jacobian"]["wrt"] == ["x"]
    assert len(result) == 2 and all(len(row) == 1 for row in result)
    for i in range(2):  # read back by the spec parser, then proved equal by SymPy
        entry = F.explicit(parse_expression(result[i][0], spec.symbols, spec.functions))
        assert sp.simplify(entry - expected[i, 0]) == 0
    # the Python API gives the same matrix
    assert sp.simplify(jacobian(spec.function).matrix.applyfunc(F.explicit) - expected) == sp.zeros(2, 1)


def test_grad_gives_sympys_jacobian_at_the_values_and_central_differences(capsys):
    status, out, err = run(["grad", SEED000, "--format", "json"], capsys)
    assert status == 0, err
    record = strict_json(out)
    spec = load(SEED000)
    x = spec.symbols["x"]
    expected = reference_jacobian(spec.function, [x]).xreplace({x: sp.Float(0.5, 30)})
    got = record["jacobian"]
    for i in range(2):
        assert math.isclose(got[i][0], float(expected[i, 0]), rel_tol=1e-12)
    outputs = composition(spec.function)
    h = 1e-6
    for i in range(2):
        f = sp.lambdify([x], outputs[i])
        assert math.isclose(got[i][0], (f(0.5 + h) - f(0.5 - h)) / (2 * h), rel_tol=1e-8)
    assert record["values"]["f_1"] == 0.25


def test_derive_writes_seed000s_product_of_jacobians(capsys):
    status, out, _ = run(["derive", SEED000], capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[1] == "  dg/dx = ∂g/∂f·∂f/∂x    [chain rule: the product of the layers' Jacobians]"
    assert "  ∂g/∂f = [ ∂g_1/∂f_1  ∂g_1/∂f_2 ]" in lines
    assert "          [ ∂g_2/∂f_1  ∂g_2/∂f_2 ]" in lines
    assert "  dg_1/dx = ∂g_1/∂f_1*∂f_1/∂x + ∂g_1/∂f_2*∂f_2/∂x    [sum over paths: 2 paths]" in lines
    assert "  dg_2/dx = ∂g_2/∂f_1*∂f_1/∂x + ∂g_2/∂f_2*∂f_2/∂x    [sum over paths: 2 paths]" in lines
    status, out, _ = run(["derive", SEED000, "--format", "json"], capsys)
    record = strict_json(out)
    assert record["jacobian"]["chain"] == "dg_dx = pg_pf*pf_px"
    assert [layer["entries"] for layer in record["jacobian"]["layers"]] == [["x"], ["f_1", "f_2"], ["g_1", "g_2"]]
    factor = record["jacobian"]["factors"][0]
    assert factor["partials"] == [["pg_1_pf_1", "pg_1_pf_2"], ["pg_2_pf_1", "pg_2_pf_2"]]
    assert factor["local"] == [["f_2", "f_1"], ["1", "1 - tanh(f_2)**2"]]
    entries = {(d["of"], d["wrt"]): d for d in record["derivations"]}
    assert entries["g_1", "x"]["forms"]["paths"] == "pg_1_pf_1*pf_1_px + pg_1_pf_2*pf_2_px"
    assert entries["g_1", "x"]["path_count"] == 2
    assert "loss directly" not in out and "output directly" in out


def test_the_factors_multiply_to_the_jacobian_symbolically_and_in_numbers():
    spec = load(SEED000)
    J = jacobian(spec.function)
    product = J.factors[0].local * J.factors[1].local
    assert (product - J.in_nodes).expand() == sp.zeros(2, 1)
    v = jacobian_at(J, spec.values)
    assert (abs(v.factors[0] @ v.factors[1] - v.matrix) < 1e-14).all()


def test_grad_and_derive_are_deterministic(capsys):
    for verb in ("derive", "grad"):
        for fmt in ("text", "json"):
            first = run([verb, SEED000, "--format", fmt], capsys)
            assert first == run([verb, SEED000, "--format", fmt], capsys)


# -- skip connections: values carried through the layers --------------------------------------

def test_a_skip_connection_is_carried_by_identity_rows(skip_spec, capsys):
    spec = load(skip_spec)
    J = jacobian(spec.function)
    assert [layer.entries for layer in J.layers] == [
        sp.symbols("x_1 x_2"), sp.symbols("x_1 x_2 h_1"), sp.symbols("x_1 x_2 h_1 h_2"), sp.symbols("y_1 y_2 h_1")]
    assert J.layers[-1].carried == (sp.Symbol("h_1"),)
    product = J.factors[0].local * J.factors[1].local * J.factors[2].local
    assert (product - J.in_nodes).expand() == sp.zeros(3, 2)
    wrt = [spec.symbols["x_1"], spec.symbols["x_2"]]
    expected = reference_jacobian(spec.function, wrt)
    assert sp.simplify(J.matrix.applyfunc(F.explicit) - expected) == sp.zeros(3, 2)
    status, out, _ = run(["grad", skip_spec, "--format", "json"], capsys)
    assert status == 0
    record = strict_json(out)
    point = {s: sp.Float(v, 30) for s, v in spec.values.items()}
    for i in range(3):
        for j in range(2):
            assert math.isclose(record["jacobian"][i][j], float(expected[i, j].xreplace(point)), rel_tol=1e-12)
    assert [f["name"] for f in record["factors"]] == ["py_ps2", "ps2_ps1", "ps1_px"]


def test_wrt_parameters_and_inner_nodes(skip_spec, capsys):
    spec = load(skip_spec)
    w = [spec.symbols[n] for n in ("w_1", "b")]
    J = jacobian(spec.function, ["w_1", "b"])
    assert sp.simplify(J.matrix.applyfunc(F.explicit) - reference_jacobian(spec.function, w)) == sp.zeros(3, 2)
    # an inner node: the derivative with respect to its value, the nodes below it held
    h_2 = spec.symbols["h_2"]
    J = jacobian(spec.function, [h_2])
    assert J.in_nodes == sp.Matrix([[spec.symbols["x_1"]], [sp.exp(h_2)], [0]])
    status, out, _ = run(["grad", skip_spec, "--wrt", "h_2", "--format", "json"], capsys)
    assert status == 0
    values = strict_json(out)["values"]
    assert strict_json(out)["jacobian"] == [[0.3], [pytest.approx(math.exp(values["h_2"]))], [0.0]]


def test_a_variable_that_depends_on_another_gives_entries_without_factors(capsys):
    spec = load(SEED000)
    J = jacobian(spec.function, ["f_1", "x"])
    assert J.factors is None and "f_1 depends on x" in J.notes[0]
    x, f_2 = spec.symbols["x"], spec.symbols["f_2"]
    assert J.in_nodes[0, 0] == f_2  # dg_1/df_1 with f_1 a free variable
    assert sp.simplify(J.matrix[:, 1].applyfunc(F.explicit) - reference_jacobian(spec.function, [x])) == sp.zeros(2, 1)
    status, out, _ = run(["grad", SEED000, "--wrt", "f_1", "--wrt", "x", "--format", "json"], capsys)
    assert status == 0 and strict_json(out)["factors"] is None


def test_default_wrt_is_the_inputs_or_else_the_parameters():
    x, w, h, o = sp.symbols("x w h o")
    assert jacobian(VectorNetwork({h: w * x, o: h ** 2}, outputs=[h, o], inputs=[x], params=[w])).wrt == (x,)
    J = jacobian(VectorNetwork({h: w ** 2, o: sp.exp(h)}, outputs=[h, o], params=[w]))
    assert J.wrt == (w,) and J.matrix == sp.Matrix([[2 * w], [2 * w * sp.exp(w ** 2)]])


# -- random vector-valued DAGs ----------------------------------------------------------------

def vector_from(net):
    """The random network without its loss: the nodes the loss read are the outputs."""
    outputs = [k for k in net.producers[net.loss] if k in net.nodes]
    nodes = {k: e for k, e in net.nodes.items() if k != net.loss}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VectorNetwork(nodes, outputs=outputs, params=net.params, inputs=net.inputs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(dag_networks(max_hidden=4))
def test_random_dags_jacobian_equals_sympy_and_its_factors_multiply_back(net):
    function = vector_from(net)
    wrt = list(function.inputs) + list(function.params[:2])
    J = jacobian(function, wrt)
    point = random_point(net, 7)
    point = {s: v for s, v in point.items() if s in function.leaves}
    expected = reference_jacobian(function, wrt)
    for i, row in enumerate(J.entries):
        for j, d in enumerate(row):
            full = d.substituted
            assert full is not None
            assert math.isclose(evaluate(full, point), evaluate(expected[i, j], point), rel_tol=1e-9, abs_tol=1e-12)
    # the compiled backward pass gives the same numbers
    v = jacobian_at(J, {s: float(x) for s, x in point.items()}, bind={"g": "tanh"})
    for i in range(J.shape[0]):
        for j in range(J.shape[1]):
            assert math.isclose(v.matrix[i, j], evaluate(expected[i, j], point), rel_tol=1e-7, abs_tol=1e-9)
    # the product of the layer Jacobians (each entry a local partial) is the Jacobian
    assert J.factors is not None
    product = J.factors[0].local
    for f in J.factors[1:]:
        product = product * f.local
    at = {**point, **{k: sp.Float(x, 30) for k, x in v.values.items()}}
    for i in range(J.shape[0]):
        for j in range(J.shape[1]):
            assert math.isclose(evaluate(product[i, j], at), v.matrix[i, j], rel_tol=1e-7, abs_tol=1e-9)
    numbers = v.factors[0]
    for m in v.factors[1:]:
        numbers = numbers @ m
    assert (abs(numbers - v.matrix) <= 1e-9 * (1 + abs(v.matrix))).all()


# -- bad specs and bad requests: one line, exit status 2 --------------------------------------

BASE = """
[network]
inputs = ["x"]
outputs = ["g_1", "g_2"]

[nodes]
f_1 = "x**2"
g_1 = "f_1*x"
g_2 = "exp(f_1)"

[values]
x = 0.5
"""


@pytest.mark.parametrize("text, key, problem", [
    (BASE.replace('outputs = ["g_1", "g_2"]', 'outputs = ["g_1", "g_2"]\nloss = "g_1"'), "[network] outputs",
     "give either loss (a scalar loss) or outputs (a vector-valued function), not both"),
    (BASE.replace('outputs = ["g_1", "g_2"]', ""), "[network] loss",
     "missing key; or outputs = [...] for a vector-valued function"),
    (BASE.replace('["g_1", "g_2"]', '["g_1", "x"]'), "[network] outputs", "x is an input, not a node"),
    (BASE.replace('["g_1", "g_2"]', '["g_1", "g_3"]'), "[network] outputs", "g_3 is not a node defined in [nodes]"),
    (BASE.replace('["g_1", "g_2"]', '["g_1", "g_1"]'), "[network] outputs", "g_1 is listed twice"),
    (BASE.replace('["g_1", "g_2"]', "[]"), "[network] outputs", "must be a non-empty list of node names"),
    (BASE.replace('["g_1", "g_2"]', '"g_1"'), "[network] outputs", "must be a non-empty list of node names"),
    (BASE.replace('outputs = ["g_1", "g_2"]', 'outputs = ["g_1"]\nreduction = "mean"'), "[network] reduction",
     "no loss to reduce"),
    (BASE.replace('g_2 = "exp(f_1)"', 'g_2 = "exp(g_2)"'), "[nodes] g_2", "cycle: g_2 -> g_2"),
    (BASE.replace('g_2 = "exp(f_1)"', 'g_2 = "exp(q)"'), "[nodes] g_2", "unknown symbol 'q'"),
])
def test_bad_vector_specs_are_one_line(tmp_path, capsys, text, key, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    status, out, err = run(["derive", path], capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"symprop: {path}: {key}: ") and problem in err, err


@pytest.mark.parametrize("argv", [
    ["check"], ["step", "--lr", "0.1"], ["flow"], ["exam"], ["grade", "--wrt", "x", "--answer", "x"],
])
def test_verbs_that_need_a_loss_refuse_a_vector_spec(capsys, argv):
    status, out, err = run([argv[0], SEED000, *argv[1:]], capsys)
    assert status == 2 and out == ""
    assert err == (f"symprop: {SEED000}: [network] outputs: this spec is a vector-valued function (outputs, no loss), "
                   "and this verb needs a scalar loss; derive, grad and solve give its Jacobian\n")


@pytest.mark.parametrize("argv, message", [
    (["derive", "--wrt", "q"], "--wrt q: no such input, parameter or node"),
    (["derive", "--wrt", "g_1"], "--wrt g_1: g_1 is an output (dg_1/dg_1 = 1)"),
    (["grad", "--wrt", "x", "--wrt", "x"], "--wrt x: x is asked for twice"),
    (["grad", "--gates"], "--gates stages a scalar loss"),
    (["derive", "--form", "scalar"], "--form applies to a [layers] spec"),
])
def test_bad_requests_are_one_line(capsys, argv, message):
    status, out, err = run([argv[0], SEED000, *argv[1:]], capsys)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_a_batch_or_an_overflow_is_one_line_and_no_json(tmp_path, capsys):
    batch = tmp_path / "batch.toml"
    batch.write_text(BASE.replace("x = 0.5", "x = [0.5, 1.0]"))
    status, out, err = run(["grad", batch, "--format", "json"], capsys)
    assert status == 2 and out == "" and "a Jacobian is evaluated at one point" in err
    big = tmp_path / "big.toml"
    big.write_text(BASE.replace("x = 0.5", "x = 1000.0"))
    status, out, err = run(["grad", big, "--format", "json"], capsys)
    assert status == 2 and out == "" and err.count("\n") == 1 and "g_2" in err, err


def test_values_file_overrides_the_spec(tmp_path, capsys):
    values = tmp_path / "v.toml"
    values.write_text("x = 1.0\n")
    status, out, _ = run(["grad", SEED000, "--values", values, "--format", "json"], capsys)
    assert status == 0 and strict_json(out)["values"]["f_1"] == 1.0
    values.write_text("f_1 = 1.0\n")
    status, _, err = run(["grad", SEED000, "--values", values], capsys)
    assert status == 2 and "f_1 is a node" in err


def test_python_api_errors_name_the_symbol():
    x, h, o = sp.symbols("x h o")
    with pytest.raises(NetworkError, match="the output q is not a defined node"):
        VectorNetwork({h: x, o: h}, outputs=[sp.Symbol("q")], inputs=[x])
    with pytest.raises(NetworkError, match="at least one output"):
        VectorNetwork({h: x}, outputs=[], inputs=[x])
    with pytest.raises(NetworkError, match="o is an output"):
        jacobian(VectorNetwork({h: x, o: h}, outputs=[o], inputs=[x]), [o])


# -- the worked solution ----------------------------------------------------------------------

def _overfull(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]


def test_solution_shows_the_product_of_jacobians_and_the_numbers(capsys):
    status, tex, _ = run(["solve", SEED000], capsys)
    assert status == 0
    assert (r"\frac{d \mathbf{g}}{d x} &= \frac{\partial \mathbf{g}}{\partial \mathbf{f}} "
            r"\frac{\partial \mathbf{f}}{\partial x}") in tex
    assert (r"\begin{bmatrix} \frac{\partial g_{1}}{\partial f_{1}} & \frac{\partial g_{1}}{\partial f_{2}} \\ "
            r"\frac{\partial g_{2}}{\partial f_{1}} & \frac{\partial g_{2}}{\partial f_{2}} \end{bmatrix}") in tex
    assert r"\boxed{\begin{bmatrix} 0.6812 \\ 1.163 \end{bmatrix}}" in tex  # grad's numbers, to 4 digits
    assert run(["solve", SEED000], capsys) == (status, tex, "")  # byte-identical


def wide_spec(path):
    """4 outputs of 6 inputs through 4 tanh units: matrices too wide to print whole."""
    lines = ["[network]", "inputs = [" + ", ".join(f'"x_{i}"' for i in range(1, 7)) + "]",
             "params = [" + ", ".join(f'"w_{j}_{i}"' for j in range(1, 5) for i in range(1, 7)) + "]",
             "outputs = [" + ", ".join(f'"y_{j}"' for j in range(1, 5)) + "]", "", "[nodes]"]
    lines += [f'h_{j} = "tanh(' + " + ".join(f"w_{j}_{i}*x_{i}" for i in range(1, 7)) + ')"' for j in range(1, 5)]
    lines += [f'y_{j} = "sigmoid(h_{j}*h_{j % 4 + 1})"' for j in range(1, 5)]
    lines += ["", "[values]"] + [f"x_{i} = {0.1 * i:.1f}" for i in range(1, 7)]
    lines += [f"w_{j}_{i} = {((i * j) % 5 - 2) / 10}" for j in range(1, 5) for i in range(1, 7)]
    path.write_text("\n".join(lines) + "\n")
    return path


@needs_tex
@pytest.mark.parametrize("which", ["seed000", "skip", "wide"])
def test_the_solution_compiles_without_overfull_boxes(which, skip_spec, tmp_path, capsys):
    spec = {"seed000": SEED000, "skip": skip_spec}.get(which) or wide_spec(tmp_path / "wide.toml")
    tex = tmp_path / "jacobian.tex"
    status, _, err = run(["solve", spec, "-o", tex, "--pdf"], capsys)
    assert status == 0, err
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert [x for x in _overfull(log) if x > 1] == []
    assert tex.with_suffix(".pdf").stat().st_size > 0


def test_the_fragment_has_no_preamble(capsys):
    status, tex, _ = run(["solve", SEED000, "--fragment", "--title", "Seed 000 & more"], capsys)
    assert status == 0 and r"\documentclass" not in tex and r"\section*{Seed 000 \& more}" in tex





def test_the_jacobian_module_is_a_compute_room():
    """symprop.jacobian derives and evaluates; it imports no report, document, output or CLI."""
    import ast

    source = (Path(__file__).resolve().parent.parent / "symprop" / "jacobian.py").read_text(encoding="utf-8")
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert imported & {"report", "output", "cli", "quiz", "documents"} == set()
    assert {"derive", "numeric", "graph"} <= imported
