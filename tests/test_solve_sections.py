"""`solve --update --lr ETA` and `solve --check` (issue 14, items 5 and 7): seed 004's update
rule w ← w − (η/M) Σ_m ∂𝓛(m)/∂w written as a formula, then with numbers for the weight asked;
the forward difference (E(w + ε) − E(w))/ε and the central one against backprop, with the
pass counts P + 1 and 2P against one forward and one backward pass.

The numbers must be the ones `symprop step` and `symprop check` print (reused, not
recomputed another way); the formulas are checked as text, the documents with pdflatex.
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from symprop import numeric
from symprop.cli import main
from symprop.documents.solution import render_solution
from symprop.printing import latex_number
from symprop.spec import load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED003 = EXAMPLES / "seed003_layered.toml"
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")


def run(capsys, *argv):
    status = main([str(x) for x in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture()
def seed003():
    return load_spec(SEED003)


# -- the update step ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_update_writes_the_batch_rule_then_the_numbers_of_step(seed003, reduction, capsys):
    net = seed003.network
    net.reduction = reduction
    tex = render_solution(net, "w_2_1_1", values=seed003.values, update=0.5)
    scale = r"\frac{\eta}{M}" if reduction == "mean" else r"\eta"
    assert (rf"w \leftarrow w - {scale} \sum_{{m=1}}^{{M}} \frac{{d c^{{(m)}}}}{{d w}} = w - \eta \frac{{d c}}{{d w}}"
            in tex)
    taken = numeric.step(net, seed003.values, lr=0.5)
    w = net.symbol("w_2_1_1")
    g = latex_number(taken.gradient[w])
    assert rf"W^{{2}}_{{1,1}} &\leftarrow 0.4 - 0.5 \cdot {g} = \boxed{{{latex_number(taken.params[w])}}}" in tex
    assert taken.params[w] == pytest.approx(0.4 - 0.5 * taken.gradient[w], rel=1e-15)
    assert (f"from $c = {latex_number(taken.loss_before)}$ to ${latex_number(taken.loss_after)}$" in tex)
    assert r"\subsection*{One step of gradient descent}" in tex


def test_one_sample_has_the_plain_rule(capsys):
    status, out, _ = run(capsys, "solve", EXAMPLES / "seed002_seven_neurons.toml", "--wrt", "w_5_7",
                         "--update", "--lr", "0.1")
    assert status == 0
    assert r"w \leftarrow w - \eta \frac{d E}{d w}" in out and r"\sum_{m=1}" not in out.split("One step of")[1]
    status, step_out, _ = run(capsys, "step", EXAMPLES / "seed002_seven_neurons.toml", "--lr", "0.1",
                              "--format", "json")
    new = json.loads(step_out)["params"]["w_5_7"]
    assert rf"\boxed{{{latex_number(new)}}}" in out.split("One step of")[1]


def test_without_the_flags_there_are_no_new_sections(seed003):
    tex = render_solution(seed003.network, "w_2_1_1", values=seed003.values)
    assert "One step of" not in tex and "finite differences" not in tex


# -- the finite-difference check ----------------------------------------------------------------

def test_check_shows_the_numbers_of_symprop_check(seed003, capsys):
    tex = render_solution(seed003.network, "w_2_1_1", values=seed003.values, check=True)
    section = tex.split(r"\subsection*{Checking the gradient with finite differences}")[1]
    for how in ("forward", "central"):
        status, out, _ = run(capsys, "check", SEED003, "--difference", how, "--format", "json")
        assert status == 0
        row = json.loads(out)["parameters"]["w_2_1_1"]
        assert f"= {latex_number(row['numeric'])}\n" in section or f"= {latex_number(row['numeric'])}\\" in section
        assert f"${latex_number(row['relative_error'], 2)}$ ({how}, {row['verdict']})" in section
    assert (r"\frac{d c}{d W^{2}_{1,1}} \approx \frac{c(W^{2}_{1,1} + h) - c(W^{2}_{1,1})}{h} &= "
            r"\frac{0.3441077152 - 0.3441074396}{1 \times 10^{-5}} = 0.02756") in section
    assert (r"\frac{c(W^{2}_{1,1} + h) - c(W^{2}_{1,1} - h)}{2h} &= "
            r"\frac{0.3441077152 - 0.3441071639}{2 \times 10^{-5}} = 0.02756") in section
    # the losses shown differ by h (2h) times the gradient, as they must: read back from the document
    shown = re.findall(r"\\frac\{([\d.]+) - ([\d.]+)\}\{(\d) \\times 10\^\{-5\}\}", section)
    assert len(shown) == 2
    grad = numeric.gradient(seed003.network, seed003.values).gradient[seed003.network.symbol("w_2_1_1")]
    for a, b, twice in shown:
        assert (float(a) - float(b)) / (int(twice) * 1e-5) == pytest.approx(grad, rel=1e-3)  # 10 digits shown
    # P = 9 parameters: 10 forward passes (forward), 18 (central), against 1 forward + 1 backward
    assert "$P = 9$ parameters" in section and "$P + 1 = 10$ forward passes (forward) or $2P = 18$ (central)" in section
    assert "one forward and one backward pass" in section


def test_check_lists_every_parameter_asked_and_takes_epsilon(seed003, capsys):
    status, out, _ = run(capsys, "solve", SEED003, "--wrt", "w_1_1_1", "--wrt", "b_2_1", "--check",
                         "--epsilon", "1e-4")
    assert status == 0
    section = out.split("finite differences}")[1]
    assert r"$\varepsilon = 0.0001$" in section
    status, check_out, _ = run(capsys, "check", SEED003, "--only", "b_2_1", "--difference", "central",
                               "--epsilon", "1e-4", "--format", "json")
    central = json.loads(check_out)["parameters"]["b_2_1"]["numeric"]
    row = next(line for line in section.splitlines() if line.startswith("$b^{2}_{1}$"))
    assert row.split(" & ")[4] == f"${latex_number(central)}$"


@pytest.mark.parametrize("argv, message", [
    (["--update"], "--update needs --lr ETA"),
    (["--update", "--lr", "0"], "--update needs --lr ETA"),
    (["--lr", "0.1"], "--lr is the learning rate of --update"),
    (["--check", "--epsilon", "2"], "--epsilon 2: the finite-difference step must be between 0 and 1"),
    (["--epsilon", "0.001"], "--epsilon is the step of --check"),
])
def test_bad_flags_are_one_line_and_exit_2(capsys, argv, message):
    status, out, err = run(capsys, "solve", SEED003, *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_spec_without_values_or_a_layers_spec_is_refused(tmp_path, capsys):
    bare = tmp_path / "bare.toml"
    bare.write_text(SEED003.read_text(encoding="utf-8").split("[values]")[0], encoding="utf-8")
    status, _, err = run(capsys, "solve", bare, "--check")
    assert status == 2 and "bare.toml: --check needs numbers" in err and err.count("\n") == 1
    status, _, err = run(capsys, "solve", EXAMPLES / "mnist_layers.toml", "--update", "--lr", "0.1")
    assert status == 2 and "--update works on a network spec with [nodes]" in err


def test_a_node_asked_for_has_no_update_but_a_note(capsys):
    status, out, _ = run(capsys, "solve", EXAMPLES / "seed002_gradient_flow.toml", "--wrt", "z_4",
                         "--update", "--lr", "0.1")
    assert status == 0
    assert "One step of" not in out and "the update step left out: it is about parameters" in out


@needs_tex
def test_the_sections_compile_without_overfull_boxes(tmp_path, capsys):
    out = tmp_path / "sections.tex"
    status, _, err = run(capsys, "solve", SEED003, "--update", "--lr", "0.5", "--check", "-o", out, "--pdf")
    assert status == 0, err
    log = out.with_suffix(".log").read_text(encoding="utf-8", errors="replace")
    overfull = [float(m) for m in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]
    assert all(pt <= 1.0 for pt in overfull), overfull
    assert out.with_suffix(".pdf").stat().st_size > 0
