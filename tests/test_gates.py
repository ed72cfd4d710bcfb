"""Gate circuits: staging, values and gradients on every wire, fan-out, text/JSON/LaTeX, CLI.

Every number is checked against an independent computation: sympy.diff of the
``explicit`` (elementary SymPy) form of the expression, central finite differences, and,
for each gate's delta, sympy.diff of the output with that gate's wire held as a symbol.
"""

import json
import re
from pathlib import Path

import pytest
import sympy as sp

from symprop import functions as F, report
from symprop.cli import main
from symprop.documents.circuit import render_circuit
from symprop.gates import ALGEBRA_GATES, stage
from symprop.numeric import gradient as numeric_gradient
from symprop.output import compile_pdf, write_atomic
from symprop.spec import load_spec

EXAMPLES = Path(__file__).parent.parent / "examples"
x, y, z, w = sp.symbols("x y z w")
w0, w1, w2, x0, x1 = sp.symbols("w0 w1 w2 x0 x1")
r = sp.Symbol("r", real=True)
u = sp.Dummy("u")


# -- independent references ---------------------------------------------------------------

def numeric(expr, point, bind=None):
    """``expr`` at ``point`` by SymPy alone: generics bound, symprop functions made explicit."""
    for name, activation in (bind or {}).items():
        for order in (0, 1, 2):
            expr = expr.replace(F.generic(name, order), sp.Lambda(u, sp.diff(F.ACTIVATIONS[activation](u), u, order)))
    exact = {s: sp.Float(v, 30) for s, v in point.items()}
    return float(sp.N(F.explicit(expr).xreplace(exact), 30))


def central_difference(expr, point, s, h=1e-6, bind=None):
    up, down = dict(point), dict(point)
    up[s] += h
    down[s] -= h
    return (numeric(expr, up, bind) - numeric(expr, down, bind)) / (2 * h)


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def check_circuit(expr, point, bind=None, fd_tol=1e-6):
    """Stage ``expr``, evaluate it, and check every wire against independent references."""
    circuit = stage(expr, list(point))
    flow = circuit.evaluate(point, bind=bind)
    assert close(flow.loss, numeric(expr, point, bind))
    for s in point:
        exact = numeric(sp.diff(F.explicit(expr), s), point, bind)
        assert close(flow.gradient[s], exact), (s, flow.gradient[s], exact)
        assert close(flow.gradient[s], central_difference(expr, point, s, bind=bind), fd_tol)
    # each gate: its value from the gates' own expressions, its delta as sympy.diff of the
    # output with that gate's wire held as a symbol (the wires above it substituted)
    for q in circuit.gates:
        below = {}
        for g in circuit.gates:
            if g.symbol != q.symbol:
                below[g.symbol] = g.expr.xreplace(below)
        output = below.get(circuit.output, q.symbol)
        at = {**point, q.symbol: flow.values[q.symbol]}
        assert close(flow.values[q.symbol], numeric(below.get(q.symbol, q.expr.xreplace(below)), point, bind))
        assert close(flow.deltas[q.symbol], numeric(sp.diff(F.explicit(output), q.symbol), at, bind)), q.name
    # fan-out: each wire's delta is the sum of its per-use gradients
    for s, uses in flow.uses.items():
        assert close(flow.deltas[s], sum(v for _, v in uses)) if uses else flow.deltas[s] == 0
    return circuit, flow


def ops(circuit):
    return [g.op for g in circuit.gates]


# every op a gate can have: the algebra gates, the functions' gates and the fallbacks
KNOWN_OPS = set(ALGEBRA_GATES) | {p.gate.op for p in F.BUILTINS.values() if p.gate} | {"function", "generic"}


# -- the classic circuits -----------------------------------------------------------------

def test_x_plus_y_times_z():
    circuit, flow = check_circuit((x + y) * z, {x: -2, y: 5, z: -4})
    assert [(g.name, g.op, [s.name for s in g.inputs]) for g in circuit.gates] == [
        ("add1", "add", ["x", "y"]), ("f", "mul", ["add1", "z"])]
    assert flow.loss == -2 * -4 + 5 * -4
    # add passes the gradient unchanged; multiply swaps the inputs
    add1 = circuit.gates[0].symbol
    assert flow.local[circuit.output, z] == flow.values[add1]
    assert flow.local[circuit.output, add1] == flow.values[z]
    assert flow.gradient[x] == flow.gradient[y] == flow.deltas[add1] == flow.values[z]


def test_sigmoid_neuron_written_with_exp_and_reciprocal():
    f = 1 / (1 + sp.exp(-(w0 * x0 + w1 * x1 + w2)))
    point = {w0: 2, x0: -1, w1: -3, x1: -2, w2: -3}
    circuit, flow = check_circuit(f, point)
    # cs231n's circuit: * * + (*-1) exp (+1) (1/x)
    assert ops(circuit) == ["mul", "mul", "add", "scale", "exp", "add", "recip"]
    assert circuit.gates[3].constants == {"k": -1} and circuit.gates[5].constants == {"c": 1}
    # the whole circuit is a sigmoid: its gradient is s(1 - s) times the other factor
    s = flow.loss
    assert close(s, numeric(F.sigmoid(w0 * x0 + w1 * x1 + w2), point))
    assert close(flow.gradient[w0], s * (1 - s) * point[x0])
    assert close(flow.gradient[x1], s * (1 - s) * point[w1])


def test_max_routes_and_multiply_swaps():
    expr = 2 * (x * y + F.maximum(z, w))
    circuit, flow = check_circuit(expr, {x: 3, y: -4, z: 2, w: -1})
    assert ops(circuit) == ["mul", "max", "add", "scale"]
    assert flow.gradient[w] == 0 and flow.gradient[z] == 2  # the switch: all to the larger
    assert flow.gradient[x] == 2 * -4 and flow.gradient[y] == 2 * 3
    # a tie goes to the first argument, as in symprop.functions (differences mean nothing at a kink)
    _, tie = check_circuit(F.maximum(z, w) * x, {x: 3, z: 1, w: 1}, fd_tol=1)
    assert (tie.gradient[z], tie.gradient[w]) == (3, 0)


def test_one_input_used_three_times_sums_its_gradients():
    expr = x * (x * y + sp.exp(x))
    circuit, flow = check_circuit(expr, {x: 0.5, y: 2})
    uses = flow.uses[x]
    assert len(uses) == 3 and len({k for k, _ in uses}) == 3
    assert flow.fan_out == [x]
    assert close(flow.gradient[x], sum(v for _, v in uses))
    record = report.json(flow)
    assert [f["name"] for f in record["fan_out"]] == ["x"]
    assert len(record["fan_out"][0]["uses"]) == 3
    assert close(record["fan_out"][0]["delta"], sum(u["gradient"] for u in record["fan_out"][0]["uses"]))
    line = next(l for l in report.text(flow).splitlines() if l.startswith("  df/dx = ") and "via" in l)
    assert line.count("via") == 3 and line.endswith(f"= {flow.gradient[x]:.4g}")


def test_a_shared_subexpression_is_one_gate_that_fans_out():
    circuit, flow = check_circuit(x * y + sp.exp(x * y), {x: 0.3, y: -0.7})
    assert ops(circuit).count("mul") == 1
    (product,) = [g.symbol for g in circuit.gates if g.op == "mul"]
    assert len(flow.uses[product]) == 2 and product in flow.fan_out


g = F.generic("g")


@pytest.mark.parametrize("expr, point, bind, op", [
    (x - y, {x: 1.5, y: 0.25}, None, "scale"),
    (x / y, {x: 1.5, y: -0.5}, None, "recip"),
    (x**3 + sp.sqrt(y), {x: -1.2, y: 2.0}, None, "pow"),
    (sp.log(x * y), {x: 1.5, y: 2.0}, None, "log"),
    (sp.tanh(x) * F.sigmoid(y), {x: 0.4, y: -1.1}, None, "sigmoid"),
    (F.relu(x) + F.leaky_relu(y), {x: 0.7, y: -0.6}, None, "leaky_relu"),
    (F.softplus(x - 2 * y), {x: 0.7, y: 0.2}, None, "softplus"),
    (F.minimum(x, 0) * y, {x: -0.5, y: 3.0}, None, "min"),
    (g(w * x) * y, {w: 0.5, x: -1.5, y: 2.0}, {"g": "tanh"}, "generic"),
    (F.softmax_cross_entropy_of([x, y, z], [w0, w1, w2]), {x: 0.2, y: -1.0, z: 0.5, w0: 0.0, w1: 1.0, w2: 0.0},
     None, "softmax_cross_entropy"),
    (sp.Abs(r) * y, {r: -0.5, y: 3.0}, None, "function"),  # real r: sympy.diff of |r| is sign(r)
])
def test_every_gate_kind_against_sympy_diff_and_differences(expr, point, bind, op):
    circuit, flow = check_circuit(expr, point, bind)
    assert op in ops(circuit)
    for gate in circuit.gates:
        assert gate.rule()  # every op has its sentence
        assert set(ops(circuit)) <= KNOWN_OPS


def test_elementary_gates_only():
    circuit = stage(1 / (1 + sp.exp(-(w0 * x0 + w1 * x1 + w2))) + 2 * x * y * z - x / y)
    for gate in circuit.gates:
        if gate.op == "mul":
            assert len(gate.inputs) == 2 and gate.expr == gate.inputs[0] * gate.inputs[1]
        elif gate.op == "scale":
            assert len(gate.inputs) == 1 and gate.expr == gate.constants["k"] * gate.inputs[0]
        elif gate.op == "add":
            assert gate.expr == sp.Add(gate.constants.get("c", 0), *gate.inputs)
        elif gate.op == "recip":
            assert gate.expr == 1 / gate.inputs[0]
    names = [gt.name for gt in circuit.gates]
    assert len(set(names)) == len(names) and names[-1] == "f"


def test_names_never_collide_with_variables():
    add1, f = sp.symbols("add1 f")
    circuit = stage((add1 + y) * f)
    names = [g.name for g in circuit.gates]
    assert "add1" not in names and "f" not in names and names[0] == "add2"


def test_refusals_are_clear():
    with pytest.raises(ValueError, match="variable exponent"):
        stage(x**y)
    with pytest.raises(ValueError, match="undefined or infinite"):
        stage(sp.log(x)).evaluate({x: -1.0})
    with pytest.raises(ValueError, match="bind it"):
        stage(g(x)).evaluate({x: 1.0})
    with pytest.raises(ValueError, match="no value for y"):
        stage(x * y).evaluate({x: 1.0})


# -- a whole network ----------------------------------------------------------------------

@pytest.mark.parametrize("example", ["seed002_gradient_flow.toml", "seed002_seven_neurons.toml"])
def test_staged_network_agrees_with_the_numeric_layer(example):
    spec = load_spec(EXAMPLES / example)
    net = spec.network
    flow = stage(net).evaluate(spec.values, bind=spec.bind)
    reference = numeric_gradient(net, spec.values, bind=spec.bind)
    assert close(flow.loss, reference.loss, 1e-12)
    for k in net.order:  # every node is a gate of the same name
        assert close(flow.values[k], float(reference.values[k][0]), 1e-12)
        assert close(flow.deltas[k], float(reference.deltas[k][0]), 1e-9)
    for s, v in reference.gradient.items():
        assert close(flow.gradient[s], v, 1e-9)


# -- LaTeX --------------------------------------------------------------------------------

def test_worked_solution_and_exam_compile(tmp_path):
    flow = stage(x * (x * y + sp.exp(x)) + z, [x, y, z]).evaluate({x: 0.5, y: 2, z: 1})
    solution = render_circuit(flow, title="Fan-out & sums")
    assert solution == render_circuit(flow, title="Fan-out & sums")  # deterministic
    assert r"Fan-out \& sums" in solution and r"\Sigma\," in solution
    question = render_circuit(flow, exam=True)
    answers = render_circuit(flow, exam=True, answers=True)
    assert "\\documentclass[11pt,a4paper]{exam}" in question and "\\begin{solution}" in question
    assert "% \\printanswers" in question and "\n\\printanswers" in answers
    # the question sheet gives forward values and boxes for the gradients
    asked = question.split("\\begin{solution}")[0]
    assert "\\node[cbox]" in asked and "{$2.649$}" in asked and "$4.473$" not in asked  # digits as in the text
    for name, tex in [("solution", solution), ("answers", answers)]:
        path = write_atomic(tmp_path / f"{name}.tex", tex)
        assert compile_pdf(path).stat().st_size > 10_000


def test_fragment_has_no_preamble():
    flow = stage((x + y) * z).evaluate({x: -2, y: 5, z: -4})
    tex = render_circuit(flow, standalone=False)
    assert "\\documentclass" not in tex and "\\begin{tikzpicture}" in tex
    assert r"\frac{\partial f}{\partial \mathrm{add}_{1}} &= z = -4" in tex


# -- the command line ---------------------------------------------------------------------

def run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_json_has_the_grad_keys_and_the_gates(capsys):
    status, out, _ = run(["circuit", "(x + y)*z", "--at", "x=-2,y=5,z=-4", "--format", "json"], capsys)
    assert status == 0
    record = json.loads(out)
    assert {"loss", "values", "deltas", "gradient", "gates"} <= set(record)
    assert record["loss"] == -12 and record["gradient"] == {"x": -4, "y": -4, "z": 3}
    assert [g["name"] for g in record["gates"]] == ["add1", "f"]
    mul = record["gates"][1]
    assert set(mul) >= {"name", "op", "inputs", "value", "local", "delta"}
    assert (mul["op"], mul["inputs"], mul["local"], mul["delta"]) == ("mul", ["add1", "z"], [-4, 3], 1)


def test_cli_bad_input_is_one_line_and_exit_2(capsys):
    for argv, message in [
        (["circuit", "(x + q)*z", "--at", "x=1,z=2"], "unknown symbol 'q' (the variables are the names in --at: x, z)"),
        (["circuit", "x*y", "--at", "x=1,y"], "write NAME=VALUE"),
        (["circuit", "x*y", "--at", "x=1,y=two"], "not a number"),
        (["circuit", "x.__class__", "--at", "x=1"], "attribute access"),
        (["circuit", "log(x)", "--at", "x=-1"], "undefined"),
        (["circuit", "x", "--at", "x=1", "--exam"], "--format latex"),
    ]:
        status, _, err = run(argv, capsys)
        assert status == 2 and message in err and err.count("\n") == 1, err


def test_cli_writes_latex_atomically(tmp_path, capsys):
    target = tmp_path / "q.tex"
    status, out, _ = run(["circuit", "max(x, y)*z", "--at", "x=1,y=2,z=3", "--format", "latex", "--exam",
                          "-o", str(target)], capsys)
    assert status == 0 and out == "" and "\\question" in target.read_text()


def test_cli_figure_alone_is_a_cropped_standalone_document(capsys):
    argv = ["circuit", "(x + y)*z", "--at", "x=-2,y=5,z=-4", "--format", "latex", "--figure"]
    status, out, _ = run(argv, capsys)
    assert status == 0 and out.startswith("\\documentclass[border=4pt]{standalone}")
    assert out.count("\\draw[->]") == 5  # x, y and z into the gates, add1 into f, f out
    gradient_of_x = re.compile(r"\\node\[cgrad\] at \([-\d., ]+\) \{\$-4\$\}")
    assert gradient_of_x.search(out)
    status, blank, _ = run(argv + ["--exam"], capsys)
    assert "\\node[cbox]" in blank and not gradient_of_x.search(blank)


def test_grad_gates_adds_every_gate(capsys):
    spec = EXAMPLES / "seed002_gradient_flow.toml"
    status, out, _ = run(["grad", str(spec), "--gates", "--format", "json"], capsys)
    assert status == 0
    record = json.loads(out)
    names = [g["name"] for g in record["gates"]]
    assert set(record["values"]) <= set(names)  # every node is a gate
    for g in record["gates"]:
        if g["name"] in record["deltas"]:
            assert close(g["delta"], record["deltas"][g["name"]], 1e-9)


def test_a_circuit_too_large_for_the_page_gets_a_note_and_a_full_size_figure():
    spec = load_spec(EXAMPLES / "seed002_seven_neurons.toml")
    flow = stage(spec.network).evaluate(spec.values, bind=spec.bind)
    page = render_circuit(flow)
    assert "tikzpicture" not in page and "No figure: the circuit is too large" in page
    alone = render_circuit(flow, figure=True)
    assert alone.count("\\draw[->]") == sum(len(g.inputs) for g in flow.circuit.gates) + 1
