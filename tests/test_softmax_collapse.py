"""Softmax nodes followed by a separate cross-entropy (issue 14, item 6): the delta of each
logit collapses, step by step, to ŷ_j − t_j (seed 000's gate table, seed 004's output layer):

    dL/da_j = Σ_k dL/dy_k ∂y_k/∂a_j = Σ_k (−t_k/y_k) y_k(δ_kj − y_j) = −t_j + y_j Σ_k t_k = y_j − t_j

The references are SymPy's own diff of the loss written out with exp (no symprop record),
with the logits as free symbols, and central differences of that explicit loss.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sympy as sp

from symprop.cli import main
from symprop.derive import COLLAPSE_RULES, delta_expr, derive, softmax_chains
from symprop.documents.solution import render_solution
from symprop.numeric import gradient
from symprop.printing import text_chain
from symprop.spec import load_spec, spec_from_text

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "softmax_then_cross_entropy.toml"
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")


@pytest.fixture(scope="module")
def spec():
    return load_spec(EXAMPLE)


def symbols(spec, *names):
    return [spec.symbols[n] for n in names]


def explicit_loss(spec):
    """L = −Σ t_k log(exp(a_k) / Σ_j exp(a_j)) with the logits a_k free symbols."""
    a, t = symbols(spec, "a_1", "a_2", "a_3"), symbols(spec, "t_1", "t_2", "t_3")
    total = sum(sp.exp(x) for x in a)
    return -sum(tk * sp.log(sp.exp(ak) / total) for ak, tk in zip(a, t)), a, t


def run(capsys, *argv):
    status = main([str(x) for x in argv])
    out, err = capsys.readouterr()
    return status, out, err


# -- recognition ---------------------------------------------------------------------------------

def test_the_chain_is_recognised_with_its_targets(spec):
    chains = softmax_chains(spec.network)
    a = symbols(spec, "a_1", "a_2", "a_3")
    assert set(chains) == set(a)
    chain = chains[a[0]]
    assert chain.logits == tuple(a)
    assert chain.probs == tuple(symbols(spec, "y_1", "y_2", "y_3"))
    assert chain.targets == tuple(symbols(spec, "t_1", "t_2", "t_3"))


NOT_A_CHAIN = {
    "a logit read by another node too": ('L = "cross_entropy([y_1, y_2], [t_1, t_2]) + a_1**2"', {}),
    "a loss that is not the cross-entropy": ('L = "-(2*t_1*log(y_1) + t_2*log(y_2))"', {}),
    "a probability read twice": ('L = "cross_entropy([y_1, y_2], [t_1, t_2]) + y_1"', {}),
}


@pytest.mark.parametrize("case", sorted(NOT_A_CHAIN))
def test_other_losses_are_not_taken_for_the_chain(case):
    loss, _ = NOT_A_CHAIN[case]
    spec = spec_from_text(f"""
[network]
inputs = ["x"]
targets = ["t_1", "t_2"]
params = ["w"]
loss = "L"
[nodes]
a_1 = "w*x"
a_2 = "-w*x"
y_1 = "softmax([a_1, a_2], 1)"
y_2 = "softmax([a_1, a_2], 2)"
{loss}
""")
    assert softmax_chains(spec.network) == {}
    d = derive(spec.network, "w")
    assert not [s for s in d.steps if s.rule in COLLAPSE_RULES]


# -- derive: the collapse, step by step ---------------------------------------------------------

GOLDEN = [
    "  dL/da_1 = dL/dy_1*∂y_1/∂a_1 + dL/dy_2*∂y_2/∂a_1 + dL/dy_3*∂y_3/∂a_1    [sum over consumers]",
    "  dL/da_1 = -(t_1/y_1)*(y_1*(1 - y_1)) - (t_2/y_2)*(-y_2*y_1) - (t_3/y_3)*(-y_3*y_1)    "
    "[softmax + cross-entropy: -Σ t log p: ∂E/∂p = -t/p; softmax: ∂y_k/∂z_j = y_k(δ_kj - y_j)]",
    "  dL/da_1 = y_1*(t_1 + t_2 + t_3) - t_1    [cancel and collect: each probability cancels, "
    "(-t_k/p_k)·p_k(δ_kj - p_j) = -t_k(δ_kj - p_j); δ_kj keeps only t_j]",
    "  dL/da_1 = y_1 - t_1    [targets sum to 1: Σ_k t_k = 1 (one-hot labels or probabilities)]",
]


@pytest.mark.parametrize("method", ["top-down", "bottom-up"])
def test_derive_prints_the_collapse_after_what_it_uses(capsys, method):
    status, out, _ = run(capsys, "derive", EXAMPLE, "--wrt", "w2_1_1", "--method", method)
    assert status == 0
    lines = out.splitlines()
    for golden in GOLDEN:
        assert lines.count(golden) == 1, golden
    collapse = lines.index(GOLDEN[1])
    assert lines[collapse + 1:collapse + 3] == GOLDEN[2:]
    # it comes after the sum over the softmax nodes and after every delta dL/dy_k it substitutes
    assert lines.index(GOLDEN[0]) < collapse
    assert all(lines.index(f"  dL/dy_{k} = ∂L/∂y_{k}    [loss directly]") < collapse for k in (1, 2, 3))


def test_every_logit_collapses_once_in_a_derivation_through_all_of_them(spec):
    d = derive(spec.network, "w1_1_1")
    finals = [s for s in d.steps if s.rule == "targets sum to 1"]
    assert [str(s.lhs) for s in finals] == ["dL_da_1", "dL_da_2", "dL_da_3"]
    assert [text_chain(s.rhs) for s in finals] == ["y_1 - t_1", "y_2 - t_2", "y_3 - t_3"]


@pytest.mark.parametrize("j", [1, 2, 3])
def test_each_step_equals_the_delta_and_sympy_diff_of_the_explicit_loss(spec, j):
    net = spec.network
    a = spec.symbols[f"a_{j}"]
    d = derive(net, a)
    substituted, collected, final = [s.rhs for s in d.steps if s.rule in COLLAPSE_RULES]
    # the first two equal the delta the engine computes (in node symbols), for any targets
    delta = delta_expr(net, a)
    assert sp.simplify(substituted - delta) == 0
    assert sp.simplify(collected - delta) == 0
    # and sympy.diff of the loss written with exp, the probabilities replaced by softmax
    loss, logits, t = explicit_loss(spec)
    reference = sp.diff(loss, logits[j - 1])
    softmax_of = {spec.symbols[f"y_{k}"]: sp.exp(logits[k - 1]) / sum(sp.exp(x) for x in logits) for k in (1, 2, 3)}
    assert sp.simplify(collected.xreplace(softmax_of) - reference) == 0
    # the last step holds when the targets sum to 1, and not otherwise
    assert sp.simplify((final - collected).xreplace({t[2]: 1 - t[0] - t[1]})) == 0
    assert sp.simplify(final - collected) != 0


def test_the_gradient_is_unchanged_and_equals_sympy_diff(spec):
    """The result is still the general one (it equals sympy.diff for any targets); the
    numbers are grad's."""
    net = spec.network
    w = spec.symbols["w2_1_1"]
    d = derive(net, w)
    from symprop.functions import explicit

    full = explicit(d.substituted)
    loss = explicit(derive(net, w)._engine.full(net.loss))
    point = {s: sp.Float(v) for s, v in spec.values.items()}
    reference = sp.diff(loss, w)
    assert abs(float(full.xreplace(point)) - float(reference.xreplace(point))) < 1e-12
    g = gradient(net, spec.values)
    assert abs(g.gradient[w] - float(reference.xreplace(point))) < 1e-12
    # the delta of a_1 is y_1 - t_1 in numbers (one-hot targets)
    y1, a1, t1 = symbols(spec, "y_1", "a_1", "t_1")
    assert abs(float(g.deltas[a1][0]) - (float(g.values[y1][0]) - spec.values[t1])) < 1e-15


def test_json_steps_name_each_rule(capsys):
    """The JSON contract keeps {"rule", "equation"} a step: the rule names are the reasons."""
    status, out, _ = run(capsys, "derive", EXAMPLE, "--wrt", "a_2", "--format", "json")
    assert status == 0
    steps = json.loads(out)["derivations"][0]["steps"]
    collapse = [s for s in steps if s["rule"] in COLLAPSE_RULES]
    assert collapse == [
        {"rule": "softmax + cross-entropy",
         "equation": "dL_da_2 = -(t_1/y_1)*(-y_1*y_2) - (t_2/y_2)*(y_2*(1 - y_2)) - (t_3/y_3)*(-y_2*y_3)"},
        {"rule": "cancel and collect", "equation": "dL_da_2 = y_2*(t_1 + t_2 + t_3) - t_2"},
        {"rule": "targets sum to 1", "equation": "dL_da_2 = y_2 - t_2"},
    ]
    # right after the sum over the softmax nodes and its local partials
    at = steps.index(collapse[0])
    assert steps[at - 4]["equation"].startswith("dL_da_2 = dL_dy_1*py_1_pa_2")


# -- solve: the collapse in the worked solution -----------------------------------------------

def test_solve_shows_the_collapse_with_each_reason_and_its_number(spec):
    tex = render_solution(spec.network, "w2_1_1", values=spec.values)
    assert r"\textbf{Softmax and cross-entropy together at $a_{1}$.}" in tex
    assert (r"\frac{d L}{d a_{1}} &= -\frac{t_{1}}{y_{1}} y_{1} \left(1 - y_{1}\right) - \frac{t_{2}}{y_{2}} "
            r"\left(- y_{2} y_{1}\right)") in tex
    assert r"\\ &= y_{1} \left(t_{1} + t_{2} + t_{3}\right) - t_{1} \qquad \text{(each probability cancels; " \
           r"$\delta_{kj}$ keeps $k = j$)}" in tex
    assert r"\\ &= y_{1} - t_{1} \qquad \text{($t_{1} + t_{2} + t_{3} = 1$)}" in tex
    value = gradient(spec.network, spec.values).deltas[spec.symbols["a_1"]][0]
    assert rf"\\ &= 0.4421 - 0 = {float(value):.4g}" in tex


def test_targets_that_do_not_sum_to_one_stop_before_the_last_step(spec):
    values = {**spec.values, spec.symbols["t_1"]: 0.5, spec.symbols["t_2"]: 0.2, spec.symbols["t_3"]: 0.2}
    tex = render_solution(spec.network, "w2_1_1", values=values)
    assert "the given targets sum to $0.9$, not $1$" in tex
    assert r"y_{1} - t_{1} \qquad" not in tex
    g = gradient(spec.network, values)
    y1, a1 = symbols(spec, "y_1", "a_1")
    # the numbers go through -t_1 + y_1 (t_1 + t_2 + t_3), the delta grad computes
    expected = -0.5 + float(g.values[y1][0]) * 0.9
    assert abs(float(g.deltas[a1][0]) - expected) < 1e-12
    assert re.search(r"= " + re.escape(f"{float(g.deltas[a1][0]):.4g}") + r"\n", tex)


@needs_tex
@pytest.mark.parametrize("argv", [["--wrt", "w2_1_1"], ["--wrt", "w1_1_1", "--method", "bottom-up"], []])
def test_the_collapse_compiles_without_overfull_boxes(tmp_path, capsys, argv):
    out = tmp_path / "collapse.tex"
    status, _, err = run(capsys, "solve", EXAMPLE, *argv, "-o", out, "--pdf")
    assert status == 0, err
    log = out.with_suffix(".log").read_text(encoding="utf-8", errors="replace")
    overfull = [float(m) for m in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]
    assert all(pt <= 1.0 for pt in overfull), overfull
    text = subprocess.run(["pdftotext", str(out.with_suffix(".pdf")), "-"], capture_output=True, text=True).stdout
    assert text.count("Softmax and cross-entropy together at") == (1 if argv[:2] == ["--wrt", "w2_1_1"] else 3)
