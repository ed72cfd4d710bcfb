"""Worked solutions and exams: every template compiled by a real pdflatex, hostile text,
byte-identical output, atomic files, and the CLI verbs ``solve`` and ``exam``."""

import ast
import concurrent.futures
import operator
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from symprop import cli, output
from symprop.documents import solution
from symprop.documents.environment import environment
from symprop.documents.solution import render_exam, render_solution, solution_context
from symprop.output import LatexError, compile_pdf, write_atomic
from symprop.spec import load_spec, spec_from_text
from example_files import NETWORKS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = NETWORKS  # the [nodes] spec files among the examples
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")

# Seed 002's 7-neuron network, written here so the tests do not depend on examples/.
SEED002 = """
[network]
inputs = ["z_6", "z_7"]
targets = ["y_1", "y_2", "y_3"]
params = ["w_1_4", "w_1_5", "w_2_4", "w_2_5", "w_3_4", "w_3_5", "w_4_6", "w_4_7", "w_5_6", "w_5_7"]
functions = ["g"]
loss = "E"

[nodes]
z_1 = "g(w_1_4*z_4 + w_1_5*z_5)"
z_2 = "g(w_2_4*z_4 + w_2_5*z_5)"
z_3 = "g(w_3_4*z_4 + w_3_5*z_5)"
z_4 = "g(w_4_6*z_6 + w_4_7*z_7)"
z_5 = "g(w_5_6*z_6 + w_5_7*z_7)"
E = "softmax_cross_entropy([z_1, z_2, z_3], [y_1, y_2, y_3])"

[values]
z_6 = 0.5
z_7 = -1.0
y_1 = 0.0
y_2 = 1.0
y_3 = 0.0
w_1_4 = 0.1
w_1_5 = -0.2
w_2_4 = 0.3
w_2_5 = 0.4
w_3_4 = -0.5
w_3_5 = 0.2
w_4_6 = 0.6
w_4_7 = -0.3
w_5_6 = 0.25
w_5_7 = 0.7

[bind]
g = "tanh"
"""

HOSTILE = r"& % $ # _ { } ~ ^ \ \input{/etc/passwd}"
HOSTILE_SPEC = SEED002 + f"""
[display]
w_5_7 = '{HOSTILE} w'
z_5 = '\\input{{/etc/passwd}}'
"""


def seed002_spec():
    return spec_from_text(SEED002, "seed002.toml")


def examples():
    """(name, spec) for every example spec, or the built-in seed 002 when there are none."""
    found = [(p.stem, load_spec(p)) for p in EXAMPLES]
    return found or [("seed002", seed002_spec())]


def documents(spec, name):
    """Every template's output for one example: {file name: LaTeX}."""
    net = spec.network
    wrt = list(dict.fromkeys([net.params[0], net.params[-1]]))
    options = dict(values=spec.values, bind=spec.bind)
    fragments = {
        f"{name}-{m}-fragment.tex": render_solution(net, wrt, method=m, standalone=False, **options)
        for m in ("top-down", "bottom-up", "paths")
    }
    # a user's own document that \input's the fragments, with the packages they ask for
    needs = sorted({p for tex in fragments.values() for p in _needed_packages(tex)})
    host = "\\documentclass{article}\n" + "".join(f"\\usepackage{{{p}}}\n" for p in needs)
    host += "\\begin{document}\n" + "".join(f"\\input{{{f}}}\n" for f in fragments) + "\\end{document}\n"
    return {
        **fragments,
        f"{name}-host.tex": host,
        f"{name}-solution.tex": render_solution(net, wrt, method="bottom-up", title=f"Solution {name}", **options),
        f"{name}-exam.tex": render_exam(net, wrt, answers=True, **options),
    }


def _needed_packages(fragment):
    header = "".join(line for line in fragment.splitlines() if line.startswith("%"))
    return [p.strip() for group in re.findall(r"\\usepackage(?:\[[^\]]*\])?\{([^}]*)\}", header) for p in group.split(",")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Render every document, then compile the standalone ones, two at a time."""
    out = tmp_path_factory.mktemp("tex")
    texts = {}
    for name, spec in examples():
        texts.update(documents(spec, name))
    seed = seed002_spec()
    texts["questions.tex"] = render_exam(seed.network, "w_5_7", values=seed.values, bind=seed.bind, answers=False)
    hostile = spec_from_text(HOSTILE_SPEC, "hostile.toml")
    texts["hostile.tex"] = render_solution(
        hostile.network, "w_5_7", values=hostile.values, bind=hostile.bind, title=f"Title {HOSTILE} end"
    )
    for file, tex in texts.items():
        write_atomic(out / file, tex)
    results = {}
    if shutil.which("pdflatex"):
        standalone = [out / f for f in texts if not f.endswith("-fragment.tex")]
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {pool.submit(_compile, path): path.name for path in standalone}
            for future, file in futures.items():
                results[file] = future.result()
    return out, texts, results


def _compile(path):
    try:
        return compile_pdf(path)
    except LatexError as err:
        return err


# -- compiling --------------------------------------------------------------------------

@needs_tex
def test_every_template_compiles_for_every_example(built):
    out, texts, results = built
    failed = {f: str(r) for f, r in results.items() if isinstance(r, LatexError)}
    assert not failed, failed
    names = {n for n, _ in examples()}
    for name in names:
        for kind in ("host", "solution", "exam"):
            assert (out / f"{name}-{kind}.pdf").stat().st_size > 1000


@needs_tex
def test_long_equations_stay_on_the_page(built):
    out, texts, results = built
    for file, pdf in results.items():
        if file == "hostile.tex":
            continue  # its names are deliberately long, unbreakable text
        log = pdf.with_suffix(".log").read_text(errors="replace")
        widths = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide", log)]
        assert max(widths, default=0) < 5, (file, widths)


@needs_tex
@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm is not installed")
def test_a_rendered_page_is_not_blank(built, tmp_path):
    out, texts, results = built
    pdf = results[f"{examples()[0][0]}-solution.tex"]
    subprocess.run(["pdftoppm", "-gray", "-r", "30", "-f", "1", "-l", "1", "-singlefile", pdf, tmp_path / "page"], check=True)
    data = (tmp_path / "page.pgm").read_bytes()
    magic, width, height, depth, pixels = re.match(rb"(P5)\s+(\d+)\s+(\d+)\s+(\d+)\s(.*)", data, re.S).groups()
    assert len(pixels) == int(width) * int(height) > 10_000
    ink = sum(1 for p in pixels if p < 200) / len(pixels)
    assert 0.01 < ink < 0.5, ink  # text and a figure (about 5%), not an empty or black page


@needs_tex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext is not installed")
def test_hostile_title_and_names_print_literally(built):
    out, texts, results = built
    tex = texts["hostile.tex"]
    assert r"\input{" not in tex  # only ever as \textbackslash{}input\{...\}
    shown = subprocess.run(["pdftotext", results["hostile.tex"], "-"], capture_output=True, text=True, check=True).stdout
    assert f"Title {HOSTILE} end" in shown
    assert f"{HOSTILE} w" in shown
    assert "\\input{/etc/passwd}" in shown
    assert "root:" not in shown  # the file was never read


@needs_tex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext is not installed")
def test_printanswers_toggles_the_answer_sheet(built):
    out, texts, results = built
    name = examples()[0][0]
    assert "\n\\printanswers\n" in texts[f"{name}-exam.tex"]
    assert "\n% \\printanswers" in texts["questions.tex"] and "\n\\printanswers" not in texts["questions.tex"]
    answers = subprocess.run(["pdftotext", results[f"{name}-exam.tex"], "-"], capture_output=True, text=True).stdout
    questions = subprocess.run(["pdftotext", results["questions.tex"], "-"], capture_output=True, text=True).stdout
    assert "Compute" in questions and "Compute" in answers
    assert "Start at the weight." in answers and "Start at the weight." not in questions


@pytest.mark.parametrize("wrt", [["w_2_5"], ["w_2_5", "w_5_7"]], ids=["one weight", "parts"])
def test_the_question_figure_gives_no_numbers_away(wrt):
    spec = seed002_spec()
    net = spec.network
    tex = render_exam(net, [net.symbol(w) for w in wrt], values=spec.values, bind=spec.bind, answers=True)
    question, solution = tex.split(r"\begin{solution}", 1)
    assert r"\begin{tikzpicture}" in question
    assert "label={[text=red" not in question and "label={[text=green" not in question  # no deltas, no values
    assert "label={[text=red" in solution and "label={[text=green" in solution  # the solution shows both


def test_compile_failure_says_where_the_log_is(tmp_path, monkeypatch):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    broken = write_atomic(tmp_path / "broken.tex", "\\documentclass{article}\\begin{document}\\nosuchcommand\\end{document}\n")
    with pytest.raises(LatexError, match=r"Undefined control sequence.*the log is .*broken\.log"):
        compile_pdf(broken)
    with pytest.raises(LatexError, match=r"Undefined control sequence.*the log is .*broken\.log"):
        compile_pdf(broken)
    monkeypatch.setattr(output.shutil, "which", lambda cmd: None)
    with pytest.raises(LatexError, match="install TeX Live"):
        compile_pdf(broken)


# -- what the documents say -------------------------------------------------------------

def test_top_down_and_bottom_up_read_differently():
    spec = seed002_spec()
    top = render_solution(spec.network, "w_5_7", method="top-down")
    bottom = render_solution(spec.network, "w_5_7", method="bottom-up")
    # top-down: deltas from E downward, reused; the weight comes last
    assert top.index(r"The deltas of $z_{1}$, $z_{2}$ and $z_{3}$") < top.index(r"The delta of $z_{5}$") < top.index("Finish at the bottom")
    assert "computed above and are reused" in top and "Start at the weight" not in top
    # bottom-up: start at the weight and walk up to the loss
    assert bottom.index("Start at the weight") < bottom.index(r"Walk up from $z_{5}$") < bottom.index(r"The deltas of $z_{1}$")
    assert "Finish at the bottom" not in bottom
    for tex in (top, bottom):
        assert "There are 3 paths from $w_{5,7}$ to $E$" in tex
        assert (
            r"\frac{d E}{d w_{5,7}} &= \frac{\partial E}{\partial z_{1}} \frac{\partial z_{1}}{\partial z_{5}} "
            r"\frac{\partial z_{5}}{\partial w_{5,7}}" in tex
        )
        assert r"\frac{\partial z_{5}}{\partial w_{5,7}} &= g'\left(w_{5,6} z_{6} + w_{5,7} z_{7}\right) z_{7}" in tex


def test_each_step_is_justified_in_words():
    spec = seed002_spec()
    ctx = solution_context(spec.network, "w_5_7", method="bottom-up")
    blocks = ctx["derivations"][0]["blocks"]
    # the three output deltas are one block: the same rule, said once
    assert [b["title"] for b in blocks] == ["Start at the weight.", r"Walk up from $z_{5}$.",
                                            r"The deltas of $z_{1}$, $z_{2}$ and $z_{3}$."]
    assert [len(b["rows"]) for b in blocks] == [2, 4, 3]
    tex = render_solution(spec.network, "w_5_7", method="bottom-up")
    assert "the activation's derivative $g'$" in tex and "predicted probability minus the target" in tex
    assert "the derivative rule of" not in tex  # every rule used has its own sentence
    # each rule is stated once in a document
    assert tex.count("the activation's derivative $g'$") == 1


def test_fragment_has_no_preamble_and_lists_its_packages():
    spec = seed002_spec()
    tex = render_solution(spec.network, "w_5_7", standalone=False)
    assert "\\documentclass" not in tex and "\\begin{document}" not in tex
    assert {"amsmath", "tikz", "booktabs", "lmodern"} <= set(_needed_packages(tex))


def test_long_sums_break_between_terms_only():
    spec = seed002_spec()
    tex = render_solution(spec.network, "w_5_7", method="paths")
    block = tex[tex.index("With every local partial derivative written out"):]
    block = block[: block.index(r"\end{align*}")]
    lines = block.split(r"\\")
    assert len(lines) == 3 and all(line.lstrip(" *&\\quad").startswith("+") for line in lines[1:])  # a term a line
    assert r"\cdot" not in block.split("&")[0]  # no line starts inside a product


def test_templates_receive_plain_data_only():
    spec = seed002_spec()
    for method in ("top-down", "bottom-up", "paths"):
        ctx = solution_context(spec.network, None, method=method, values=spec.values, bind=spec.bind, title="t")
        stack = [ctx]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                assert all(isinstance(k, str) for k in item)
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            else:
                assert item is None or type(item) in (str, int, float, bool), type(item)


def test_templates_are_found_and_use_latex_safe_delimiters():
    env = environment()
    assert {"solution.tex.j2", "exam.tex.j2", "macros.tex.j2", "preamble.tex.j2"} <= set(env.list_templates())
    assert env.from_string(r"\VAR{x|latex_escape} 100% {{ x }} {% x %}").render(x="_") == r"\_ 100% {{ x }} {% x %}"
    with pytest.raises(Exception, match="undefined"):
        env.from_string(r"\VAR{missing}").render()


def test_numbers_agree_with_sympy_diff():
    pytest.importorskip("symprop.numeric")
    from dags import reference_gradient  # binds g to tanh, as the spec does

    spec = seed002_spec()
    net = spec.network
    w = net.symbol("w_5_7")
    tex = render_solution(net, w, method="bottom-up", values=spec.values, bind=spec.bind)
    boxed = float(re.search(r"\\boxed\{([^}]*)\}", tex).group(1))
    point = {s: sp.Rational(str(v)) for s, v in spec.values.items()}
    assert boxed == pytest.approx(reference_gradient(net, w, point), rel=1e-3)
    assert "numbers left out" not in tex


def _arithmetic(tex):
    """The value of printed arithmetic (numbers, +, -, \\cdot, parentheses, squares), or
    None when it still holds a symbol or a function call. Walks Python's syntax tree of
    our own output; nothing is executed."""
    text = tex.replace(r"\left(", "(").replace(r"\right)", ")").replace(r"\cdot", "*").replace("^{2}", "**2")
    text = text.replace(r"\boxed{", "(").replace("}", ")")
    if re.search(r"[A-Za-z\\{]", text):
        return None
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow}

    def value(node):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        return ops[type(node.op)](value(node.left), value(node.right))

    return value(ast.parse(text, mode="eval").body)


def test_every_printed_stage_has_the_value_of_its_row():
    """Each part of each row that is plain arithmetic (numbers substituted, the activation's
    rule 1 - z^2 worked, function values) equals the row's value: 1-2 units in the 4th digit,
    as each printed number is rounded."""
    pytest.importorskip("symprop.numeric")
    spec = seed002_spec()
    checked = 0
    for method in ("top-down", "bottom-up", "paths"):
        ctx = solution_context(spec.network, "w_5_7", method=method, values=spec.values, bind=spec.bind)
        d = ctx["derivations"][0]
        rows = [r for b in d["blocks"] for r in b["rows"]] + d["numbers"]
        for row in rows:
            parts = " ".join(row["lines"]).replace(r"\quad", "").split(" = ")
            final = _arithmetic(parts[-1])
            if final is None:
                continue
            for part in parts[:-1]:
                v = _arithmetic(part)
                if v is not None:
                    assert v == pytest.approx(final, rel=3e-3, abs=2e-4), (row["lhs"], part, parts[-1])
                    checked += 1
    assert checked >= 30
    # the activation's derivative at z_1 goes through its rule: tanh' = 1 - z_1^2 = 0.9756
    tex = render_solution(spec.network, "w_5_7", method="top-down", values=spec.values, bind=spec.bind)
    assert r"g'\left(0.1575\right) \cdot \left(-0.2\right) = \left(1 - 0.1562^{2}\right) \cdot \left(-0.2\right)" in tex
    assert r"0.9756 \cdot \left(-0.2\right)" in tex
    assert r"g'\left(u\right) = 1 - \tanh^{2}{\left(u \right)} = 1 - z^{2}" in tex


# -- files and determinism ----------------------------------------------------------------

def test_same_input_gives_byte_identical_tex(tmp_path):
    """Two separate processes (different hash seeds) write the same bytes; one compiles."""
    spec = tmp_path / "seed002.toml"
    spec.write_text(SEED002)
    outputs = []
    for seed, extra in (("1", ["--pdf"] if shutil.which("pdflatex") else []), ("2", [])):
        out = tmp_path / f"run{seed}.tex"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        cmd = [sys.executable, "-m", "symprop.cli", "solve", str(spec), "--wrt", "w_5_7", "--wrt", "w_2_5", "-o", str(out), *extra]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    if shutil.which("pdflatex"):
        assert (tmp_path / "run1.pdf").stat().st_size > 1000


def test_a_failure_mid_render_leaves_no_file(tmp_path):
    target = tmp_path / "solution.tex"
    template = environment().get_template("solution.tex.j2")
    spec = seed002_spec()
    context = solution_context(spec.network, "w_5_7")
    del context["table"]  # the template fails when it gets there, after writing a lot
    with pytest.raises(Exception, match="table"):
        write_atomic(target, template.generate(context))
    assert list(tmp_path.iterdir()) == []
    # an existing file keeps its old content when the new one fails
    target.write_text("old")
    with pytest.raises(Exception, match="table"):
        write_atomic(target, template.generate(context))
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_a_failure_at_replace_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "exam.tex"

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(output.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "x" * 100_000)
    assert list(tmp_path.iterdir()) == []


# -- the CLI ----------------------------------------------------------------------------

def test_cli_solve_prints_latex_without_output_file(tmp_path, capsys):
    spec = tmp_path / "seed002.toml"
    spec.write_text(SEED002)
    assert cli.main(["solve", str(spec), "--wrt", "w_5_7", "--method", "paths", "--fragment"]) == 0
    tex = capsys.readouterr().out
    assert tex.startswith("% A worked solution written by symprop") and r"\frac{d E}{d w_{5,7}}" in tex
    assert cli.main(["exam", str(spec), "--wrt", "w_2_5", "--answers"]) == 0
    assert "\\documentclass[11pt,a4paper]{exam}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["exam", "{spec}", "--pdf"], "--pdf needs -o FILE.tex"),
    (["solve", "{spec}", "--fragment", "--pdf", "-o", "{dir}/x.tex"], "--pdf needs a standalone document"),
    (["solve", "{spec}", "-o", "{dir}/missing/x.tex"], "cannot write"),
    (["solve", "{spec}", "--wrt", "w_9_9"], "--wrt w_9_9: no such parameter"),
    (["solve", "{dir}/nope.toml"], "nope.toml: no such file"),
])
def test_cli_usage_errors_are_one_line(tmp_path, capsys, argv, message):
    spec = tmp_path / "seed002.toml"
    spec.write_text(SEED002)
    argv = [a.format(spec=spec, dir=tmp_path) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_pdf_failure_exits_1_and_names_the_log(tmp_path, capsys, monkeypatch):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    spec = tmp_path / "seed002.toml"
    spec.write_text(SEED002)
    monkeypatch.setattr(solution, "render_solution", lambda *a, **k: "\\documentclass{article}\\begin{document}\\oops\\end{document}\n")
    assert cli.main(["solve", str(spec), "-o", str(tmp_path / "s.tex"), "--pdf"]) == 1
    err = capsys.readouterr().err
    assert "pdflatex failed" in err and f"the log is {tmp_path / 's.log'}" in err
