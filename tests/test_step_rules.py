"""`step` names its update rule and prints its formula once (issue 14, item 7; seed 004):
gradient descent over all M samples, SGD (batch size 1), minibatch SGD (batch size B), each
with the Σ and the 1/M or 1/B the network's reduction calls for, and the new values following
that formula, checked against per-sample gradients computed by hand here."""

import json

import numpy as np
import pytest

from symprop.cli import main

SPEC = """
[network]
inputs = ["x"]
targets = ["t"]
params = ["w", "b"]
loss = "E"
reduction = "{reduction}"
[nodes]
E = "(w*x + b - t)**2/2"
[values]
x = [1.0, 2.0, 3.0]
t = [1.0, 1.0, 2.0]
w = 0.5
b = 0.0
"""
XS, TS, W, B = [1.0, 2.0, 3.0], [1.0, 1.0, 2.0], 0.5, 0.0


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def spec(tmp_path, reduction):
    path = tmp_path / f"fit_{reduction}.toml"
    path.write_text(SPEC.format(reduction=reduction), encoding="utf-8")
    return path


def dw(m, w=W, b=B):
    """∂𝓛(m)/∂w of sample m, by hand: (w x + b − t) x."""
    return (w * XS[m] + b - TS[m]) * XS[m]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_each_rule_heads_its_output_and_its_formula_is_the_update(tmp_path, capsys, reduction):
    path, mean = spec(tmp_path, reduction), reduction == "mean"
    cases = [
        ((), "gradient descent", f"w ← w − {'η/M' if mean else 'η'} Σ_m ∂𝓛(m)/∂w",
         W - 0.1 * sum(dw(m) for m in range(3)) / (3 if mean else 1)),
        (("--batch-size", "1"), "stochastic gradient descent", "w ← w − η ∂𝓛(m)/∂w",
         W - 0.1 * dw(int(np.random.default_rng(0).permutation(3)[0]))),
        (("--batch-size", "2"), "minibatch SGD (B = 2)", f"w ← w − {'η/B' if mean else 'η'} Σ_{{m ∈ batch}} ∂𝓛(m)/∂w",
         W - 0.1 * sum(dw(int(m)) for m in np.random.default_rng(0).permutation(3)[:2]) / (2 if mean else 1)),
        (("--batch-size", "3"), "gradient descent", f"w ← w − {'η/M' if mean else 'η'} Σ_m ∂𝓛(m)/∂w",
         W - 0.1 * sum(dw(m) for m in range(3)) / (3 if mean else 1)),
    ]
    for extra, name, formula, new_w in cases:
        status, out, _ = run(capsys, "step", path, "--lr", "0.1", *extra)
        assert status == 0
        lines = out.splitlines()
        assert lines[0] == f"1 step of {name}, learning rate η = 0.1"
        assert lines[1].startswith(f"update: {formula}  (M = 3")
        assert out.count("←") == 1 and out.count(name) == 1
        status, out, _ = run(capsys, "step", path, "--lr", "0.1", *extra, "--format", "json")
        record = json.loads(out)
        assert record["rule"]["name"] == name and record["rule"]["formula"] == formula
        assert record["params"]["w"] == pytest.approx(new_w, rel=1e-14)


def test_a_pass_that_ends_in_a_smaller_minibatch_says_so(tmp_path, capsys):
    status, out, _ = run(capsys, "step", spec(tmp_path, "mean"), "--lr", "0.1", "--batch-size", "2", "--steps", "2")
    assert status == 0
    assert "(M = 3, B = 2, samples shuffled each pass, the last minibatch of a pass has 1 sample; " in out
    # the second step is that last minibatch: its mean is over its one sample (η/1, not η/2)
    order = np.random.default_rng(0).permutation(3)
    w1 = W - 0.1 * sum(dw(int(m)) for m in order[:2]) / 2
    b1 = B - 0.1 * sum((W * XS[m] + B - TS[m]) for m in order[:2]) / 2
    w2 = w1 - 0.1 * dw(int(order[2]), w1, b1)
    status, out, _ = run(capsys, "step", spec(tmp_path, "mean"), "--lr", "0.1", "--batch-size", "2", "--steps", "2",
                         "--format", "json")
    assert json.loads(out)["params"]["w"] == pytest.approx(w2, rel=1e-14)
    status, out, _ = run(capsys, "step", spec(tmp_path, "mean"), "--lr", "0.1", "--batch-size", "1")
    assert "last minibatch" not in out
