"""Exam sheets ready to print (issue 12, items 5, 6 and 9): points on every question, room for
the work on the question sheet only, spaced tables, the annotated figure opening the
solution, readable answer keys, and every sheet through pdflatex with no overfull line."""

import re
import shutil

import pytest

from symprop.documents.solution import render_exam
from symprop.documents.variants import answer_key_tex, render_variants, variant_context
from symprop.exam import variants
from symprop.output import compile_pdf
from symprop.spec import family_from_text, load_family, load_spec
from tests.test_exam import EXAMPLE, ROOT

SEED002 = ROOT / "examples" / "seed002_seven_neurons.toml"

NUMERIC = """
[family]
name = "numeric"
title = "Backpropagation, numerical answer"
wrt = ["w_1_*"]
options = 0
[family.layered]
sizes = [[2, 2, 1], [2, 3, 2]]
hidden = ["sigmoid", "tanh"]
output = ["identity"]
loss = "half_sse"
"""

WORKLINES = re.compile(r"^\\worklines\{(\d+)\}$", re.M)


@pytest.fixture(scope="module")
def seed002():
    spec = load_spec(SEED002)
    net = spec.network

    def exam(*weights, answers):
        return render_exam(net, [net.symbol(w) for w in weights], values=spec.values, bind=spec.bind, answers=answers)
    return exam


@pytest.fixture(scope="module")
def family():
    fam = load_family(EXAMPLE)
    return fam, variants(fam, 20, seed=7)


def paths(net, s):
    """The number of paths from ``s`` to the loss, counted along the consumers."""
    return 1 if s == net.loss else sum(paths(net, k) for k in net.consumers[s])


def solution_of(tex):
    return tex.split(r"\begin{solution}", 1)[1]


# -- the single exam question (symprop exam SPEC) ------------------------------------------------

def test_the_question_has_points_and_ruled_space_the_answer_sheet_none(seed002):
    question, answers = seed002("w_5_7", answers=False), seed002("w_5_7", answers=True)
    # w_5_7 reaches E along three paths: 2 points for the forward pass, one per path
    assert "\\question[5]\n" in question and "\\question[5]\n" in answers
    # ruled lines after the task, before the solution: 3 + 2 per path + 3 for the numbers
    assert WORKLINES.findall(question) == ["12"]
    assert question.index("Compute $\\frac{d E}{d w_{5,7}}$") < question.index("\\worklines{12}") \
        < question.index("\\begin{solution}")
    assert "\\ifprintanswers\\else\n\\worklines{12}\n\\fi" in question  # uncommenting \printanswers hides them
    assert not WORKLINES.findall(answers)
    for tex in (question, answers):
        assert "\\renewcommand{\\arraystretch}{1.45}" in tex and "\\setlength{\\linefillheight}{0.8cm}" in tex
        assert "\\tiny" not in tex


def test_each_part_has_its_points_and_its_space(seed002):
    question = seed002("w_5_7", "w_1_4", answers=False)
    assert "\\question\n" in question
    assert re.findall(r"\\part\[(\d+)\]", question) == ["5", "3"]  # three paths, one path
    assert WORKLINES.findall(question) == ["12", "8"]
    assert question.count("\\needspace{6\\linefillheight}\n\\part[") == 2  # a task never ends a page
    answers = seed002("w_5_7", "w_1_4", answers=True)
    assert re.findall(r"\\part\[(\d+)\]", answers) == ["5", "3"] and not WORKLINES.findall(answers)


def test_the_annotated_figure_opens_the_solution(seed002):
    solution = solution_of(seed002("w_5_7", answers=True)).lstrip()
    assert solution.startswith("\\begin{center}")
    figure_end = solution.index("\\end{tikzpicture}")
    assert "label={[text=green" in solution[:figure_end] and "label={[text=red" in solution[:figure_end]
    assert figure_end < solution.index("\\begin{align*}")
    # the table of values and gradients comes in the same solution, after the derivation
    assert solution.index("\\begin{align*}") < solution.index("gradient \\\\") < solution.index("\\end{solution}")
    parts = seed002("w_5_7", "w_1_4", answers=True)
    first = solution_of(parts)
    assert first.index("\\end{tikzpicture}") < first.index("\\end{solution}") < parts.index("\\begin{parts}") - len(
        parts.split(r"\begin{solution}", 1)[0])


# -- the question family ---------------------------------------------------------------------------

def test_variant_points_and_working_box(family):
    fam, vs = family
    for v in vs[:6]:
        expected = min(10, 2 + paths(v.network, v.wrt))
        (question,) = render_variants(fam, [v]).values()
        (answers,) = render_variants(fam, [v], answers=True).values()
        assert f"\\question[{expected}]\n" in question and f"\\question[{expected}]\n" in answers
        # multiple choice: an empty box for the working, after the choices, question sheet only
        room = min(5, variant_context(fam, v)["answer_lines"])  # the rest of the page, at least 5 lines
        box = f"\\ifprintanswers\\else\n\\par\\needspace{{{room}\\linefillheight}}\n\\makeemptybox{{\\stretch{{1}}}}\n\\fi"
        assert box in question and question.index("\\end{choices}") < question.index(box)
        assert "\\makeemptybox" not in answers and not WORKLINES.findall(answers)


def test_numerical_variants_get_ruled_lines_and_an_answer_box():
    fam = family_from_text(NUMERIC, "numeric.toml")
    for v in variants(fam, 3, seed=3):
        context = variant_context(fam, v)
        (question,) = render_variants(fam, [v]).values()
        (answers,) = render_variants(fam, [v], answers=True).values()
        nodes = len(v.network.order)
        assert f"\\ifprintanswers\\else\n\\worklines[2]{{{context['answer_lines']}}}\n\\fi" in question
        assert nodes + 2 < context["answer_lines"] <= 32
        line = f"\\hfill ${context['goal']} = {{}}$\\,\\framebox[5cm]{{\\rule{{0pt}}{{7mm}}}}"
        assert line in question and line not in answers and not WORKLINES.findall(answers)
        assert "significant digits" in question.split("\\begin{solution}")[0]


def test_variant_solution_opens_with_the_annotated_figure_and_one_table(family):
    fam, vs = family
    (answers,) = render_variants(fam, [vs[17]], answers=True).values()
    solution = solution_of(answers).lstrip()
    assert solution.startswith("\\begin{center}")
    figure_end = solution.index("\\end{tikzpicture}")
    assert "label={[text=green" in solution[:figure_end] and "label={[text=red" in solution[:figure_end]
    # forward values and deltas in one table with a header for every column
    assert "node & forward value & delta $dE/d(\\text{node})$ \\\\" in solution
    # long option explanations wrap instead of running past the frame
    assert "\\textbf{The options.}\n\\begin{itemize}\\raggedright\n" in solution
    question = render_variants(fam, [vs[17]])["variant-0018.tex"].split("\\begin{solution}")[0]
    assert "label={[text=green" not in question  # the question's figure gives nothing away


def test_the_answer_key_names_the_loss_and_has_a_header_per_column(family):
    fam, vs = family
    key = answer_key_tex(fam, vs)
    assert "half\\_sse" not in key and "half_sse" not in key
    assert key.count("half squared error") == 20
    assert "variant & question & value & option & sizes & hidden & output & loss \\\\" in key
    assert "\n18 & $\\frac{d E}{d w^{(2)}_{2,2}}$ & $0.01078$ & E & 2--3--2 & relu & sigmoid & half squared error \\\\" in key
    assert "\\renewcommand{\\arraystretch}{1.6}" in key


# -- through pdflatex ------------------------------------------------------------------------------

pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")


def overfull(tex_path):
    log = tex_path.with_suffix(".log").read_text(errors="replace")
    return [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide", log)]


def pages(tex_path):
    log = tex_path.with_suffix(".log").read_text(errors="replace")
    return int(re.search(r"Output written on .*?\((\d+) pages?", log, re.S).group(1))


@pdflatex
def test_sheets_compile_with_no_overfull_line(seed002, family, tmp_path):
    fam, vs = family
    documents = {
        "question.tex": seed002("w_5_7", answers=False),
        "answers.tex": seed002("w_5_7", answers=True),
        "parts.tex": seed002("w_5_7", "w_1_4", answers=False),
        "key.tex": answer_key_tex(fam, vs),
    }
    # all 20 variants of seed 7 (variants 2, 7, 18, 19 and 20 had explanations 18-104 pt too wide)
    documents["variants.tex"] = render_variants(fam, vs, combined=True)[f"{fam.name}.tex"]
    documents["variants-answers.tex"] = render_variants(fam, vs, combined=True, answers=True)[f"{fam.name}.tex"]
    for name, tex in documents.items():
        (tmp_path / name).write_text(tex)
        compile_pdf(tmp_path / name)
        assert max(overfull(tmp_path / name), default=0) <= 1, (name, overfull(tmp_path / name))
    assert pages(tmp_path / "question.tex") == 1  # the question and its lines on one page
    assert pages(tmp_path / "key.tex") == 1
    assert pages(tmp_path / "variants.tex") <= 2 * len(vs)
