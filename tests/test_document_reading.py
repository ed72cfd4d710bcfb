"""What an instructor's reading of today's documents fixed, held in place: each test renders a
bundled example the way the README shows it and checks the sentence or layout that was wrong
(a vector x = (x), a repeated definition, "layers none", "layers 3, 6 are checkpoints", a tag
pushed between the terms of a broken sum, a factor (1/2) of its own, a reference to a seed
number, a sentence opening with a numeral). The compiled ones are checked for overfull boxes."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symprop.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")


def _solve(tmp_path, capsys, *argv, name="doc.tex", verb="solve", pdf=False):
    out = tmp_path / name
    args = [verb, *argv, "-o", str(out)] + (["--pdf"] if pdf else [])
    assert main(args) == 0, capsys.readouterr().err
    if pdf:
        log = out.with_suffix(".log").read_text(errors="replace")
        assert re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log) == []
    return out.read_text()


def test_the_jacobian_names_a_scalar_input_once_and_defines_a_jacobian_once(tmp_path, capsys):
    body = _solve(tmp_path, capsys, str(EXAMPLES / "seed000_jacobian.toml"))
    assert r"$x = \left(x\right)$" not in body and "chain of vectors\n$x$, " in body
    assert body.count("one row per") == 1  # the shape is said once, for the whole Jacobian
    assert body.count("Each entry is a local partial") == 1  # the second factor says it briefly
    assert r"Again local partials, of the entries of $\mathbf{f}$ with respect to those of $x$" in body


@needs_tex
@pytest.mark.parametrize("k, checkpoints, first_step, twice", [
    ("3", "layers 3 and 6 are the checkpoints", "backward steps of layers $9, 8, 7$ need layers $6, 7, 8$",
     "layers 1, 2, 4 and 5 are evaluated twice: $4$ extra layer evaluations"),
    ("1", "layers 1--8 are the checkpoints", "backward step of layer $9$ needs layer $8$", "No layer is evaluated twice."),
    ("8", "layer 8 is the checkpoint", "backward step of layer $9$ needs layer $8$",
     "layers 1--7 are evaluated twice: $7$ extra layer evaluations"),
])
def test_the_checkpoint_prose_is_grammatical_for_every_count(tmp_path, capsys, k, checkpoints, first_step, twice):
    body = _solve(tmp_path, capsys, str(EXAMPLES / "deep_layers.toml"), "--checkpoints", k, pdf=True)
    assert checkpoints in body and first_step in body and twice in body
    assert "layers none" not in body
    assert ("\\dots" in body) == (k == "8")  # a segment of three layers or fewer is listed in full
    assert "\n\\needspace{" in body.split("For this network, every $K$")[0][-40:]  # the lead stays with its table


@needs_tex
def test_a_broken_r_step_keeps_its_tag_on_its_first_line(tmp_path, capsys):
    body = _solve(tmp_path, capsys, str(EXAMPLES / "generic_layers.toml"), "--v", "random", "--seed", "1",
                  "--format", "latex", verb="hvp", pdf=True)
    # R{delta^(1)} is a two-term sum whose first term is too wide to share its line with the tag:
    # the tag comes right after "=", both terms below it
    row = re.search(r"\\mathcal\{R\}\\\{\\boldsymbol\{\\delta\}\^\{\(1\)\}\\\} &= (.*)\n(.*)\n(.*)\n", body)
    assert row and row.group(1).startswith(r" \tag*{") and "delta recursion" in row.group(1)
    assert row.group(2).startswith(r"  \\ &\quad \left(\mathbf{a}^{(1)}") and row.group(2).endswith(" +")
    assert row.group(3).startswith(r"  \\ &\quad \left(\mathbf{a}^{(1)}")


def test_the_hvp_solution_writes_the_half_as_sympy_does_and_cites_no_seed(tmp_path, capsys):
    body = _solve(tmp_path, capsys, str(EXAMPLES / "hvp_small.toml"), "--hvp")
    assert r"E &= \frac{\left(t_{1} - o_{1}\right)^{2}}{2} &&= 0.0867" in body
    assert r"\left(\frac{1}{2}\right)" not in body and "seed 0" not in body


def test_dead_units_get_exactly_zero(tmp_path, capsys):
    body = _solve(tmp_path, capsys, str(EXAMPLES / "seed002_seven_neurons.toml"), "--bind", "g=relu", "--wrt", "w_5_7")
    assert "are dead: the derivative of the activation is $0$ at their input $u$" in body
    assert "get a gradient of $0$," in body  # relu's dead units: exactly 0, not "(nearly) 0"


@needs_tex
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext is not installed")
def test_the_activation_plot_opens_with_words(tmp_path, capsys):
    out = tmp_path / "r.pdf"
    assert main(["flow", str(EXAMPLES / "seed002_seven_neurons.toml"), "--bind", "g=relu", "--plot", str(out)]) == 0
    words = " ".join(subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True).stdout.split())
    assert "its derivative In the network, 5 units apply relu; each is marked at its input u" in words


def test_the_batch_sections_say_what_the_steps_are_for(tmp_path, capsys):
    body = _solve(tmp_path, capsys, str(EXAMPLES / "seed003_layered.toml"), "--wrt", "w_2_1_1")
    assert "The steps above are for the first sample; the others go the same way." in body
    body = _solve(tmp_path, capsys, str(EXAMPLES / "generic_layers.toml"), name="g.tex")
    assert "\\]\nThe forward pass and the backward steps for the whole batch at once:\n\\begin{align*}" in body


def test_the_jacobian_says_what_is_carried_in_one_parenthesis(tmp_path, capsys):
    spec = tmp_path / "skip.toml"
    spec.write_text('[network]\ninputs = ["x_1", "x_2"]\noutputs = ["g_1", "g_2"]\n[nodes]\nf_1 = "x_1*x_2"\n'
                    'f_2 = "sigmoid(f_1)"\ng_1 = "f_2 + x_1"\ng_2 = "f_2*f_1"\n')
    body = _solve(tmp_path, capsys, str(spec))
    assert ("each computed from the one before it (carried over unchanged, as identity rows: $x_{1}$ in "
            r"$\mathbf{s}^{(1)}$; $x_{1}$ and $f_{1}$ in $\mathbf{s}^{(2)}$)." in body)
