"""README's "From the course texts" table (issue 14): every row's command runs as written and
gives what the row says the text teaches. Each command has its check below, keyed by the
command; a row added to the table without a check here, or a check whose row is gone, fails."""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

from symprop.cli import main

ROOT = Path(__file__).resolve().parent.parent


def table_commands() -> list[str]:
    """The commands of README's table, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## From the course texts\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| text")]
    return [re.search(r"`(symprop [^`]+)`\s*\|\s*$", row).group(1) for row in rows if not row.startswith("| ---")]


def run(capsys, command: str, monkeypatch, tmp_path) -> str:
    """Run one table command in a scratch folder that sees the bundled examples; its stdout."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)
    assert argv[0] == "symprop"
    status = main(argv[1:])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def json_of(capsys, *argv) -> dict:
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# -- one check a row: (out, capsys, tmp_path) ---------------------------------------------------

def jacobian_chain(out, capsys, tmp_path):
    # f(x) = (x², σ(x)), g(f) = (f_1 f_2, f_1 + tanh f_2): seed 000's product of Jacobians
    assert "dg/dx = ∂g/∂f·∂f/∂x    [chain rule: the product of the layers' Jacobians]" in out
    assert "= 2*x*σ(x) + x**2*σ(x)*(1 - σ(x))    [substitute the node definitions]" in out
    assert "= 2*x + (1 - tanh(σ(x))**2)*σ(x)*(1 - σ(x))    [substitute the node definitions]" in out


def jacobian_numbers(out, capsys, tmp_path):
    x = 0.5
    s = sigmoid(x)
    expected = [2 * x * s + x * x * s * (1 - s), 2 * x + (1 - math.tanh(s) ** 2) * s * (1 - s)]
    rows = dict(re.findall(r"^(g_[12])\s+(-?[\d.]+)\s*$", out, re.M))
    assert [float(rows["g_1"]), float(rows["g_2"])] == pytest.approx(expected, rel=1e-5)


def gate_table(out, capsys, tmp_path):
    assert "  ∂a^1/∂z^1 = Diag(f'(z^1))    [elementwise f: f]" in out
    assert "  δ^1 = Diag(f'(z^1)) (W^2)^T δ^2    [substitute]" in out
    assert "dE/dW^1 = δ^1 x^T" in out.replace("∂", "d")


def softmax_collapse(out, capsys, tmp_path):
    lines = out.splitlines()
    last = lines.index("  dL/da_1 = y_1 - t_1    [targets sum to 1: Σ_k t_k = 1 (one-hot labels or probabilities)]")
    assert lines[last - 1].startswith("  dL/da_1 = y_1*(t_1 + t_2 + t_3) - t_1    [cancel and collect")


def dead_relus(out, capsys, tmp_path):
    assert "dead relu units: z_5, z_3  (u <= 0 in every sample)" in out
    assert "- f′ = 0 at the node (a dead relu: u <= 0 in every sample)" in out
    pdf = tmp_path / "relu.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert "dead" in text and "relu" in text


def matrix_exam(out, capsys, tmp_path):
    assert "\n\\printanswers\n" in out and r"\question[10]" in out
    expected = json_of(capsys, "grad", str(ROOT / "examples" / "generic_layers.toml"))["gradient"]
    # the printed dE/dW^2 (its last matrix) is grad's to the 4 digits the sheet prints
    line = out[out.index(r"\frac{\partial \mathcal{L}}{\partial \mathbf{W}^{(2)}} &="):]
    last = re.findall(r"\\begin\{numbers\}(.*?)\\end\{numbers\}", line[:line.index(r"\\[1ex]")])[-1]
    printed = [[float(x) for x in row.split("&")] for row in last.split(r"\\")]
    assert np.allclose(printed, expected["W^2"], rtol=6e-4)


def forward_differences(out, capsys, tmp_path):
    assert "cost: P + 1 = 9 forward passes for P = 8 parameters; backprop: 1 forward + 1 backward pass" in out
    assert out.rstrip().splitlines()[-2] == "passed"


def top_down_w25(out, capsys, tmp_path):
    assert out.startswith("dE/dw_2_5  (top-down, 1 path)")
    assert "  dE/dw_2_5 = (softmax_2(z_1, z_2, z_3) - y_2)*g'(w_2_4*z_4 + w_2_5*z_5)*z_5    [substitute]" in out


def bottom_up_w57(out, capsys, tmp_path):
    # the notes' final result, term for term: a sum over z_1, z_2, z_3
    assert out.startswith("dE/dw_5_7  (bottom-up, 3 paths)")
    assert ("  dE/dw_5_7 = ∂E/∂z_1*∂z_1/∂z_5*∂z_5/∂w_5_7 + ∂E/∂z_2*∂z_2/∂z_5*∂z_5/∂w_5_7 + "
            "∂E/∂z_3*∂z_3/∂z_5*∂z_5/∂w_5_7    [substitute]") in out


def one_pass(out, capsys, tmp_path):
    assert r"\subsection*{Every gradient, top-down}" in out
    assert "each delta $\\frac{d E}{d z_k}$ computed once" in out
    # dE/dz_5 feeds four weights (w_5_6, w_5_7 and, through z_5, nothing else) and is derived once
    assert out.count(r"\frac{d E}{d z_{5}} &= \frac{d E}{d z_{1}}") == 1


def two_chains(out, capsys, tmp_path):
    assert out.startswith("dL/dz_4  (paths, 2 paths)")
    assert ("  dL/dz_4 = (z_1 - t)*(1 - z_1**2)*w_1_2*(1 - z_2**2)*w_2 + "
            "(z_1 - t)*(1 - z_1**2)*w_1_3*(1 - z_3**2)*w_3    [substitute]") in out


def vanishing(out, capsys, tmp_path):
    ratio = float(re.search(r"first/last layer gradient norm ratio: ([\d.e+-]+)", out).group(1))
    assert ratio < 1  # the layer nearest the input gets the smallest gradient


def matrix_with_numbers(out, capsys, tmp_path):
    before, numbers = out.split(r"\subsection*{With numbers}")
    assert (r"\boldsymbol{\delta}^{(1)} &= \operatorname{Diag}\left(f'\left(\mathbf{z}^{(1)}\right)\right) "
            r"\left(\mathbf{W}^{(2)}\right)^{T} \boldsymbol{\delta}^{(2)}") in before
    assert r"\textbf{Entry by entry.}" in before
    assert "with $f$ the sigmoid" in numbers


def checkpointing(out, capsys, tmp_path):
    assert "checkpointed backprop: a checkpoint every 3 layers of 9 (layers 3, 6)" in out
    spec = str(ROOT / "examples" / "deep_layers.toml")
    plain = json_of(capsys, "grad", spec)
    kept = json_of(capsys, "grad", spec, "--checkpoints", "sqrt")
    assert kept["gradient"] == plain["gradient"]
    assert kept["stored_values"] < kept["checkpointing"]["plain_stored_values"]


def hessian_vector(out, capsys, tmp_path):
    spec = str(ROOT / "examples" / "hvp_small.toml")
    result = json_of(capsys, "hvp", spec)
    v = {"w_1": 1.0, "w_3": -0.5}  # the example's [direction]
    h = 1e-5

    def gradient_at(sign):
        given = tomllib.loads(Path(spec).read_text(encoding="utf-8"))["values"]
        values = {k: val + sign * h * v.get(k, 0.0) for k, val in given.items()}
        path = tmp_path / f"values{sign:+d}.toml"
        path.write_text("".join(f"{k} = {val!r}\n" for k, val in values.items()))
        return json_of(capsys, "grad", spec, "--values", str(path))["gradient"]

    plus, minus = gradient_at(1), gradient_at(-1)
    for name, value in result["hvp"].items():
        assert value == pytest.approx((plus[name] - minus[name]) / (2 * h), rel=1e-6, abs=1e-9)
    assert f"loss E = {result['loss']:.6g}" in out


def minibatch(out, capsys, tmp_path):
    assert out.startswith("1 step of minibatch SGD (B = 2), learning rate η = 0.5")
    assert "update: w ← w − η Σ_{m ∈ batch} ∂𝓛(m)/∂w" in out


def gate_rules(out, capsys, tmp_path):
    assert "scale1 = 2*x: multiply by a constant scales the gradient by 2" in out
    assert "max1 = max(x, y): max is a switch: the gradient goes to the larger input" in out
    assert "mul1 = max1*z: multiply swaps the inputs and multiplies" in out
    assert "df/dx = 2 (via scale1) + 2 (via max1) = 4" in out  # d/dx (2x + z max(x, y)) at x > y: 2 + z


def sigmoid_gate(out, capsys, tmp_path):
    # cs231n's numbers: f = σ(1) = 0.731, df/dw_0 = x_0 σ(1)(1 - σ(1)) = -0.197, df/dx_0 = 0.393
    grads = {name: float(value) for name, value in re.findall(r"^  df/d(\w+) = .*?(-?[\d.]+)\s*$", out, re.M)}
    s = sigmoid(1.0)
    assert grads["w_0"] == pytest.approx(-1 * s * (1 - s), rel=5e-4)  # printed to 4 digits
    assert grads["x_0"] == pytest.approx(2 * s * (1 - s), rel=5e-4)


CHECKS = {
    "symprop derive examples/seed000_jacobian.toml": jacobian_chain,
    "symprop grad examples/seed000_jacobian.toml": jacobian_numbers,
    "symprop derive examples/generic_layers.toml": gate_table,
    "symprop derive examples/softmax_then_cross_entropy.toml --wrt w2_1_1": softmax_collapse,
    "symprop flow examples/seed002_seven_neurons.toml --bind g=relu --plot relu.pdf": dead_relus,
    "symprop exam examples/generic_layers.toml --answers": matrix_exam,
    "symprop check examples/seed002_gradient_flow.toml --difference forward": forward_differences,
    "symprop derive examples/seed002_seven_neurons.toml --wrt w_2_5": top_down_w25,
    "symprop derive examples/seed002_seven_neurons.toml --wrt w_5_7 --method bottom-up": bottom_up_w57,
    "symprop solve examples/seed002_seven_neurons.toml": one_pass,
    "symprop derive examples/seed002_gradient_flow.toml --wrt z_4 --method paths": two_chains,
    "symprop flow examples/seed002_gradient_flow.toml": vanishing,
    "symprop solve examples/generic_layers.toml": matrix_with_numbers,
    "symprop grad examples/deep_layers.toml --checkpoints sqrt": checkpointing,
    "symprop hvp examples/hvp_small.toml": hessian_vector,
    "symprop step examples/seed003_layered.toml --lr 0.5 --batch-size 2": minibatch,
    'symprop circuit "max(x, y)*z + 2*x" --at x=3,y=-1,z=2': gate_rules,
    'symprop circuit "1/(1 + exp(-(w_0*x_0 + w_1*x_1 + w_2)))" --at w_0=2,x_0=-1,w_1=-3,x_1=-2,w_2=-3': sigmoid_gate,
}


def test_every_row_has_a_check_and_every_check_a_row():
    assert sorted(table_commands()) == sorted(CHECKS)


@pytest.mark.parametrize("command", list(CHECKS))
def test_the_command_gives_what_the_text_teaches(command, capsys, monkeypatch, tmp_path):
    if "--plot" in command and shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    out = run(capsys, command, monkeypatch, tmp_path)
    CHECKS[command](out, capsys, tmp_path)
