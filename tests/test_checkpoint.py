"""Checkpointed backprop of [layers] networks (symprop.checkpoint): the same gradient for
every K, the stored values the theory gives (exact counts), the CLI and the LaTeX."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from symprop.checkpoint import checkpoint_plan, checkpointed_gradient, stored_values_of
from symprop.cli import main
from symprop.matrix import derive_matrix

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")

DEEP = [4] + [6] * 19 + [2]  # 20 layers: 19 hidden layers of 6 units, 2 outputs
BATCH = 3
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EVERY_K = [*range(1, 22), 25, "sqrt"]


@pytest.fixture(scope="module")
def deep():
    return {hidden: derive_matrix(DEEP, hidden=hidden, output="softmax", loss="cross_entropy", reduction="mean")
            for hidden in ("tanh", "relu", "softplus")}


@pytest.mark.parametrize("hidden", ["tanh", "relu", "softplus"])  # f' written with a^l, with z^l, with σ(z^l)
def test_the_checkpointed_gradient_is_the_gradient_for_every_k(deep, hidden):
    d = deep[hidden]
    values = d.random_values(batch=BATCH, seed=1)
    plain = d.gradient(values)
    for k in EVERY_K:
        result = checkpointed_gradient(d, values, k)
        assert result.gradient.loss == plain.loss
        for ours, theirs in zip(result.gradient.dW + result.gradient.db, plain.dW + plain.db):
            assert np.abs(ours - theirs).max() <= 1e-12, k


# Each of the 19 hidden layers holds z^l and a^l of 6 x 3 numbers (36), the output layer
# 2 x 2 x 3 (12); plain backprop holds them all: 19 * 36 + 12 = 696. With a checkpoint every
# K layers (c = K, 2K, ... < 20), the end of the forward pass holds the checkpoints, the
# layers above the last one and the output; recomputing segment (c_j, c_j+1) holds the
# checkpoints up to c_j and the segment's K - 1 layers.
STORED = {
    1: 19 * 36 + 12,                   # every layer a checkpoint: plain backprop
    2: max(9 * 36 + 1 * 36 + 12,       # checkpoints 2..18, layer 19, the output
           8 * 36 + 1 * 36),           # (segment (16, 18): checkpoints 2..16 and layer 17)
    4: 4 * 36 + 3 * 36 + 12,           # checkpoints 4, 8, 12, 16; layers 17-19; the output: 264
    5: 3 * 36 + 4 * 36 + 12,           # checkpoints 5, 10, 15; layers 16-19: 264
    6: max(3 * 36 + 1 * 36 + 12,       # checkpoints 6, 12, 18; layer 19
           2 * 36 + 5 * 36),           # segment (12, 18): checkpoints 6, 12 and layers 13-17: 252
    10: max(1 * 36 + 9 * 36 + 12, 9 * 36),  # 372
    19: max(1 * 36 + 12, 18 * 36),     # segment (0, 19) recomputes layers 1-18: 648
    20: 19 * 36 + 12,                  # no checkpoint: plain backprop
    25: 19 * 36 + 12,
    "sqrt": 3 * 36 + 4 * 36 + 12,      # K = ceil(sqrt(20)) = 5
}


def test_stored_values_shrink_as_the_theory_says(deep):
    d = deep["tanh"]
    values = d.random_values(batch=BATCH, seed=2)
    assert STORED[4] == 264 and STORED[6] == 252 and STORED[10] == 372
    for k, expected in STORED.items():
        result = checkpointed_gradient(d, values, k)
        assert result.stored_values == expected, k
        assert result.plain_stored_values == 696
    four = checkpointed_gradient(d, values, 4)
    assert four.plan.checkpoints == (4, 8, 12, 16)
    assert four.recomputed_layers == (1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15)
    assert checkpointed_gradient(d, values, 1).recomputed_layers == ()
    assert checkpointed_gradient(d, values, 20).recomputed_layers == ()
    # near sqrt(L) is far below plain, at both ends it is plain
    assert min(STORED[k] for k in (4, 5, 6)) < 0.4 * STORED[1]


@pytest.mark.parametrize("sizes", [[5, 3, 9, 2, 7, 4, 1], [3] + [8] * 11 + [2], [2, 2]])
def test_the_measured_peak_is_the_planned_one(sizes):
    d = derive_matrix(sizes, hidden="sigmoid", output="identity", loss="half_sse")
    values = d.random_values(batch=2, seed=3)
    for k in range(1, len(sizes) + 1):
        result = checkpointed_gradient(d, values, k)
        assert result.stored_values == stored_values_of(checkpoint_plan(d.depth, k), result.layer_values)
        assert result.plain_stored_values == sum(2 * n * 2 for n in sizes[1:])


def _deep_spec(tmp_path, hidden="tanh"):
    path = tmp_path / "deep.toml"
    path.write_text(f'[layers]\nsizes = {DEEP}\nhidden = "{hidden}"\noutput = "softmax"\nloss = "cross_entropy"\n'
                    f'reduction = "mean"\nseed = 0\nbatch = {BATCH}\n')
    return path


def test_grad_checkpoints_json(tmp_path, capsys):
    path = _deep_spec(tmp_path)
    assert main(["grad", str(path), "--format", "json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["grad", str(path), "--format", "json", "--checkpoints", "4"]) == 0
    out = capsys.readouterr().out
    record = json.loads(out)
    assert record["stored_values"] == 264 and record["recomputed_layers"] == [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15]
    assert record["checkpointing"] == {"every": 4, "layers": 20, "checkpoints": [4, 8, 12, 16],
                                       "plain_stored_values": 696, "extra_layer_evaluations": 12}
    assert record["gradient"] == plain["gradient"] and record["loss"] == plain["loss"]
    assert main(["grad", str(path), "--format", "json", "--checkpoints", "4"]) == 0
    assert capsys.readouterr().out == out  # deterministic
    assert main(["grad", str(path), "--checkpoints", "sqrt"]) == 0
    assert "a checkpoint every 5 layers of 20 (layers 5, 10, 15)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["grad", str(EXAMPLES / "seed002_gradient_flow.toml"), "--checkpoints", "2"], "--checkpoints needs a [layers] spec"),
    (["grad", str(EXAMPLES / "mnist_layers.toml"), "--checkpoints", "0"], "0 is not a positive integer"),
    (["grad", str(EXAMPLES / "mnist_layers.toml"), "--checkpoints", "half"], "'half' is neither a positive integer K nor 'sqrt'"),
    (["solve", str(EXAMPLES / "seed002_gradient_flow.toml"), "--checkpoints", "2"], "--checkpoints needs a [layers] spec"),
])
def test_bad_checkpoint_options_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@needs_tex
@pytest.mark.parametrize("k", ["4", "sqrt", "1"])
def test_the_explanation_compiles_and_states_the_trade_off(tmp_path, k, capsys):
    path = _deep_spec(tmp_path, "relu")
    tex = tmp_path / "checkpoint.tex"
    assert main(["solve", str(path), "--checkpoints", k, "-o", str(tex), "--pdf"]) == 0, capsys.readouterr().err
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert [float(x) for x in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)] == []
    body = tex.read_text()
    if k == "4":
        assert "memory holds $264$ forward numbers instead of $696$ (38\\%)" in body
        assert "layers 1--3, 5--7, 9--11 and 13--15 are evaluated twice: $12$ extra layer evaluations" in body
    if shutil.which("pdftotext"):
        import subprocess

        words = subprocess.run(["pdftotext", str(tex.with_suffix(".pdf")), "-"], capture_output=True, text=True).stdout
        assert "Checkpointed backpropagation" in words and "recompute" in words
