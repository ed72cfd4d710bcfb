"""The worked solution as an instructor hands it out (issue 12): the batch gradient boxed,
each delta once, the activation's derivative worked through its rule, sums in the order the
texts write them, and the page counts the seeds' half-page examples call for."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from symprop.cli import main
from symprop.documents.solution import render_solution, solution_context
from symprop.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")


def _spec(name):
    return load_spec(EXAMPLES / name)


def _grad(name, capsys):
    assert main(["grad", str(EXAMPLES / name), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_batch_solution_boxes_the_batch_gradient_that_grad_prints(capsys):
    spec = _spec("seed003_layered.toml")
    tex = render_solution(spec.network, "w_1_1_1", values=spec.values, bind=spec.bind)
    grad = _grad("seed003_layered.toml", capsys)
    boxed = re.findall(r"\\boxed\{([^}]*)\}", tex)
    assert boxed == [f"{grad['gradient']['w_1_1_1']:.4g}"] == ["0.007092"]
    # one sample's chain, then the batch formula with every sample's value
    assert r"c &= \sum_{m=1}^{3} c^{(m)} = 0.03091 + 0.2815 + 0.03165 = 0.3441" in tex
    assert (r"\frac{d c}{d W^{1}_{1,1}} &= \sum_{m=1}^{3} \frac{d c^{(m)}}{d W^{1}_{1,1}} "
            r"= -0.0002242 + 0.004086 + 0.00323 = \boxed{0.007092}") in tex
    assert f"{grad['loss']:.4g}" == "0.3441"


def test_a_mean_batch_divides_by_its_size():
    spec = _spec("seed003_layered.toml")
    spec.network.reduction = "mean"
    tex = render_solution(spec.network, "w_1_1_1", values=spec.values, bind=spec.bind)
    assert r"\frac{1}{3} \sum_{m=1}^{3} \frac{d c^{(m)}}{d W^{1}_{1,1}}" in tex
    assert r"\boxed{0.002364}" in tex  # 0.007092 / 3


def test_sums_print_weight_before_input_and_bias_last():
    spec = _spec("seed003_layered.toml")
    tex = render_solution(spec.network, "w_1_1_1")
    assert r"z^{1}_{1} &= W^{1}_{1,1} x_{1} + W^{1}_{1,2} x_{2} + b^{1}_{1}" in tex
    assert r"W^{2}_{1,1} a^{1}_{1} + W^{2}_{1,2} a^{1}_{2} + b^{2}_{1}" in tex


def test_every_weight_comes_from_one_pass_each_delta_once():
    spec = _spec("seed002_seven_neurons.toml")
    tex = render_solution(spec.network, None, values=spec.values, bind=spec.bind)
    for node in ("z_{4}", "z_{5}"):
        assert tex.count(rf"\textbf{{The delta of ${node}$.}}") == 1
    assert tex.count(r"The deltas of $z_{1}$, $z_{2}$ and $z_{3}$.") == 1
    assert tex.count(r"\boxed{") == 10  # one line per weight
    assert r"\frac{d E}{d w_{5,7}} &= \frac{d E}{d z_{5}} \frac{\partial z_{5}}{\partial w_{5,7}}" in tex
    assert "0.9756" in tex
    ctx = solution_context(spec.network, None, values=spec.values, bind=spec.bind)
    assert ctx["derivations"] == [] and len(ctx["one_pass"]["weights"]) == 10


def _pages(pdf):
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"Pages:\s+(\d+)", info).group(1))


@needs_tex
@pytest.mark.parametrize("argv, most", [
    (["--wrt", "w_5_7", "--method", "top-down"], 2),
    (["--wrt", "w_5_7", "--method", "bottom-up"], 2),
    (["--wrt", "w_5_7", "--method", "paths"], 2),
    ([], 5),
])
def test_seed002_solutions_are_short(argv, most, tmp_path, capsys):
    out = tmp_path / "s.tex"
    assert main(["solve", str(EXAMPLES / "seed002_seven_neurons.toml"), *argv, "-o", str(out), "--pdf"]) == 0
    capsys.readouterr()
    assert _pages(out.with_suffix(".pdf")) <= most
    log = out.with_suffix(".log").read_text(errors="replace")
    widths = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide", log)]
    assert max(widths, default=0) <= 1, widths
    assert "0.9756" in out.read_text()
