"""`--wrt` a node (issue 14, item 1): dE/dz_k, the node's delta, as seed 002 §1.9 writes it.

    dL/dz_4 = dL/dz_1 dz_1/dz_2 dz_2/dz_4 + dL/dz_1 dz_1/dz_3 dz_3/dz_4

The references here are computed without symprop's engine: SymPy's own diff of the loss
with z_4 a free symbol (the nodes above it substituted in), and central differences of
the loss with a perturbation added to z_4's value in a forward pass written here.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import sympy as sp

from symprop.cli import main
from symprop.derive import METHODS, derive
from symprop.spec import load_spec, parse_expression

SEED002 = Path(__file__).resolve().parent.parent / "examples" / "seed002_gradient_flow.toml"

# §1.9's two chains of products, in symprop's JSON names: pA_pB is ∂A/∂B
CHAINS = {
    "z_4": "pL_pz_1*pz_1_pz_2*pz_2_pz_4 + pL_pz_1*pz_1_pz_3*pz_3_pz_4",
    "z_5": "pL_pz_1*pz_1_pz_2*pz_2_pz_4*pz_4_pz_5 + pL_pz_1*pz_1_pz_3*pz_3_pz_4*pz_4_pz_5",
    "z_6": "pL_pz_1*pz_1_pz_2*pz_2_pz_4*pz_4_pz_5*pz_5_pz_6 + pL_pz_1*pz_1_pz_3*pz_3_pz_4*pz_4_pz_5*pz_5_pz_6",
}

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")


def run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def spec():
    return load_spec(SEED002)


def above(net, node):
    """The loss as a function of ``node`` held as a free symbol: every other node
    substituted by its definition, down to the leaves (SymPy only, no engine)."""
    expr = net.nodes[net.loss]
    while True:
        inner = {s: net.nodes[s] for s in expr.free_symbols if s in net.nodes and s != node}
        if not inner:
            return expr
        expr = expr.xreplace(inner)


def full(net, node):
    """``node``'s definition in leaves only."""
    expr = net.nodes[node]
    while inner := {s: net.nodes[s] for s in expr.free_symbols if s in net.nodes}:
        expr = expr.xreplace(inner)
    return expr


def in_node_of(net, expr, node):
    """``expr`` (in node symbols) with every node above ``node`` written in ``node``."""
    while inner := {s: net.nodes[s] for s in expr.free_symbols if s in net.nodes and s != node}:
        expr = expr.xreplace(inner)
    return expr


def spec_values(spec):
    return {s: float(v) for s, v in spec.values.items()}


def forward_loss(net, leaves, node, shift):
    """The loss by a forward pass written here, ``shift`` added to ``node``'s value."""
    value = {s: sp.Float(v, 40) for s, v in leaves.items()}
    pending = list(net.nodes)
    while pending:
        for k in list(pending):
            expr = net.nodes[k]
            if all(s in value for s in expr.free_symbols):
                value[k] = sp.N(expr.xreplace(value), 40) + (shift if k == node else 0)
                pending.remove(k)
    return value[net.loss]


def central(net, leaves, node, h=sp.Float("1e-12", 40)):
    return float((forward_loss(net, leaves, node, h) - forward_loss(net, leaves, node, -h)) / (2 * h))


# -- derive ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_derive_json_equals_sympy_diff_with_the_node_free(spec, method, capsys):
    net = spec.network
    z4 = spec.symbols["z_4"]
    status, out, _ = run(["derive", str(SEED002), "--wrt", "z_4", "--method", method, "--format", "json"], capsys)
    assert status == 0
    (record,) = json.loads(out)["derivations"]
    assert record["wrt"] == "z_4" and record["method"] == method and record["path_count"] == 2
    reference = sp.diff(above(net, z4), z4)  # a function of the free symbol z_4
    assert reference.has(z4)
    # the local-partials form is in node symbols: with the nodes above z_4 written in z_4,
    # it equals the reference as a function of z_4
    local = parse_expression(record["forms"]["local"], spec.symbols, spec.functions)
    assert sp.expand(in_node_of(net, local, z4) - reference) == 0
    assert record["forms"]["deltas"] == "dL_dz_2*(1 - z_2**2)*w_2 + dL_dz_3*(1 - z_3**2)*w_3"
    # "result" is in leaves only: z_4 itself is its definition there
    result = parse_expression(record["result"], spec.symbols, spec.functions)
    assert not result.free_symbols & set(net.nodes)
    assert sp.expand(result - reference.xreplace({z4: full(net, z4)})) == 0
    # §1.9's two chains of products
    assert record["forms"]["paths"] == CHAINS["z_4"]


@pytest.mark.parametrize("node", sorted(CHAINS))
def test_path_forms_are_the_seed_chains(spec, node, capsys):
    status, out, _ = run(["derive", str(SEED002), "--wrt", node, "--method", "paths", "--format", "json"], capsys)
    assert status == 0
    (record,) = json.loads(out)["derivations"]
    assert record["forms"]["paths"] == CHAINS[node]
    assert record["steps"][0] == {"rule": "sum over paths", "equation": f"dL_d{node} = {CHAINS[node]}"}


def test_text_shows_the_delta_top_down_and_bottom_up(capsys):
    status, out, _ = run(["derive", str(SEED002), "--wrt", "z_4"], capsys)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "dL/dz_4  (top-down, 2 paths)"
    assert "  dL/dz_4 = dL/dz_2*∂z_2/∂z_4 + dL/dz_3*∂z_3/∂z_4    [finish at the bottom]" in lines
    # top-down: the deltas from the loss down, z_4's last
    assert lines[1] == "  dL/dz_1 = ∂L/∂z_1    [loss directly]"
    status, out, _ = run(["derive", str(SEED002), "--wrt", "z_4", "--method", "bottom-up"], capsys)
    lines = out.splitlines()
    # bottom-up: start at z_4, walk up
    assert lines[1] == "  dL/dz_4 = dL/dz_2*∂z_2/∂z_4 + dL/dz_3*∂z_3/∂z_4    [factor at the bottom]"
    assert "  ∂z_1/∂z_2 = (1 - z_1**2)*w_1_2    [local partial: tanh'(u) = 1 - tanh²(u); multiply: the other factor]" in lines


def test_a_node_the_loss_reads_directly(spec):
    d = derive(spec.network, "z_1", method="bottom-up")
    z1 = spec.symbols["z_1"]
    assert sp.expand(d.expr - sp.diff(above(spec.network, z1), z1)) == 0
    assert [s.rule for s in d.steps][:2] == ["factor at the bottom", "local partial"]


def test_every_node_equals_sympy_diff_at_a_point(spec):
    net = spec.network
    point = {s: sp.Float(v, 30) for s, v in spec_values(spec).items()}
    for k in net.order:
        if k == net.loss:
            continue
        d = derive(net, k)
        reference = sp.diff(above(net, k), k).xreplace({k: full(net, k)})
        assert abs(sp.N((d.substituted - reference).xreplace(point), 30)) < 1e-25, k


@pytest.mark.parametrize("name, message", [
    ("L", "--wrt L: L is the loss itself (dL/dL = 1)"),
    ("t", "--wrt t: can only differentiate with respect to a parameter, an input or a node, not t"),
    ("nothing", "--wrt nothing: no such parameter, input or node"),
])
@pytest.mark.parametrize("verb", ["derive", "solve", "exam", "grad"])
def test_the_loss_a_target_or_an_unknown_name_is_refused(verb, name, message, capsys):
    status, out, err = run([verb, str(SEED002), "--wrt", name], capsys)
    assert status == 2 and out == ""
    assert message in err and len(err.splitlines()) == 1


# -- grad -----------------------------------------------------------------------------------

def test_grad_wrt_node_is_central_differences_of_a_shift(spec, capsys):
    status, out, _ = run(["grad", str(SEED002), "--wrt", "z_4", "--wrt", "w_2", "--format", "json"], capsys)
    assert status == 0
    record = json.loads(out)
    assert list(record["gradient"]) == ["z_4", "w_2"]
    assert record["gradient"]["z_4"] == record["deltas"]["z_4"]
    numeric = central(spec.network, spec_values(spec), spec.symbols["z_4"])
    assert record["gradient"]["z_4"] == pytest.approx(numeric, rel=1e-9)
    assert record["gradient"]["z_4"] == pytest.approx(-0.046197380588787584, rel=1e-12)
    # the parameter's number is the one grad prints without --wrt
    status, whole, _ = run(["grad", str(SEED002), "--format", "json"], capsys)
    assert record["gradient"]["w_2"] == json.loads(whole)["gradient"]["w_2"]


def test_grad_wrt_node_text(capsys):
    status, out, _ = run(["grad", str(SEED002), "--wrt", "z_4"], capsys)
    assert status == 0
    assert re.search(r"^dL/dz_4\s+-0\.0461974\s+node$", out, re.M)
    assert "dL/dw_1_2" not in out


def test_grad_wrt_node_over_a_batch_is_the_shift_in_every_sample(spec, tmp_path, capsys):
    values = tmp_path / "batch.toml"
    values.write_text("[values]\nz_7 = [1.0, -0.5, 0.25]\nt = [0.5, 0.1, -0.3]\n")
    status, out, _ = run(["grad", str(SEED002), "--values", str(values), "--wrt", "z_4", "--format", "json"], capsys)
    assert status == 0
    record = json.loads(out)
    leaves = spec_values(spec)
    numeric = 0.0
    for x, t in [(1.0, 0.5), (-0.5, 0.1), (0.25, -0.3)]:  # reduction "sum": the samples' losses add up
        numeric += central(spec.network, {**leaves, spec.symbols["z_7"]: x, spec.symbols["t"]: t}, spec.symbols["z_4"])
    assert record["gradient"]["z_4"] == pytest.approx(numeric, rel=1e-9)
    assert record["gradient"]["z_4"] == pytest.approx(sum(record["deltas"]["z_4"]), rel=1e-12)


# -- grade ----------------------------------------------------------------------------------

RIGHT = "(z_1 - t)*(1 - z_1**2)*(w_1_2*(1 - z_2**2)*w_2 + w_1_3*(1 - z_3**2)*w_3)"


@pytest.mark.parametrize("answer, status, verdict", [
    (RIGHT, 0, "right: the answer equals dL/dz_4"),
    ("(z_1 - t)*(1 - z_1**2)*w_1_2*(1 - z_2**2)*w_2", 1,  # one of the two chains only
     "wrong: the answer is not dL/dz_4; it matches a typical mistake: dropped path z_4 -> z_3 -> z_1 -> L"),
    ("(t - z_1)*(1 - z_1**2)*(w_1_2*(1 - z_2**2)*w_2 + w_1_3*(1 - z_3**2)*w_3)", 1,
     "wrong: the answer is not dL/dz_4; it matches a typical mistake: sign error in the derivative of the loss"),
])
def test_grade_wrt_node(answer, status, verdict, capsys):
    got, out, _ = run(["grade", str(SEED002), "--wrt", "z_4", f"--answer={answer}"], capsys)
    assert got == status
    assert out.startswith(verdict)


def test_grade_wrt_node_json(capsys):
    status, out, _ = run(["grade", str(SEED002), "--wrt", "z_4", f"--answer={RIGHT}", "--format", "json"], capsys)
    assert status == 0
    record = json.loads(out)
    assert record["wrt"] == "z_4" and record["correct"] is True


# -- LaTeX ----------------------------------------------------------------------------------

def solve_tex(tmp_path, method, capsys, verb="solve", pdf=False):
    tex = tmp_path / f"{verb}-{method}.tex"
    argv = [verb, str(SEED002), "--wrt", "z_4", "--method", method, "-o", str(tex)]
    if verb == "exam":
        argv.append("--answers")
    if pdf:
        argv.append("--pdf")
    status, _, err = run(argv, capsys)
    assert status == 0, err
    return tex


@pytest.mark.parametrize("method", METHODS)
def test_solution_reads_as_a_node_delta(tmp_path, method, capsys):
    text = solve_tex(tmp_path, method, capsys).read_text()
    assert r"What is asked for, $\frac{d L}{d z_{4}}$, is itself a delta" in text
    assert "enters" not in text and "the weight" not in text
    # the delta asked for is boxed, at the value grad gives
    assert re.search(r"\\boxed\{-0\.0462\}", text)
    assert r"\frac{\partial L}{\partial z_{1}} \frac{\partial z_{1}}{\partial z_{2}} \frac{\partial z_{2}}{\partial z_{4}}" \
           r" + \frac{\partial L}{\partial z_{1}} \frac{\partial z_{1}}{\partial z_{3}} \frac{\partial z_{3}}{\partial z_{4}}" \
        in text
    if method == "bottom-up":
        assert r"\textbf{Start at $z_{4}$.} We start at $z_{4}$ itself. It gives input to $z_{2}$ and $z_{3}$" in text
    if method == "top-down":
        assert r"\textbf{The delta of $z_{4}$.} $z_{4}$ gives input to $z_{2}$ and $z_{3}$, whose deltas are known" in text


def overfull(log: Path) -> list[float]:
    return [float(m) for m in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log.read_text(errors="replace"))]


@needs_tex
@pytest.mark.parametrize("verb, method", [("solve", "top-down"), ("solve", "paths"), ("exam", "bottom-up")])
def test_documents_compile_without_overfull_boxes(tmp_path, verb, method, capsys):
    tex = solve_tex(tmp_path, method, capsys, verb=verb, pdf=True)
    assert tex.with_suffix(".pdf").stat().st_size > 0
    assert all(pt <= 1.0 for pt in overfull(tex.with_suffix(".log")))
