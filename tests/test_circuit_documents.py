"""The gate-circuit documents (issue 12): named backward-pass lines, the formula as staged,
the sigmoid cross-check, figure labels that meet nothing, and exam sheets ready to print."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sympy as sp

from symprop.documents.circuit import circuit_context, render_circuit
from symprop.documents.figures import circuit_clashes
from symprop.documents.variants import render_variants
from symprop.exam import variants
from symprop.gates import stage
from symprop.spec import load_family

ROOT = Path(__file__).resolve().parent.parent
FAMILY = ROOT / "examples" / "exam_circuit_family.toml"
pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                              reason="pdflatex and pdftotext are needed")

w0, x0, w1, x1, w2 = NEURON_VARS = sp.symbols("w0 x0 w1 x1 w2")
NEURON = 1 / (1 + sp.exp(-(w0 * x0 + w1 * x1 + w2)))
NEURON_AT = {w0: 2, x0: -1, w1: -3, x1: -2, w2: -3}


@pytest.fixture(scope="module")
def neuron():
    return stage(NEURON, list(NEURON_VARS)).evaluate(NEURON_AT)


def central(expr, at, wrt, h=1e-6):
    f = sp.lambdify(list(at), expr, "math")
    up = [v + h if s == wrt else v for s, v in at.items()]
    down = [v - h if s == wrt else v for s, v in at.items()]
    return (f(*up) - f(*down)) / (2 * h)


def test_cs231n_neuron_gradients_are_named_and_agree_with_central_differences(neuron):
    tex = render_circuit(neuron)
    golden = {w0: "-0.1966", x0: "0.3932", w1: "-0.3932", x1: "-0.5898", w2: "0.1966"}
    for s, printed in golden.items():
        assert f"{central(NEURON, NEURON_AT, s):.4g}" == printed
    # every backward line names what it computes, then the chain, then the numbers
    assert (r"\frac{d f}{d w_{0}} &= \frac{d f}{d \mathrm{mul}_{1}}\,\frac{\partial \mathrm{mul}_{1}}{\partial w_{0}}"
            r" = 0.1966 \cdot \left(-1\right) = -0.1966") in tex
    assert (r"\frac{d f}{d \mathrm{mul}_{1}} &= \frac{d f}{d \mathrm{add}_{1}}\,\frac{\partial \mathrm{add}_{1}}"
            r"{\partial \mathrm{mul}_{1}} = 0.1966 \cdot 1 = 0.1966") in tex
    assert (r"\frac{d f}{d \mathrm{add}_{2}} &= \frac{d f}{d f}\,\frac{\partial f}{\partial \mathrm{add}_{2}}"
            r" = 1 \cdot \left(-0.5344\right) = -0.5344") in tex
    assert (r"The gradient: $df/dw_{0} = -0.1966$, $df/dx_{0} = 0.3932$, $df/dw_{1} = -0.3932$, $df/dx_{1} = -0.5898$, "
            r"and $df/dw_{2} = 0.1966$.") in tex
    # no backward line is a bare product any more
    backward = tex.split(r"\subsection*{Backward pass}")[1].split(r"\subsection*{Summary}")[0]
    rows = backward.splitlines()
    named = [after for line, after in zip(rows, rows[1:]) if line.startswith(r"\frac{\partial") and line.endswith("&")]
    assert len(named) == 11  # one per wire into a gate: "df/dinput &= df/dgate dgate/dinput = numbers"
    for line in named:
        assert line.startswith((r"\frac{d f}{d ", r"\left.\frac{d f}{d ")) and r" &= \frac{d f}{d " in line, line


def test_formula_is_printed_as_staged_not_as_sympy_reorders_it(neuron):
    c = circuit_context(neuron)
    assert c["source"] == [{"lhs": "f", "rhs": r"\frac{1}{1 + e^{-\left(w_{0} x_{0} + w_{1} x_{1} + w_{2}\right)}}"}]
    tex = render_circuit(neuron)
    assert r"e^{-\left(w_{0} x_{0} + w_{1} x_{1} + w_{2}\right)}" in tex and "- w_{2} - w_{0}" not in tex


@pytest.mark.parametrize("expr, expected", [
    ((sp.Symbol("x") + sp.Symbol("y")) * sp.Symbol("z"), r"\left(x + y\right) z"),
    (sp.Symbol("x") * (sp.Symbol("x") * sp.Symbol("y") + sp.exp(sp.Symbol("x"))), r"\left(x y + e^{x}\right) x"),  # the staged order: the composite factor first
    (sp.Symbol("x") - 3, "x - 3"),
    ((sp.Symbol("x") + 1) ** 2, r"\left(1 + x\right)^{2}"),  # a positive constant first, as in 1 + e^{...}
])
def test_formula_of_other_circuits(expr, expected):
    flow = stage(expr).evaluate({s: 1.5 for s in expr.free_symbols})
    assert circuit_context(flow)["source"][0]["rhs"] == expected


def test_sigmoid_chain_is_cross_checked(neuron):
    (check,) = [g["check"] for g in circuit_context(neuron)["gates"] if g["check"]]
    sigma = 1 / (1 + math.exp(-1.0))
    assert check["value"] == f"{sigma:.4g}" == "0.7311"
    assert check["gradient"] == check["product"] == f"{sigma * (1 - sigma):.4g}" == "0.1966"
    assert check["input"] == r"\mathrm{add}_{1}" and check["output"] == "f"
    tex = render_circuit(neuron)
    assert r"f\,(1 - f) &= 0.7311 \cdot (1 - 0.7311) = 0.1966" in tex
    assert r"\left(-0.5344\right) \cdot 1 \cdot 0.3679 \cdot \left(-1\right) &= 0.1966" in tex
    # no false alarm: exp(-x) + 1 without the 1/x is no sigmoid
    x = sp.Symbol("x")
    flow = stage(sp.exp(-x) + 1).evaluate({x: 0.5})
    assert not any(g["check"] for g in circuit_context(flow)["gates"])


def test_fan_out_terms_are_named_by_the_gate_they_come_through():
    x, y = sp.symbols("x y")
    tex = render_circuit(stage(x * (x * y + sp.exp(x))).evaluate({x: 0.5, y: 2}))
    assert r"\left.\frac{d f}{d x}\right|_{\text{via } \mathrm{mul}_{1}} &=" in tex


def test_figure_digits_are_the_text_digits(neuron):
    fig = circuit_context(neuron)["figure"]
    gradients = {w["gradient"] for w in fig["wires"]}
    assert {"-0.1966", "0.3932", "-0.5898", "-0.5344"} <= gradients
    assert "0.7311" in {w["value"] for w in fig["wires"]}


def family_contexts(count=20):
    fam = load_family(FAMILY)
    return fam, variants(fam, count, seed=2024)


def test_no_label_meets_a_wire_a_node_or_another_label(neuron):
    x, y, z = sp.symbols("x y z")
    flows = [neuron, stage((x + y) * z).evaluate({x: -2, y: 5, z: -4}),
             stage(x * (x * y + sp.exp(x)) + z, [x, y, z]).evaluate({x: 0.5, y: 2, z: 1})]
    fam, vs = family_contexts()
    flows += [v.flow for v in vs]
    for flow in flows:
        fig = circuit_context(flow)["figure"]
        assert fig is not None and circuit_clashes(fig) == [], flow.circuit.source
        assert fig["width"] <= 16.2 and fig["exam"]["width"] <= 16.2


def test_exam_has_points_answer_room_and_readable_tables(neuron):
    tex = render_circuit(neuron, exam=True)
    assert r"\question[11]" in tex  # one point per wire to fill in
    assert r"minimum width=17mm, minimum height=6.5mm" in tex  # room for "-0.1966" by hand
    assert r"\begin{tabular}{|l|l|r|p{19mm}|l|p{26mm}|p{19mm}|}" in tex and r"\rule[-2.6mm]{0pt}{8mm}" in tex
    assert r"\tiny" not in tex and "black!55" not in tex
    assert tex.count(r"\framebox[24mm]") == 5  # a box for each variable's gradient
    fam, vs = family_contexts(4)
    for v, doc in zip(vs, render_variants(fam, vs).values()):
        assert re.search(r"\\question\[\d+\]", doc)


def overlapping_words(pdf: Path) -> list:
    """Pairs of words on a page of ``pdf`` whose boxes intersect (by more than 0.1 pt across and 1 pt up)."""
    html = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    found = []
    for page in html.split("<page")[1:]:
        words = [(float(a), float(b), float(c), float(d), w) for a, b, c, d, w in re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>', page)]
        for i, (ax0, ay0, ax1, ay1, a) in enumerate(words):
            for bx0, by0, bx1, by1, b in words[i + 1:]:
                # a subscript abuts its base (pdftotext rounds that to overlaps of 0.01 pt), and its
                # font boxes of consecutive text lines overlap by 0.6 pt: more than that counts
                if min(ax1, bx1) - max(ax0, bx0) > 0.1 and min(ay1, by1) - max(ay0, by0) > 1.0:
                    found.append((a, b))
    return found


def compile_and_check(tex: str, path: Path) -> Path:
    path.write_text(tex)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", path.name],
                          cwd=path.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    log = path.with_suffix(".log").read_text(errors="replace")
    assert done.returncode == 0, [line for line in log.splitlines() if line.startswith("!")][:3]
    overfull = [float(m) for m in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]
    assert all(pt <= 1.0 for pt in overfull), (path.name, overfull)
    pdf = path.with_suffix(".pdf")
    assert overlapping_words(pdf) == [], path.name
    return pdf


@pdflatex
def test_documents_compile_without_overfull_boxes_or_overlapping_words(neuron, tmp_path):
    compile_and_check(render_circuit(neuron, title="A sigmoid neuron"), tmp_path / "solution.tex")
    compile_and_check(render_circuit(neuron, exam=True), tmp_path / "exam.tex")
    compile_and_check(render_circuit(neuron, exam=True, answers=True), tmp_path / "answers.tex")
    fam, vs = family_contexts(20)
    (name, tex), = render_variants(fam, vs, combined=True, answers=True).items()
    compile_and_check(tex, tmp_path / name)
