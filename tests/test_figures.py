"""The network figure: every label placed in Python so that no two overlap and no edge
crosses a label but its own weight's (checked on every bundled example and 20 family
variants, then in the compiled PDFs from pdftotext's word boxes), the figure centred in
the line, and a caption naming the loss and the weight asked for."""

import re
import shutil
import subprocess

import pytest

from symprop import cli
from symprop.documents.figures import _label_size, network_figure_overlaps
from symprop.documents.environment import environment
from symprop.documents.solution import _Document, render_exam
from symprop.documents.variants import render_variants
from symprop.exam import variants
from symprop.output import compile_pdf
from symprop.printing import latex_number
from symprop.spec import load_family, load_spec
from example_files import EXAMPLES_DIR, LAYERED, NETWORKS

needs_tex = pytest.mark.skipif(
    shutil.which("pdflatex") is None or shutil.which("pdftotext") is None, reason="pdflatex or pdftotext is not installed"
)
FAMILY = EXAMPLES_DIR / "exam_family.toml"


def _figure(net, values=None, bind=None, asked=()):
    """The figure a solution or exam draws (``_Document.figure``, the templates' caller)."""
    return _Document(net, values, bind).figure(list(asked))


def _example_figures(asked=lambda net: [net.params[0]]):
    """(name, figure) for every bundled network example, by default asked about its first weight."""
    found = []
    for path in NETWORKS + LAYERED:
        spec = load_spec(path)
        figure = _figure(spec.network, spec.values, spec.bind, asked(spec.network))
        if figure is not None:
            found.append((path.stem, figure))
    return found


def _caption(figure):
    macro = r'\BLOCK{from "network_figure.tex.j2" import network_figure}\VAR{network_figure(figure)}'
    tex = environment().from_string(macro).render(figure=figure)
    return tex[tex.index(r"\end{center}"):]


@pytest.fixture(scope="module")
def family_variants():
    fam = load_family(FAMILY)
    return fam, variants(fam, 20, seed=7)


@pytest.fixture(scope="module")
def figures(family_variants):
    """(name, figure) for every example network, its question figure (no numbers), and the
    20 family variants of `symprop exam examples/exam_family.toml --variants 20 --seed 7`."""
    found = _example_figures()
    found += [(f"{name} asked for its last weight", f) for name, f in _example_figures(lambda net: [net.params[-1]])]
    found += [(f"{name} asked for every weight", f) for name, f in _example_figures(lambda net: net.params)]
    fam, vs = family_variants
    for v in vs:  # as variants.py draws them: the question's figure, no numbers
        found.append((f"variant {v.index}", _figure(v.network, asked=[v.wrt])))
    return found


def test_every_example_and_variant_has_a_figure(figures):
    names = {name for name, _ in figures}
    assert {p.stem for p in NETWORKS} <= names and sum(n.startswith("variant") for n in names) == 20
    # the 2-3-2 family networks, where the labels used to print on top of each other, are among them
    assert any(len(f["nodes"]) == 8 and sum(e["label"] is not None for e in f["edges"]) == 12 for _, f in figures)


def test_no_label_overlaps_another_and_no_edge_crosses_a_label(figures):
    for name, figure in figures:
        assert network_figure_overlaps(figure) == [], name
        # every weight and every number got a place
        assert all(e["at"] is not None for e in figure["edges"] if e["label"] is not None), name
        assert all(n[k + "_shift"] is not None for n in figure["nodes"] for k in ("number", "delta") if n[k] is not None)


def test_the_check_finds_what_the_old_layout_got_wrong(figures):
    """All weights at pos=0.72 along their edges, as before: in the 2-3-2 figure two weights
    overlap and an edge crosses a weight, and the check says so."""
    name, figure = next((n, f) for n, f in figures if n.startswith("variant") and len(f["nodes"]) == 8
                        and sum(e["label"] is not None for e in f["edges"]) == 12)
    centre = {n["id"]: (float(n["x"]), float(n["y"])) for n in figure["nodes"]}
    old = {**figure, "edges": []}
    for e in figure["edges"]:
        (x0, y0), (x1, y1) = centre[e["source"]], centre[e["target"]]
        old["edges"].append({**e, "at": f"{x0 + 0.72 * (x1 - x0):.2f}, {y0 + 0.72 * (y1 - y0):.2f}"})
    found = network_figure_overlaps(old)
    assert any(" overlaps weight " in f for f in found), found
    assert any(f.startswith("edge ") and " crosses weight " in f for f in found), found
    # and a value moved onto a weight is found as well
    moved = {**figure, "nodes": [dict(n) for n in figure["nodes"]], "edges": [dict(e) for e in figure["edges"]]}
    first = next(e for e in moved["edges"] if e["label"] is not None)
    second = next(e for e in moved["edges"] if e["label"] is not None and e is not first)
    second["at"] = first["at"]
    assert any("overlaps" in f for f in network_figure_overlaps(moved))


def test_label_boxes_grow_with_their_text():
    narrow, tall = _label_size("w_{4,6}", 8), _label_size("w^{(2)}_{1,3}", 8)
    assert tall[1] > narrow[1] and tall[0] >= narrow[0]
    assert _label_size("-0.04646", 8)[0] > _label_size("0.5", 8)[0] > 0
    assert _label_size(r"\& \% \$ \# \_ \{ \} w", 8)[0] > _label_size("w", 8)[0]  # hostile names, escaped


def test_caption_names_the_loss_and_the_weight_asked_for():
    losses = set()
    for name, figure in _example_figures():
        tex = _caption(figure)
        loss = figure["loss"]
        losses.add(loss)
        if figure["numbers"]:
            assert f"the derivative of the loss ${loss}$ with respect to that value" in tex, name
        if loss != "E":
            assert r"\frac{dE}{dz}" not in tex and r"loss $E$" not in tex, name
        thick = [e for e in figure["edges"] if e["highlight"]]
        if len(thick) == 1:
            assert figure["asked"] == [thick[0]["label"]]
            assert f"the thick edge carries ${thick[0]['label']}$, the weight asked for" in tex, name
        elif thick:  # a weight shared by several edges: each is thick, the weight named once
            assert figure["asked"] == [thick[0]["label"]] and {e["label"] for e in thick} == set(figure["asked"])
            assert f"the thick edges carry ${thick[0]['label']}$, the weight asked for" in tex, name
    assert {"E", "L", "c"} <= losses  # seed002_gradient_flow's L, seed003's c
    # every weight asked for: no edge is thick, and the caption says nothing of it
    spec = load_spec(EXAMPLES_DIR / "seed002_seven_neurons.toml")
    everything = _figure(spec.network, spec.values, spec.bind, spec.network.params)
    assert everything["asked"] == [] and not any(e["highlight"] for e in everything["edges"])
    assert "thick" not in _caption(everything)


def test_figure_numbers_have_the_texts_digits():
    spec = load_spec(EXAMPLES_DIR / "seed002_seven_neurons.toml")
    figure = _figure(spec.network, spec.values, spec.bind, [spec.network.symbol("w_5_7")])
    numbers = [n[k] for n in figure["nodes"] for k in ("number", "delta") if n[k] is not None]
    assert all(latex_number(float(x)) == x for x in numbers)
    assert "-0.04646" in numbers and "-0.2661" in numbers  # four significant digits, as in the text


# -- the compiled PDFs: pdftotext's word boxes ------------------------------------------------

_WORD = re.compile(r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" yMax="([-\d.]+)">(.*?)</word>')
# the first words of the two captions (with numbers, without); the first also has "Each edge carries its weight;"
_CAPTIONS = (("Above", "each", "node,", "in", "green,"), ("Each", "edge", "carries", "its", "weight,"))


def _pages(pdf):
    """Each page's words in the order they were drawn: [(x0, y0, x1, y1, text)]."""
    xml = subprocess.run(["pdftotext", "-raw", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return [[(*map(float, m.groups()[:4]), m.group(5)) for m in _WORD.finditer(page)] for page in xml.split("<page ")[1:]]


def _figures(words):
    """Each figure on a page: (its words, the caption's first word). A figure's words are drawn
    after the paragraph before it (whose last word ends a sentence, or is "Solution:") and
    before its caption."""
    found = []
    for i in range(len(words)):
        if tuple(w[4] for w in words[i:i + 5]) in _CAPTIONS:
            j = i
            while j > 0 and not words[j - 1][4].endswith((".", ":")):
                j -= 1
            found.append((words[j:i], words[i]))
    return found


def _overlapping(words):
    pairs = []
    for a, p in enumerate(words):
        for q in words[a + 1:]:
            w = min(p[2], q[2]) - max(p[0], q[0])
            h = min(p[3], q[3]) - max(p[1], q[1])
            if w > 0.01 and h > 0.01:
                pairs.append((p[4], q[4]))
    return pairs


def _check_pdf(pdf, expected):
    pages = _pages(pdf)
    found = [(page, figure) for page in pages for figure in _figures(page)]
    assert len(found) >= expected, (pdf, len(found))  # the question's figures, perhaps the solutions' too
    for page, (words, caption) in found:
        assert len(words) >= 8, words  # node names and weights, at least
        assert _overlapping(words) == [], pdf
        # centred in the line: the line runs from the caption's left edge to the right end of
        # its first line (the caption is long enough to fill it)
        first = [w for w in page if abs(w[1] - caption[1]) < 0.5 and w[0] >= caption[0]]
        assert any(w[1] > caption[3] for w in page[page.index(caption):][:80]), "the caption fills its first line"
        right = max(w[2] for w in first)
        middle = (min(w[0] for w in words) + max(w[2] for w in words)) / 2
        assert abs(middle - (caption[0] + right) / 2) < 12, (pdf, middle, caption[0], right)
        assert min(w[0] for w in words) > caption[0]  # nothing in the margin


@needs_tex
def test_compiled_solve_figure_has_no_overlapping_words_and_is_centred(tmp_path):
    out = tmp_path / "F.tex"
    example = EXAMPLES_DIR / "seed002_seven_neurons.toml"
    assert cli.main(["solve", str(example), "--wrt", "w_5_7", "-o", str(out), "--pdf"]) == 0
    _check_pdf(out.with_suffix(".pdf"), 1)
    # an exam (questions indented) with the figure in the question and again in the solution
    spec = load_spec(example)
    exam = tmp_path / "exam.tex"
    exam.write_text(render_exam(spec.network, "w_5_7", values=spec.values, bind=spec.bind, answers=True))
    _check_pdf(compile_pdf(exam), 2)


@needs_tex
def test_compiled_family_figures_have_no_overlapping_words_and_are_centred(family_variants, tmp_path):
    fam, vs = family_variants
    (name, tex), = render_variants(fam, vs, combined=True, answers=True).items()
    (tmp_path / name).write_text(tex)
    _check_pdf(compile_pdf(tmp_path / name), 20)
