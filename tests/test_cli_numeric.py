"""The grad, check, step and flow verbs: the JSON contract, exit statuses, one-line errors."""

import json
import math

import pytest

from symprop.cli import main
from symprop.numeric import gradient
from symprop.spec import load_spec

SPEC = """
[network]
inputs = ["x"]
targets = ["t"]
params = ["w", "b", "v"]
functions = ["g"]
loss = "E"

[nodes]
h = "g(w*x + b)"
o = "sigmoid(v*h)"
E = "binary_cross_entropy(o, t)"

[values]
x = 0.5
t = 1
w = 0.3
b = -0.1
v = 1.5

[bind]
g = "tanh"
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys, *argv):
    status, out, err = run(capsys, *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


def api(path, **values):
    s = load_spec(path)
    point = {**s.values, **{s.symbols[k]: v for k, v in values.items()}}
    return s.network, point, s.bind


def test_grad_json_contract(capsys, spec):
    data = run_json(capsys, "grad", spec)
    assert list(data) == ["loss", "values", "deltas", "gradient"]
    assert list(data["values"]) == ["h", "o", "E"] == list(data["deltas"])
    assert list(data["gradient"]) == ["w", "b", "v", "x"]  # every parameter, then every input
    net, point, bind = api(spec)
    result = gradient(net, point, bind=bind)
    assert data["loss"] == result.loss
    assert data["gradient"] == {str(k): v for k, v in result.gradient.items()}
    assert data["deltas"]["E"] == 1.0 and isinstance(data["values"]["h"], float)
    # dE/dv = (o - t) h, the sigmoid + binary cross-entropy rule
    o, h = data["values"]["o"], data["values"]["h"]
    assert math.isclose(data["gradient"]["v"], (o - 1) * h, rel_tol=1e-14)


def test_grad_batch_from_a_values_file(capsys, spec, tmp_path):
    values = tmp_path / "batch.toml"
    values.write_text("[values]\nx = [0.5, -1.0, 2.0]\nt = [1, 0, 1]\n", encoding="utf-8")
    data = run_json(capsys, "grad", spec, "--values", values)
    assert [len(data["values"][k]) for k in ("h", "o", "E")] == [3, 3, 3]
    assert len(data["deltas"]["h"]) == 3
    singles = [run_json(capsys, "grad", spec, "--values", _values(tmp_path, x=x, t=t))
               for x, t in ((0.5, 1), (-1.0, 0), (2.0, 1))]
    assert math.isclose(data["loss"], sum(s["loss"] for s in singles), rel_tol=1e-14)
    for name in ("w", "b", "v", "x"):
        assert math.isclose(data["gradient"][name], sum(s["gradient"][name] for s in singles), rel_tol=1e-13)
    assert data["values"]["o"] == [s["values"]["o"] for s in singles]


def _values(tmp_path, **values):
    path = tmp_path / ("v_" + "_".join(f"{k}{v}" for k, v in values.items()) + ".toml")
    path.write_text("".join(f"{k} = {v}\n" for k, v in values.items()), encoding="utf-8")  # top-level keys
    return path


def test_bind_on_the_command_line_overrides_the_spec(capsys, spec):
    tanh = run_json(capsys, "grad", spec)
    identity = run_json(capsys, "grad", spec, "--bind", "g=identity")
    assert identity["values"]["h"] == pytest.approx(0.3 * 0.5 - 0.1, rel=1e-15)
    assert tanh["values"]["h"] == pytest.approx(math.tanh(0.05), rel=1e-15)


def test_grad_text_is_a_table(capsys, spec):
    status, out, _ = run(capsys, "grad", spec)
    assert status == 0
    assert out.startswith("loss E = ")
    assert "dE/dw" in out and "dE/dx" in out and "node" in out


def test_check_passes_and_fails_on_a_wrong_user_gradient(capsys, spec):
    status, out, _ = run(capsys, "check", spec, "--against", "v=(o - t)*h")
    assert status == 0 and "passed" in out
    status, out, _ = run(capsys, "check", spec, "--against", "v=(o - t)*h", "--against", "w=(o - t)*v*x")
    assert status == 1
    assert "FAILED: w" in out and "∂E/∂o·∂o/∂h·∂h/∂w" in out
    status, out, _ = run(capsys, "check", spec, "--against", "w=(o - t)*v*x", "--format", "json")
    data = json.loads(out)
    assert status == 1 and data["passed"] is False
    assert list(data) == ["loss", "step", "parameters", "against", "passed",  # the keys of issue 14 follow
                          "difference", "epsilon", "formula", "thresholds", "cost"]
    assert list(data["parameters"]) == ["w", "b", "v"]
    assert data["against"]["w"]["verdict"] in ("suspicious", "wrong")
    assert [p["path"] for p in data["against"]["w"]["paths"]] == [["w", "h", "o", "E"]]
    assert all(r["verdict"] == "good" for r in data["parameters"].values())


def test_step_json_contract(capsys, spec):
    data = run_json(capsys, "step", spec, "--lr", "0.5")
    assert list(data) == ["loss_before", "loss_after", "params", "gradient", "rule"]
    net, point, bind = api(spec)
    g = gradient(net, point, bind=bind)
    for p in net.params:
        assert data["gradient"][str(p)] == g.gradient[p]
        assert data["params"][str(p)] == point[p] - 0.5 * g.gradient[p]
    assert data["loss_after"] < data["loss_before"] == g.loss


def test_step_only_steps_and_minibatches(capsys, spec, tmp_path):
    data = run_json(capsys, "step", spec, "--lr", "0.5", "--only", "w", "--only", "b*", "--steps", "3")
    assert data["params"]["v"] == 1.5 and data["params"]["w"] != 0.3 and data["params"]["b"] != -0.1
    values = tmp_path / "batch.toml"
    values.write_text("x = [0.5, -1.0, 2.0, 0.1]\nt = [1, 0, 1, 0]\n", encoding="utf-8")
    a = run_json(capsys, "step", spec, "--values", values, "--lr", "0.1", "--steps", "4", "--batch-size", "2", "--seed", "3")
    b = run_json(capsys, "step", spec, "--values", values, "--lr", "0.1", "--steps", "4", "--batch-size", "2", "--seed", "3")
    assert a == b
    status, out, err = run(capsys, "step", spec, "--lr", "0.1", "--only", "q*")
    assert status == 2 and "'q*' matches no parameter" in err and out == ""


def test_flow_json_contract(capsys, spec, tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")  # a values file that overrides nothing
    data = run_json(capsys, "flow", spec, "--bind", "g=relu", "--values", empty)
    assert list(data) == ["loss", "nodes", "layers", "ratio", "saturated", "dead",
                          "verdict", "verdict_thresholds", "zero_gradients"]
    assert data["dead"] == [] and data["nodes"]["h"]["depth"] == 1
    status, out, _ = run(capsys, "flow", spec, "--bind", "g=relu")
    assert status == 0 and "dead relu units: none" in out


def test_flow_dead_and_saturated(capsys, spec, tmp_path):
    dead = run_json(capsys, "flow", spec, "--bind", "g=relu", "--values", _values(tmp_path, b=-5.0))
    assert dead["dead"] == ["h"]
    saturated = run_json(capsys, "flow", spec, "--values", _values(tmp_path, w=40.0))
    assert saturated["saturated"] == ["h"]
    assert [layer["depth"] for layer in saturated["layers"]] == [1, 2, 3]


@pytest.mark.parametrize("argv, message", [
    (["grad", "{spec}", "--bind", "g"], "--bind g: write NAME=ACTIVATION"),
    (["grad", "{spec}", "--bind", "q=tanh"], "q is not a function declared"),
    (["grad", "{spec}", "--bind", "g=cosh"], "unknown activation 'cosh'"),
    (["grad", "{spec}", "--values", "{missing}"], "missing.toml: no such file"),
    (["grad", "{spec}", "--values", "{node}"], "[values] h: h is a node"),
    (["grad", "{spec}", "--values", "{unknown}"], "q: unknown symbol 'q'"),
    (["grad", "{spec}", "--values", "{text}"], "x: must be a number or a list of numbers"),
    (["check", "{spec}", "--against", "w=foo(x)"], "against w: unknown function 'foo'"),
    (["check", "{spec}", "--against", "h=x"], "--against h=x: h is not a parameter or an input"),
    (["step", "{spec}", "--lr", "0"], "learning rate must be a positive number"),
])
def test_errors_are_one_line(capsys, spec, tmp_path, argv, message):
    files = {"spec": spec, "missing": tmp_path / "missing.toml"}
    for name, text in (("node", "[values]\nh = 1.0\n"), ("unknown", "q = 1.0\n"), ("text", "x = 'one'\n")):
        files[name] = tmp_path / f"{name}.toml"
        files[name].write_text(text, encoding="utf-8")
    status, out, err = run(capsys, *[a.format(**files) for a in argv])
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("symprop: ") and message in err, err


def test_missing_value_and_unbound_generic_are_named(capsys, tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(SPEC.replace('[bind]\ng = "tanh"\n', "").replace("v = 1.5\n", ""), encoding="utf-8")
    status, _, err = run(capsys, "grad", path, "--bind", "g=tanh")
    assert status == 2 and "no value for param v" in err and str(path) in err
    status, _, err = run(capsys, "grad", path, "--values", _values(tmp_path, v=1.0))
    assert status == 2 and "generic function g" in err and "--bind g=tanh" in err


def test_progress_bar_draws_only_after_the_delay():
    import io

    from symprop.cli import _progress_bar

    stream = io.StringIO()
    update = _progress_bar(stream, delay=0.0, width=10)
    for i in range(1, 5):
        update(i, 4, 1.0 / i)
    text = stream.getvalue()
    assert text.startswith("\r[##........] 1/4  loss 1") and text.endswith("4/4  loss 0.25\n")
    quiet = io.StringIO()
    update = _progress_bar(quiet, delay=3600.0)
    update(1, 1, 0.5)
    assert quiet.getvalue() == ""
