r"""The matrix form's worked solution (``symprop solve`` on a ``[layers]`` spec), issue 12 item 8:
σ' written with the layer's output (a ⊙ (1 - a)), "l = 1, 2" without an ellipsis, each gate
rule named once, seed 004's 𝓛(m) per sample and L = 1/M Σ_m 𝓛(m) for the batch, and every
step's shape beside it; the PDF has no overfull box and no two words on top of each other."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symprop.cli import main
from symprop.documents.matrix import enumeration, matrix_solution_context, render_matrix_solution
from symprop.matrix import GATES, OUTPUT_RULES, derive_matrix

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# the two [layers] specs of the review, inline (not among the bundled examples)
EXTRA_LAYERS = """
[layers]
sizes = [2, 3, 1]
hidden = "tanh"
output = "sigmoid"
loss = "binary_cross_entropy"
seed = 3
batch = 2
"""
EXTRA_LAYERS_RELU = """
[layers]
sizes = [3, 2, 2, 3]
hidden = ["relu", "softplus"]
output = "softmax"
loss = "cross_entropy"
reduction = "mean"
seed = 1
batch = 4
"""


@pytest.fixture(scope="module")
def mnist():
    return render_matrix_solution(derive_matrix([784, 128, 10], "sigmoid", "softmax", "cross_entropy", reduction="mean"))


def test_sigmoid_derivative_is_written_with_the_layer_output(mnist):
    assert (r"\sigma'\left(\mathbf{z}^{(1)}\right) &= \mathbf{a}^{(1)} \odot \left(1 - \mathbf{a}^{(1)}\right)"
            in mnist)
    assert r"follow from $\sigma'(u) = \sigma\left(u\right) \left(1 - \sigma\left(u\right)\right)$" in mnist
    assert r"the layer's output $\mathbf{a}^{(l)} = f_l(\mathbf{z}^{(l)})$" in mnist
    assert "z\\,(1 - z)" not in mnist and "node's output" not in mnist
    # tanh likewise: 1 - a², and a derivative in z (relu) says what step is
    d = matrix_solution_context(derive_matrix([3, 2, 2, 3], ["tanh", "relu"], "softmax", "cross_entropy"))["derivatives"]
    assert d["rows"] == [
        {"lhs": r"\tanh'\left(\mathbf{z}^{(1)}\right)", "rhs": r"1 - \left(\mathbf{a}^{(1)}\right)^{2}"},
        {"lhs": r"\operatorname{relu}'\left(\mathbf{z}^{(2)}\right)", "rhs": r"\operatorname{step}\left(\mathbf{z}^{(2)}\right)"},
    ]
    assert d["notes"] == [r"$\operatorname{step}(u) = 1$ for $u > 0$ and $0$ otherwise"]


def test_each_sigmoid_layer_gets_its_own_line_but_the_rule_once():
    d = matrix_solution_context(derive_matrix([2, 3, 3, 1], "sigmoid", "sigmoid", "half_sse"))["derivatives"]
    assert [r["rhs"] for r in d["rows"]] == [
        rf"\mathbf{{a}}^{{({l})}} \odot \left(1 - \mathbf{{a}}^{{({l})}}\right)" for l in (1, 2, 3)]
    assert d["rules"] == [r"\sigma'(u) = \sigma\left(u\right) \left(1 - \sigma\left(u\right)\right)"]


def test_layers_are_listed_without_an_ellipsis_below_four():
    assert enumeration([1, 2]) == "1, 2" and enumeration([1, 2, 3]) == "1, 2, 3"
    assert enumeration(range(1, 5)) == r"1, \dots, 4"
    two = render_matrix_solution(derive_matrix([2, 3, 2], "tanh", "softmax", "cross_entropy"))
    three = render_matrix_solution(derive_matrix([2, 3, 3, 2], "tanh", "softmax", "cross_entropy"))
    five = render_matrix_solution(derive_matrix([2, 3, 3, 3, 3, 2], "tanh", "softmax", "cross_entropy"))
    assert "each layer $l = 1, 2$ computes" in two
    assert "each layer $l = 1, 2, 3$ computes" in three
    assert r"each layer $l = 1, \dots, 5$ computes" in five
    assert r"\dots, 2$" not in two and r"\dots, 3$" not in three


def test_gate_rules_are_named_once(mnist):
    assert (r"\item $\mathbf{z} = \mathbf{W}\mathbf{x}$: $\frac{\partial \mathbf{z}}{\partial \mathbf{x}} = "
            r"\mathbf{W}$, so the gradient passes back as $\mathbf{W}^{T} \frac{\partial \mathcal{L}}{\partial \mathbf{z}}$."
            in mnist)
    assert r"\item $\mathbf{z} = \mathbf{x}$: $\frac{\partial \mathbf{z}}{\partial \mathbf{x}} = \mathbf{I}$" in mnist
    assert r"\item elementwise $f$: $\mathbf{a} = f(\mathbf{z})$ entry by entry" in mnist
    for rule in (*GATES.values(), *OUTPUT_RULES.values()):
        assert not rule.sentence.startswith(rule.title), rule.name  # "z = Wx: z = Wx gives" read twice
    assert not re.search(r"\\item (\$[^$]+\$): \1", mnist)
    # the justification column: the activation by name, a batch step's combined rules
    assert r"\small elementwise sigmoid}" in mnist and r"elementwise f (sigmoid)" not in mnist
    assert r"\small $\mathbf{z} = \mathbf{W}\mathbf{x}$, elementwise sigmoid}" in mnist


def test_per_sample_loss_and_batch_loss_follow_seed_004(mnist):
    assert r"The loss of one sample is $\mathcal{L} = -\mathbf{y}^{T} \log{\left(\hat{\mathbf{y}} \right)}$" in mnist
    assert (r"over a batch of $M$ samples, with $\mathcal{L}(m)$ the loss of sample $m$, it is the mean "
            r"$L = \frac{1}{M} \sum_{m=1}^{M} \mathcal{L}(m)$") in mnist
    # one sample: d𝓛/dW; the batch: dL/dW, 1/M in the output delta, M samples (no E, no N)
    assert (r"\frac{\partial \mathcal{L}}{\partial \mathbf{W}^{(2)}} &= \boldsymbol{\delta}^{(2)} "
            r"\left(\mathbf{a}^{(1)}\right)^{T}") in mnist
    assert r"\frac{\partial L}{\partial \mathbf{W}^{(2)}} &= \boldsymbol{\Delta}^{(2)} \left(\mathbf{A}^{(1)}\right)^{T}" in mnist
    assert r"\boldsymbol{\Delta}^{(2)} &= \frac{1}{M} \left(\hat{\mathbf{Y}} - \mathbf{Y}\right)" in mnist
    assert (r"= \frac{1}{M} \sum_{m=1}^{M} \frac{\partial \mathcal{L}(m)}{\partial \mathbf{W}^{(l)}}") in mnist
    assert r"\partial E" not in mnist and "$E =" not in mnist and r"_{N}" not in mnist
    total = render_matrix_solution(derive_matrix([2, 3, 2], "tanh", "identity", "half_sse", reduction="sum"))
    assert r"it is the sum $L = \sum_{m=1}^{M} \mathcal{L}(m)$" in total
    assert r"\boldsymbol{\Delta}^{(2)} &= \mathbf{A}^{(2)} - \mathbf{Y}" in total
    assert r"\frac{1}{M}" not in total


def test_every_step_has_its_shape_beside_it_and_no_table(mnist):
    def row(lhs, rhs, shape, why):
        return (rf"{lhs} &= {rhs} \tag*{{\makebox[\sympropshape][l]{{$\in \mathbb{{R}}^{{{shape}}}$}}\quad"
                rf"\makebox[\sympropwhy][l]{{\small {why}}}}}")

    assert row(r"\boldsymbol{\delta}^{(2)}", r"\hat{\mathbf{y}} - \mathbf{y}", r"10 \times 1", "softmax + cross-entropy") in mnist
    assert row(r"\frac{\partial \mathcal{L}}{\partial \mathbf{W}^{(1)}}", r"\boldsymbol{\delta}^{(1)} \mathbf{x}^{T}",
               r"128 \times 784", r"$\boldsymbol{\delta}^{T}\mathbf{x}$") in mnist
    assert row(r"\frac{\partial \mathbf{a}^{(1)}}{\partial \mathbf{z}^{(1)}}",
               r"\operatorname{Diag}\left(\mathbf{a}^{(1)} \odot \left(1 - \mathbf{a}^{(1)}\right)\right)",
               r"128 \times 128", "elementwise sigmoid") in mnist
    assert row(r"\mathbf{Z}^{(1)}", r"\mathbf{W}^{(1)} \mathbf{X} + \mathbf{b}^{(1)} \mathbf{1}_{M}^{T}",
               r"128 \times M", "") in mnist
    assert r"\begin{tabular}" not in mnist and "Shapes" not in mnist
    # every row of every display carries its shape
    rows = [line for line in mnist.splitlines() if " &= " in line and r"\tag*" not in line]
    assert rows == [r"\sigma'\left(\mathbf{z}^{(1)}\right) &= \mathbf{a}^{(1)} \odot \left(1 - \mathbf{a}^{(1)}\right)"]


def test_raw_names_do_not_reach_the_prose():
    tex = render_matrix_solution(derive_matrix([2, 3, 3, 1], ["leaky_relu", "tanh"], "sigmoid", "mse"))
    assert "(2-3-3-1, leaky relu, tanh hidden, sigmoid output, mean squared error loss)" in tex
    assert r"elementwise leaky relu}" in tex and r"elementwise leaky\_relu" not in tex


def _overfull(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]


def _overlaps(pdf: Path) -> list[tuple]:
    """Pairs of words of the PDF printed on top of each other: their boxes overlap by more
    than a point across and by more than half the smaller height (a font's box is taller
    than its glyphs, so the boxes of neighbouring lines touch)."""
    html = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    found = []
    for page in html.split("<page ")[1:]:
        words = [(float(a), float(b), float(c), float(d), w) for a, b, c, d, w in re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', page)]
        for i, (x0, y0, x1, y1, w) in enumerate(words):
            for (u0, v0, u1, v1, v) in words[i + 1:]:
                if min(x1, u1) - max(x0, u0) > 1 and min(y1, v1) - max(y0, v0) > 0.5 * min(y1 - y0, v1 - v0):
                    found.append((w, v))
    return found


@needs_tex
@pytest.mark.parametrize("spec", ["mnist_layers.toml", "swish_layers.toml", EXTRA_LAYERS, EXTRA_LAYERS_RELU,
                                  "3-4-4-4-2 sigmoid, leaky relu, tanh; softmax + binary cross-entropy"])
def test_the_solution_compiles_without_overfull_boxes_or_overlapping_words(spec, tmp_path, capsys):
    if spec.endswith(".toml"):
        path = EXAMPLES / spec
    elif spec.startswith("\n"):
        path = tmp_path / "layers.toml"
        path.write_text(spec)
    else:  # the widest steps: softmax without its fused loss, a parameterised activation
        path = tmp_path / "layers.toml"
        path.write_text('[layers]\nsizes = [3, 4, 4, 4, 2]\nhidden = ["sigmoid", "leaky_relu", "tanh"]\n'
                        'output = "softmax"\nloss = "binary_cross_entropy"\nreduction = "mean"\n')
    tex = tmp_path / "solution.tex"
    assert main(["solve", str(path), "-o", str(tex), "--pdf"]) == 0, capsys.readouterr().err
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert [x for x in _overfull(log) if x > 1] == []
    if shutil.which("pdftotext"):
        assert _overlaps(tex.with_suffix(".pdf")) == []
